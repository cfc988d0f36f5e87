"""Evaluator of the synthetic training-curve task (immutable, like any prepare.py).

train.py "trains" for TIME_BUDGET seconds and prints a step log whose loss falls towards the
final score: the score is a sharp bowl around train.py's starting constants (so nearly every
change is clearly worse) plus seed noise, and the curve carries the same gap from the start, as a
real loss curve of a worse configuration does.
"""
import math
import os
import random

OPTIMUM = {"WIDTH": 1.0, "DEPTH_SCALE": 1.0}
NOISE = 0.002
TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "2"))
STEPS = 40


def evaluate(params: dict, seed: int) -> float:
    distance = sum((math.log(params[k]) - math.log(v)) ** 2 for k, v in OPTIMUM.items())
    return 1.0 + 4 * distance + random.Random(seed).gauss(0.0, NOISE)


def loss_at(final: float, fraction: float, seed: int, step: int) -> float:
    """The printed training loss: above the final score early on, with a little step noise."""
    return final + 2.0 * (1.0 - fraction) + random.Random(seed * 100003 + step).gauss(0.0, NOISE)
