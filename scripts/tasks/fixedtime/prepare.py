"""Evaluator of the fixed-time task (immutable, like any prepare.py).

For the throughput benchmark: train.py holds the 'accelerator' for exactly the budget
(EVOLVE_BUDGET_S) and then scores its constants on a smooth bowl in log-space, so that the wall
time of an experiment is the budget plus whatever the engine adds. Lower is better.
"""
import math
import os
import random

TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "3"))
HOLD = "sleep"      # "sleep": time.sleep (measures the engine, not the CPU); "busy": a busy-wait on one core
OPTIMUM = {"LEARNING_RATE": 0.02, "INIT_STD": 0.05, "WEIGHT_DECAY": 0.3}
NOISE = 0.002


def evaluate(params: dict, seed: int) -> float:
    distance = sum((math.log(params[k]) - math.log(v)) ** 2 for k, v in OPTIMUM.items())
    key = f"{seed}:" + ",".join(f"{k}={params[k]!r}" for k in OPTIMUM)
    return 1.0 + distance + random.Random(key).gauss(0.0, NOISE)
