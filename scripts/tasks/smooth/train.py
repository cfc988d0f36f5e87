"""Synthetic trainer for the search benchmark: scores its constants instantly on the smooth
single-well landscape of prepare.py (no training, no accelerator), then prints the autoresearch summary."""
import os
import time

t0 = time.time()
from prepare import evaluate  # noqa: E402

LEARNING_RATE = 0.0036
INIT_STD = 0.036
WEIGHT_DECAY = 0.108

seed = int(os.environ.get("EVOLVE_SEED", "0"))
val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "INIT_STD": INIT_STD, "WEIGHT_DECAY": WEIGHT_DECAY}, seed)
print("---")
print(f"val_bpb: {val_bpb:.6f}")
print("training_seconds: 0.0")
print(f"total_seconds: {time.time() - t0:.3f}")
print("peak_vram_mb: 0.0")
