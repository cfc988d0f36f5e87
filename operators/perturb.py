"""Offline mutation: nudge one or a few numeric constants of a train.py, no LLM involved.

Which constants move, and how, is inferred from each constant's name and value so that the same
operator works on any task without a hand-written list of ranges:

- Only positive ints and floats move (plus fraction-like floats at exactly 0 or 1, see below).
  Strings, bools, zero or negative numbers (often sentinels such as -1 = "no limit") stay as
  they are, and so do names matching `exclude` (DEFAULT_EXCLUDE: seeds, the budget, evaluation
  settings and hardware facts such as *FLOPS*; the config knob is operators.perturb.exclude).
- An int that is a power of two moves to a neighbouring power of two (x2 or /2; 1 only goes to
  2). Any other int moves by 1 up to scale/2 of its value (25% at the default scale), in steps
  of the largest power of two dividing it (capped at a quarter of the value), so 384 moves by
  64 and stays divisible by a 64-wide head; it never goes below 1.
- A float is fraction-like when its name says so (a FRAC, RATIO, DROPOUT, BETA, MOMENTUM, EMA,
  PROB, ... word, or DECAY other than WEIGHT_DECAY, which is a coefficient) or when it lies in
  [0.9, 1), where betas, momenta and EMA decays live. A fraction-like float in (0, 1) takes a
  Gaussian step in logit space and stays strictly inside (0, 1); one at exactly 0 (or 1) steps
  in to about 0.02 (or 1 - 0.02).
- Any other positive float is multiplied by exp(N(0, scale)).
New floats are rounded to 3 significant digits (digits of 1 - x for fractions above 0.5, so
0.999 can become 0.9986) to keep the diffs and descriptions readable. New values keep the written
form of the old (operators/constants.py's format_for): 2**19 becomes 2**18 or 2**20, 3e-4
stays in e-notation, 524_288 keeps its digit groups.
"""
from __future__ import annotations

import fnmatch
import math
import random
from typing import Sequence

from operators.candidate import Candidate, NoCandidate, Parent, ProposalContext
from operators.constants import Constant, find_constants, format_value, rewrite_constants

# Hyperparameters move; facts do not. A seed change only samples noise; a time budget or
# evaluation knob in train.py would let a candidate game the judge rather than train better; and
# facts about the hardware (the anchor's H100_BF16_PEAK_FLOPS, which only feeds the MFU printout,
# a GPU's memory or bandwidth, the number of devices) are not a search dimension.
DEFAULT_EXCLUDE = ("*SEED*", "*TIME_BUDGET*", "*EVAL*", "*FLOPS*", "*BANDWIDTH*", "*VRAM*", "*GPU_MEMORY*",
                   "*NUM_GPUS*", "*WORLD_SIZE*")

FRACTION_WORDS = frozenset({
    "FRAC", "FRACTION", "RATIO", "DROPOUT", "DROP", "BETA", "BETA1", "BETA2", "MOMENTUM",
    "EMA", "PROB", "PROBABILITY", "DECAY", "SMOOTHING", "KEEP",
})
DEFAULT_MAX_CHANGES = 2   # evolve/config.py's operators.perturb.* reads these
DEFAULT_SCALE = 0.5
SIGNIFICANT_DIGITS = 3
_BOUNDARY_STEP = 0.02   # how far a fraction at exactly 0 or 1 steps inside, before noise
_TRIES_PER_VALUE = 10


