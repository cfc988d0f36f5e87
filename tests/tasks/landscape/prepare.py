"""Evaluator of the synthetic landscape task (immutable, like any prepare.py).

The score is a smooth bowl in log-space of train.py's constants, plus seed noise, so the engine
can be exercised in milliseconds per experiment. Lower is better, as with val_bpb.
"""
import math
import os
import random

OPTIMUM = {"LEARNING_RATE": 0.02, "WIDTH": 96, "DECAY": 0.3}
NOISE = 0.002
TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "0.2"))


def evaluate(params: dict, seed: int) -> float:
    distance = sum((math.log(params[k]) - math.log(v)) ** 2 for k, v in OPTIMUM.items())
    return 1.0 + distance + random.Random(seed).gauss(0.0, NOISE)
