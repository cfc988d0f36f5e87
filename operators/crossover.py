"""Offline crossover: mix the top-level constants of two parents, no LLM involved.

The child is the first parent's train.py, byte for byte, with some of its constants set to the
second parent's values (uniform crossover over the constants whose values differ). Only
constants cross over: if the second parent's code differs structurally (a new layer type, a
different optimizer), that code is not carried over; LLM crossover is the operator for that.
Constants that only one parent has stay as they are in the first, and so do constants whose
names match `exclude` (the same list as perturb's: seeds, the budget, hardware facts).
"""
from __future__ import annotations

import fnmatch
import random
from typing import Sequence

from operators.candidate import Candidate, NoCandidate, Parent, ProposalContext
from operators.constants import Constant, find_constants, format_value, rewrite_constants
from operators.perturb import DEFAULT_EXCLUDE


class ConstantCrossover:
    """Child = first parent with each differing constant taken from the second with probability 1/2.

    At least one constant is taken, and when several differ, not all of them (taking all would
    just rebuild the second parent's settings).
    """

    name = "crossover"
    arity = 2

    def __init__(self, exclude: Sequence[str] = DEFAULT_EXCLUDE):
        self.exclude = tuple(exclude)

    def __repr__(self) -> str:
        return f"ConstantCrossover(exclude={self.exclude})"

    def propose(self, parents: list[Parent], rng: random.Random,
                context: ProposalContext | None = None) -> Candidate:
        if len(parents) != self.arity:
            raise ValueError(f"crossover takes exactly 2 parents, got {len(parents)}")
        base, donor = parents
        base_constants = _constants_of(base)
        donor_constants = _constants_of(donor)
        differing = [
            (constant, donor_constants[name].value)
            for name, constant in base_constants.items()
            if name in donor_constants and _can_take(constant, donor_constants[name])
            and not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)
        ]
        if not differing:
            raise NoCandidate(
                f"crossover: parents {base.commit[:7]} and {donor.commit[:7]} share every constant"
            )
        taken = _pick_some_but_not_all(differing, rng)
        source = rewrite_constants(base.source, {constant.name: value for constant, value in taken})
        changes = ", ".join(
            f"{constant.name} {format_value(constant.value)} -> {format_value(value)}" for constant, value in taken
        )
        return Candidate(
            source=source,
            description=f"cross {base.commit[:7]} x {donor.commit[:7]}: {changes}",
            parents=(base.commit, donor.commit),
            operator=self.name,
        )


def _constants_of(parent: Parent) -> dict[str, Constant]:
    try:
        return find_constants(parent.source)
    except SyntaxError as error:
        raise NoCandidate(f"crossover: parent {parent.commit[:7]} does not parse: {error}") from None


def _can_take(base: Constant, donor: Constant) -> bool:
    """Whether the donor's value differs and can be written into the base's constant.

    Same type, or an int into a float constant; a float into an int constant (or any other mix
    of types) is a structural difference, not a value to cross over.
    """
    same_type = base.type is donor.type or (base.type is float and donor.type is int)
    return same_type and base.value != donor.value


def _pick_some_but_not_all(differing: list, rng: random.Random) -> list:
    if len(differing) == 1:
        return list(differing)
    while True:
        taken = [pair for pair in differing if rng.random() < 0.5]
        if 0 < len(taken) < len(differing):
            return taken
