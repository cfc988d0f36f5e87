"""Evaluator of the ridge landscape (immutable, like any prepare.py). Lower is better.

Made for scripts/bench_search.py as a landscape different in kind from scripts/tasks/deceptive:
four constants that matter (plus a fifth, BATCH_SIZE, that does not), a ridge that runs across
all four of them at once (not along any one constant), and three times the seed noise.
In log-space, u = ln(value) of the four constants in PARAMS, with s the start (train.py's values):

    score = BASE + BOWL_CURVATURE * |u - u_bowl|^2                                  a broad bowl
                 + RIDGE_HEIGHT * exp(-((u - s).n - RIDGE_AT)^2 / (2 RIDGE_WIDTH^2))  a wall across n
                 - WELL_DEPTH * exp(-|u - u_well|^2 / (2 WELL_WIDTH^2))               the deep well
                 + N(0, NOISE)

n is the unit diagonal (-1, -1, +1, +1) / 2 (LEARNING_RATE and INIT_STD down, WEIGHT_DECAY and
EMBED_SCALE up). train.py starts at score ~2.05; the bowl's bottom (score BASE, the local optimum)
lies 0.87 log-units away on the other side; the well (score ~1.13 at its bottom) lies WELL_AT
log-units away along n, with the wall half-way. Straight along n the well's pull outweighs the wall,
but the offline perturb operator moves only one or two constants per step, and every such step
from the start towards the well goes uphill (by 0.2 to 0.8, i.e. 70 to 270 sigma, over the first
log-unit: measured when the landscape was frozen). So the well is reached by a walk of several
steps whose first ones are worse, never by a lucky single jump; an engine-free ratchet (bench_search
--simulate) finds it in about 4% of runs of 120 evaluations.

Every number is a top-level constant (scripts/bench_search.py --set NAME=VALUE rewrites them in its
copy). A run has found the global optimum when its best score is below SUCCESS_THRESHOLD.
Frozen before any default of the engine was tuned on it (issue 14).
"""
import math
import os
import random

PARAMS = ("LEARNING_RATE", "INIT_STD", "WEIGHT_DECAY", "EMBED_SCALE")
START = {"LEARNING_RATE": 0.003, "INIT_STD": 0.02, "WEIGHT_DECAY": 0.1, "EMBED_SCALE": 1.0}  # train.py's values
DIAGONAL = (-0.5, -0.5, 0.5, 0.5)   # n, a unit vector across all four constants

BASE = 2.0                      # the bowl's bottom: the local optimum
BOWL_OFFSET = (0.5, 0.5, -0.5, 0.0)   # u_bowl - s, in log-units
BOWL_CURVATURE = 0.15           # per squared log-unit

RIDGE_AT = 0.625                 # the wall's crest, log-units from the start along n
RIDGE_WIDTH = 0.2
RIDGE_HEIGHT = 0.3

WELL_AT = 1.25                  # u_well = s + WELL_AT * n: the global optimum
WELL_WIDTH = 0.5                # log-units (Gaussian sigma of the well)
WELL_DEPTH = 1.5                # the well's bottom scores ~1.13

NOISE = 0.003                   # seed noise (sigma), three times the deceptive landscape's
SUCCESS_THRESHOLD = 1.9         # best score below this = the well was found

TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "0"))


def landscape(params: dict) -> float:
    """The noise-free score of a set of constants."""
    if any(not params[name] > 0 for name in PARAMS):
        return float("nan")
    d = [math.log(params[name]) - math.log(START[name]) for name in PARAMS]   # u - s
    bowl = BASE + BOWL_CURVATURE * sum((x - b) ** 2 for x, b in zip(d, BOWL_OFFSET))
    along = sum(x * n for x, n in zip(d, DIAGONAL))
    ridge = RIDGE_HEIGHT * math.exp(-(along - RIDGE_AT) ** 2 / (2 * RIDGE_WIDTH ** 2))
    well = WELL_DEPTH * math.exp(-sum((x - WELL_AT * n) ** 2 for x, n in zip(d, DIAGONAL)) / (2 * WELL_WIDTH ** 2))
    return bowl + ridge - well


def evaluate(params: dict, seed: int) -> float:
    """The score with seed noise; the same (seed, constants) always give the same number."""
    key = f"{seed}:" + ",".join(f"{name}={params[name]!r}" for name in PARAMS)
    return landscape(params) + random.Random(key).gauss(0.0, NOISE)
