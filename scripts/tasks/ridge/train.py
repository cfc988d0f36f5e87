"""Synthetic trainer for the search benchmark: scores its constants instantly on the ridge
landscape of prepare.py (no training, no accelerator), then prints the autoresearch summary.
BATCH_SIZE is a distractor: the score does not depend on it."""
import os
import time

t0 = time.time()
from prepare import evaluate  # noqa: E402

LEARNING_RATE = 0.003
INIT_STD = 0.02
WEIGHT_DECAY = 0.1
EMBED_SCALE = 1.0
BATCH_SIZE = 32

seed = int(os.environ.get("EVOLVE_SEED", "0"))
val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "INIT_STD": INIT_STD, "WEIGHT_DECAY": WEIGHT_DECAY,
                    "EMBED_SCALE": EMBED_SCALE}, seed)
print("---")
print(f"val_bpb: {val_bpb:.6f}")
print("training_seconds: 0.0")
print(f"total_seconds: {time.time() - t0:.3f}")
print("peak_vram_mb: 0.0")
