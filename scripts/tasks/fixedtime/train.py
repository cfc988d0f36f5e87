"""Fixed-time synthetic trainer: holds the 'accelerator' for exactly the budget, then reports a score.

total_seconds is measured from the first line of this file, so (experiment wall time - total_seconds)
is what the engine and the interpreter start-up add around it.
"""
import time

t0 = time.time()
import os  # noqa: E402

from prepare import HOLD, TIME_BUDGET, evaluate  # noqa: E402

LEARNING_RATE = 0.004
INIT_STD = 0.02
WEIGHT_DECAY = 0.1

deadline = t0 + TIME_BUDGET
if HOLD == "busy":
    while time.time() < deadline:
        pass
else:
    while time.time() < deadline:
        time.sleep(deadline - time.time())
seed = int(os.environ.get("EVOLVE_SEED", "0"))
val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "INIT_STD": INIT_STD, "WEIGHT_DECAY": WEIGHT_DECAY}, seed)
print("---")
print(f"val_bpb: {val_bpb:.6f}")
print(f"training_seconds: {time.time() - t0:.3f}")
print(f"total_seconds: {time.time() - t0:.3f}")
print("peak_vram_mb: 0.0")
