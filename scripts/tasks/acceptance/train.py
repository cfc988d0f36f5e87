"""Synthetic trainer for the acceptance benchmark: scores its constants instantly (see prepare.py),
then prints the autoresearch summary. Only GAIN_KNOB and HARM_KNOB matter."""
import os
import time

t0 = time.time()
from prepare import evaluate  # noqa: E402

LEARNING_RATE = 0.004
WIDTH_MULT = 2.0
DECAY = 0.1
WARMUP_FRAC = 0.2
GAIN_KNOB = 1.0
HARM_KNOB = 1.0

seed = int(os.environ.get("EVOLVE_SEED", "0"))
val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "WIDTH_MULT": WIDTH_MULT, "DECAY": DECAY,
                    "WARMUP_FRAC": WARMUP_FRAC, "GAIN_KNOB": GAIN_KNOB, "HARM_KNOB": HARM_KNOB}, seed)
print("---")
print(f"val_bpb: {val_bpb:.6f}")
print("training_seconds: 0.0")
print(f"total_seconds: {time.time() - t0:.3f}")
print("peak_vram_mb: 0.0")
