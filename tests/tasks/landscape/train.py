"""Synthetic trainer: holds the 'accelerator' for the budget, then reports a score."""
import os
import time

from prepare import TIME_BUDGET, evaluate

LEARNING_RATE = 0.004
WIDTH = 64
DECAY = 0.1

t0 = time.time()
time.sleep(TIME_BUDGET)
seed = int(os.environ.get("EVOLVE_SEED", "0"))
val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "WIDTH": WIDTH, "DECAY": DECAY}, seed)
print("---")
print(f"val_bpb: {val_bpb:.6f}")
print(f"training_seconds: {TIME_BUDGET:.1f}")
print(f"total_seconds: {time.time() - t0:.1f}")
print("peak_vram_mb: 0.0")
