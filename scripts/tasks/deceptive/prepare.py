"""Evaluator of the deceptive landscape (immutable, like any prepare.py). Lower is better.

The score is a function of train.py's constants LEARNING_RATE and INIT_STD (the names in PARAMS),
measured in log-space, u = ln(value), because the offline `perturb` operator moves a float by a
multiplicative log-normal step (exp(N(0, 0.5)), one or two constants at a time):

    score = BASE + SHALLOW_CURVATURE * |u - u_shallow|^2                    a broad shallow bowl
                 - DEEP_DEPTH * exp(-|u - u_deep|^2 / (2 * DEEP_WIDTH^2))   a narrow deep well
                 + N(0, NOISE)

train.py starts on the slope of the bowl, about one log-unit (two perturb steps) from the bowl's
bottom (score ~BASE) and one log-unit on the *other* side from the well (score ~0.5). Walking
towards the well goes uphill (the bowl's wall is the ridge), so a greedy search that keeps only
improvements slides into the bowl and, once there, two log-units from the well, practically never
jumps across. The well is only found by a lucky jump early on, while a lineage is still near the
start: more lineages, more such chances.

Every number is a top-level constant, so other landscapes can be tried without code changes
(scripts/bench_search.py --set NAME=VALUE rewrites them in its copy of this file). A run counts
as having found the global optimum when its best score is below SUCCESS_THRESHOLD.
"""
import math
import os
import random

PARAMS = ("LEARNING_RATE", "INIT_STD")   # the constants of train.py the score depends on

BASE = 2.0                      # score at the bottom of the shallow bowl (the local optimum)
SHALLOW_LEARNING_RATE = 0.006   # the bowl's bottom (train.py starts at 0.003, 0.02)
SHALLOW_INIT_STD = 0.04
SHALLOW_CURVATURE = 0.25        # per squared log-unit

DEEP_LEARNING_RATE = 0.0015     # the well's bottom: the global optimum
DEEP_INIT_STD = 0.01
DEEP_WIDTH = 0.25               # log-units (Gaussian sigma of the well)
DEEP_DEPTH = 2.5                # score at the well's bottom: BASE + SHALLOW_CURVATURE*d^2 - DEEP_DEPTH ~ 0.46

NOISE = 0.001                   # seed noise (sigma), small against every gap above
SUCCESS_THRESHOLD = 1.9         # best score below this = the well was found

TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "0"))


def _log_distance2(params: dict, prefix: str) -> float:
    return sum((math.log(params[name]) - math.log(globals()[f"{prefix}_{name}"])) ** 2 for name in PARAMS)


def landscape(params: dict) -> float:
    """The noise-free score of a set of constants."""
    if any(not params[name] > 0 for name in PARAMS):
        return float("nan")
    bowl = BASE + SHALLOW_CURVATURE * _log_distance2(params, "SHALLOW")
    well = DEEP_DEPTH * math.exp(-_log_distance2(params, "DEEP") / (2 * DEEP_WIDTH ** 2))
    return bowl - well


def evaluate(params: dict, seed: int) -> float:
    """The score with seed noise; the same (seed, constants) always give the same number."""
    key = f"{seed}:" + ",".join(f"{name}={params[name]!r}" for name in PARAMS)
    return landscape(params) + random.Random(key).gauss(0.0, NOISE)
