"""An island's population: evaluated train.py commits ranked by val_bpb, with DEAP's selection tools.

A Member may be observed several times (repeated baselines, re-evaluations); its fitness is
the mean of its observations. Lower val_bpb is better.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from operator import attrgetter
from statistics import fmean

from deap import base, tools


class FitnessMin(base.Fitness):
    weights = (-1.0,)


@dataclass(eq=False)
class Member:
    commit: str
    observations: list[float]
    origin_island: int
    seq: int                 # the journal seq that first made it a member (ties break on it)
    fitness: FitnessMin = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fitness = FitnessMin((self.val_bpb,))

    @property
    def val_bpb(self) -> float:
        return fmean(self.observations)

    def observe(self, val_bpb: float) -> None:
        self.observations.append(val_bpb)
        self.fitness.values = (self.val_bpb,)

    def copy(self) -> "Member":
        return Member(self.commit, list(self.observations), self.origin_island, self.seq)


class Population:
    """At most `capacity` members; adding to a full population drops the worst (never the best)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.members: list[Member] = []

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, commit: str) -> bool:
        return any(m.commit == commit for m in self.members)

    def get(self, commit: str) -> Member | None:
        return next((m for m in self.members if m.commit == commit), None)

    def add(self, member: Member) -> None:
        existing = self.get(member.commit)
        if existing is not None:
            for value in member.observations:
                existing.observe(value)
            return
        self.members.append(member)
        while len(self.members) > self.capacity:
            # Elitism: only the worst leaves (ties: the oldest), so the best member always stays.
            self.members.remove(tools.selWorst(self.members, 1)[0])

    def replace_all(self, member: Member) -> None:
        self.members = [member]

    def best(self, k: int = 1) -> list[Member]:
        return tools.selBest(self.members, k)

    def champion(self) -> Member | None:
        return self.best(1)[0] if self.members else None

    def select_parent(self, tournament_size: int, rng: random.Random) -> Member:
        """One parent by tournament (DEAP's selTournament, drawn from the run's own generator: the
        global `random` module is shared with library threads, so a run would not repeat itself)."""
        aspirants = [rng.choice(self.members) for _ in range(tournament_size)]
        return max(aspirants, key=attrgetter("fitness"))


def hall_of_fame(members: list[Member], size: int = 10) -> list[Member]:
    """The best distinct commits among `members`, best first (DEAP's HallOfFame)."""
    hof = tools.HallOfFame(size, similar=lambda a, b: a.commit == b.commit)
    hof.update([m.copy() for m in members])
    return list(hof)