class Perturb:
    """Change 1..max_changes numeric constants of one parent; see the module docstring for bounds.

    max_changes: the most constants changed in one candidate (at least one always is).
    scale: step size; the standard deviation of the log-factor (floats) or of the logit step
        (fractions); ints move by up to scale/2 of their value.
    exclude: fnmatch patterns of names never touched.
    include: fnmatch patterns; when given, only matching names may be touched.
    max_tries: attempts at a change before giving up with NoCandidate.
    """

    name = "perturb"
    arity = 1

    def __init__(
        self,
        max_changes: int = DEFAULT_MAX_CHANGES,
        scale: float = DEFAULT_SCALE,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        include: Sequence[str] | None = None,
        max_tries: int = 20,
    ):
        if int(max_changes) < 1:
            raise ValueError(f"perturb: max_changes must be at least 1, got {max_changes!r}")
        if not float(scale) > 0:
            raise ValueError(f"perturb: scale must be positive, got {scale!r}")
        self.max_changes = int(max_changes)
        self.scale = float(scale)
        # tuple() also turns a Hydra ListConfig into something hashable and printable.
        self.exclude = tuple(exclude)
        self.include = None if include is None else tuple(include)
        self.max_tries = max(1, int(max_tries))

    def __repr__(self) -> str:
        return (f"Perturb(max_changes={self.max_changes}, scale={self.scale}, "
                f"exclude={self.exclude}, include={self.include})")

    def propose(self, parents: list[Parent], rng: random.Random,
                context: ProposalContext | None = None) -> Candidate:
        if len(parents) != self.arity:
            raise ValueError(f"perturb takes exactly 1 parent, got {len(parents)}")
        parent = parents[0]
        movable = self.movable_constants(parent.source, parent.commit)
        for _ in range(self.max_tries):
            count = rng.randint(1, min(self.max_changes, len(movable)))
            chosen = sorted(rng.sample(movable, count), key=lambda constant: constant.start)
            changes = {}
            for constant in chosen:
                new_value = perturb_value(constant.name, constant.value, self.scale, rng)
                if new_value is not None and new_value != constant.value:
                    changes[constant.name] = (constant.value, new_value)
            if not changes:
                continue
            source = rewrite_constants(parent.source, {name: new for name, (_, new) in changes.items()})
            if source != parent.source:
                description = ", ".join(
                    f"{name} {format_value(old)} -> {format_value(new)}" for name, (old, new) in changes.items()
                )
                return Candidate(source=source, description=description,
                                 parents=(parent.commit,), operator=self.name)
        raise NoCandidate(f"perturb: no change to {parent.commit[:7]} after {self.max_tries} tries")

    def movable_constants(self, source: str, commit: str = "") -> list[Constant]:
        """The constants this operator may change in `source`, in source order."""
        try:
            constants = find_constants(source)
        except SyntaxError as error:
            raise NoCandidate(f"perturb: parent {commit[:7]} does not parse: {error}") from None
        movable = [c for c in constants.values() if self._may_touch(c.name) and is_perturbable(c.name, c.value)]
        if not movable:
            raise NoCandidate(
                f"perturb: parent {commit[:7]} has no movable constant (found: {', '.join(constants) or 'none'}; "
                f"exclude={list(self.exclude)}, include={self.include and list(self.include)})"
            )
        return movable

    def _may_touch(self, name: str) -> bool:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude):
            return False
        return self.include is None or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.include)


def is_perturbable(name: str, value: object) -> bool:
    """Whether `perturb_value` knows a sensible move for this constant."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return value >= 1
    if is_fraction_like(name, value):
        return 0.0 <= value <= 1.0
    return value > 0


def is_fraction_like(name: str, value: float) -> bool:
    """Whether a float constant must stay inside (0, 1): a beta, momentum, ratio, dropout, ..."""
    if isinstance(value, bool) or not isinstance(value, float) or not 0.0 <= value <= 1.0:
        return False
    words = set(name.split("_"))
    if "WEIGHT" in words:
        words.discard("DECAY")
    return bool(words & FRACTION_WORDS) or 0.9 <= value < 1.0


def perturb_value(name: str, value: int | float, scale: float, rng: random.Random) -> int | float | None:
    """A new value for one constant, different from `value`, or None when there is no sensible move."""
    if not is_perturbable(name, value):
        return None
    for _ in range(_TRIES_PER_VALUE):
        if isinstance(value, int):
            new_value = _step_int(value, scale, rng)
        elif is_fraction_like(name, value):
            new_value = _step_fraction(value, scale, rng)
        else:
            new_value = round_significant(value * math.exp(rng.gauss(0.0, scale)))
        if new_value is not None and new_value != value:
            return new_value
    return None


def _step_int(value: int, scale: float, rng: random.Random) -> int:
    if is_power_of_two(value):
        if value == 1 or rng.random() < 0.5:
            return value * 2
        return value // 2
    grain = min(_largest_power_of_two_dividing(value), _largest_power_of_two_at_most(max(1, value // 4)))
    step = grain * rng.randint(1, max(1, math.floor(value * scale / 2 / grain)))
    if rng.random() < 0.5 and value - step >= 1:
        return value - step
    return value + step


def _step_fraction(value: float, scale: float, rng: random.Random) -> float | None:
    if value == 0.0:
        new_value = _BOUNDARY_STEP * math.exp(rng.gauss(0.0, scale))
    elif value == 1.0:
        new_value = 1.0 - _BOUNDARY_STEP * math.exp(rng.gauss(0.0, scale))
    else:
        logit = math.log(value / (1.0 - value)) + rng.gauss(0.0, scale)
        new_value = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
    new_value = round_fraction(new_value)
    return new_value if 0.0 < new_value < 1.0 else None


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """`value` rounded to `digits` significant digits (round() gives the short decimal repr)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def round_fraction(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """Round a value in (0, 1) keeping `digits` significant digits of its distance to 0 or to 1."""
    distance = min(value, 1.0 - value)
    if distance <= 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(distance)))


def is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def _largest_power_of_two_dividing(value: int) -> int:
    return value & -value


def _largest_power_of_two_at_most(value: int) -> int:
    return 1 << (value.bit_length() - 1)
