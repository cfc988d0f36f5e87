"""Operator names, as the config spells them, to the objects that make candidates."""
from __future__ import annotations

import inspect
import random
from typing import Callable, Protocol

from operators.candidate import Candidate, Parent, ProposalContext
from operators.crossover import ConstantCrossover
from operators.llm import LLMCrossover, LLMMutation  # cheap: litellm is imported on first use
from operators.perturb import Perturb


class Operator(Protocol):
    """What the engine needs from an operator: it turns `arity` parents into one candidate,
    or raises NoCandidate saying why it cannot."""

    name: str
    arity: int

    def propose(self, parents: list[Parent], rng: random.Random,
                context: ProposalContext | None = None) -> Candidate: ...


OPERATORS: dict[str, Callable[..., Operator]] = {
    Perturb.name: Perturb,
    ConstantCrossover.name: ConstantCrossover,
    LLMMutation.name: LLMMutation,
    LLMCrossover.name: LLMCrossover,
}


def register_operator(name: str, factory: Callable[..., Operator]) -> None:
    """Make `factory` available under `name` (how modules with heavier imports, such as the LLM
    operators, join without this module importing them)."""
    if name in OPERATORS and OPERATORS[name] is not factory:
        raise ValueError(f"operator {name!r} is already registered to {OPERATORS[name]!r}")
    OPERATORS[name] = factory


def allowed_names() -> list[str]:
    return sorted(OPERATORS)


def make_operator(name: str, **params) -> Operator:
    """A new operator `name` built with `params` (its knobs, e.g. max_changes=3 for perturb).

    Raises ValueError listing the allowed names for an unknown name, and listing the operator's
    knobs for a parameter it does not take.
    """
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; allowed: {', '.join(allowed_names())}")
    factory = OPERATORS[name]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as error:
        knobs = [p for p in inspect.signature(factory).parameters if p not in ("self", "args", "kwargs")]
        raise ValueError(
            f"operator {name!r}: {error}; its parameters: {', '.join(knobs) or 'none'}"
        ) from None
    return factory(**params)
