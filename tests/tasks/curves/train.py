"""Synthetic trainer with a training curve: prints `step N (P%) | loss L` lines for the budget."""
import os
import time

from prepare import STEPS, TIME_BUDGET, evaluate, loss_at

WIDTH = 1.0
DEPTH_SCALE = 1.0

t0 = time.time()
seed = int(os.environ.get("EVOLVE_SEED", "0"))
val_bpb = evaluate({"WIDTH": WIDTH, "DEPTH_SCALE": DEPTH_SCALE}, seed)
for step in range(1, STEPS + 1):
    time.sleep(TIME_BUDGET / STEPS)
    fraction = step / STEPS
    print(f"\rstep {step:05d} ({100 * fraction:5.1f}%) | loss {loss_at(val_bpb, fraction, seed, step):.4f}   ",
          end="", flush=True)
print()
print("---")
print(f"val_bpb: {val_bpb:.6f}")
print(f"training_seconds: {TIME_BUDGET:.1f}")
print(f"total_seconds: {time.time() - t0:.1f}")
print("peak_vram_mb: 0.0")
