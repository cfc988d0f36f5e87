"""Evaluator of the acceptance task (immutable, like any prepare.py). Lower is better.

Made for scripts/bench_acceptance.py: every candidate's TRUE effect is known, so the benchmark can
count which keeps were real. Only two facts about train.py matter, each worth EFFECT (3 sigma):

    score = BASE - EFFECT * [GAIN_KNOB > THRESHOLD] + EFFECT * [HARM_KNOB > THRESHOLD] + noise

Every other constant of train.py (four of them) changes nothing: a change to it is a null change,
seed noise only. train.py starts with both knobs at 1.0; the offline perturb operator moves a float
by exp(N(0, 0.5)), so a touched knob crosses THRESHOLD = 1.5 about one time in five, and a lineage
above it can fall back (a real loss of EFFECT).

The noise is the sum of three parts (their sigmas are constants, so a case of the benchmark rewrites
them): SEED_SHARED depends on the run's seed only (like the initialisation and the data order that
a seed fixes for any train.py), SEED_CODE on the seed and the code, JITTER on neither (like timing
on a busy machine, or a train.py that hard-codes its seed). The total sigma is
sqrt(SEED_SHARED^2 + SEED_CODE^2 + JITTER^2).
"""
import math
import os
import random

PARAMS = ("LEARNING_RATE", "WIDTH_MULT", "DECAY", "WARMUP_FRAC", "GAIN_KNOB", "HARM_KNOB")

BASE = 2.0
THRESHOLD = 1.5
EFFECT = 0.03                # 3 sigma of the default noise below
SEED_SHARED = 0.008          # seed-only part of the noise
SEED_CODE = 0.006            # seed-and-code part
JITTER = 0.0                 # neither (unseeded)

TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "0"))


def landscape(params: dict) -> float:
    """The noise-free score of a set of constants."""
    return BASE - EFFECT * (params["GAIN_KNOB"] > THRESHOLD) + EFFECT * (params["HARM_KNOB"] > THRESHOLD)


def evaluate(params: dict, seed: int) -> float:
    """The score with noise; the same seed shares SEED_SHARED's draw across every train.py."""
    code = ",".join(f"{name}={params[name]!r}" for name in PARAMS)
    shared = random.Random(f"seed:{seed}").gauss(0.0, 1.0)
    own = random.Random(f"seed:{seed}:{code}").gauss(0.0, 1.0)
    jitter = random.Random(os.urandom(16)).gauss(0.0, 1.0)
    return landscape(params) + SEED_SHARED * shared + SEED_CODE * own + JITTER * jitter


def sigma() -> float:
    return math.sqrt(SEED_SHARED ** 2 + SEED_CODE ** 2 + JITTER ** 2)
