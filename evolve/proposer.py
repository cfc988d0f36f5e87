"""Turns an island's population into its next candidate: pick an operator, draw parents, call it."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from operators.candidate import Candidate, NoCandidate, Parent
from operators.registry import make_operator

from .lab import Lab
from .population import Member
from .state import RunState

FALLBACK_OPERATOR = "perturb"
ATTEMPTS_BEFORE_DUPLICATE = 8


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class Proposal:
    candidate: Candidate
    parent_bpb: float     # the best parent's val_bpb when the proposal was made


class Proposer:
    def __init__(self, lab: Lab, operators_cfg, tournament_size: int, rng: random.Random):
        self.lab = lab
        self.rng = rng
        self.tournament_size = tournament_size
        self.crossover_other_island = operators_cfg.crossover_other_island
        self.weights = {name: float(w) for name, w in operators_cfg.weights.items() if w > 0}
        params = {"perturb": dict(operators_cfg.perturb)}
        self.operators = {name: make_operator(name, **params.get(name, {}))
                          for name in set(self.weights) | {FALLBACK_OPERATOR}}
        self._sources: dict[str, str] = {}

    def _parent(self, member: Member) -> Parent:
        if member.commit not in self._sources:
            self._sources[member.commit] = self.lab.read(member.commit, "train.py")
        return Parent(commit=member.commit, source=self._sources[member.commit], val_bpb=member.val_bpb,
                      island=member.origin_island)

    def _draw(self, state: RunState, island: int) -> Member:
        population = state.islands[island].population
        if len(population):
            return population.select_parent(self.tournament_size)
        champion = state.champion()  # an island whose baseline crashed borrows the run's best
        if champion is None:
            raise NoCandidate("no evaluated train.py to start from (every baseline failed)")
        return champion

    def _second_parent(self, state: RunState, island: int, first: Member) -> Member | None:
        others = [isl for isl in state.islands if isl.index != island and len(isl.population)]
        if self.crossover_other_island and others:
            return self.rng.choice(others).population.select_parent(self.tournament_size)
        rest = [m for m in state.islands[island].population.members if m.commit != first.commit]
        return self.rng.choice(rest) if rest else None

    def propose(self, state: RunState, island: int, seen: set[str]) -> Proposal:
        """A candidate whose train.py was not measured before (`seen` holds their hashes), unless
        several attempts only produce duplicates, which then get measured again."""
        for _ in range(ATTEMPTS_BEFORE_DUPLICATE):
            proposal = self._propose_once(state, island)
            if source_sha256(proposal.candidate.source) not in seen:
                break
        return proposal

    def _propose_once(self, state: RunState, island: int) -> Proposal:
        names = list(self.weights)
        name = self.rng.choices(names, weights=[self.weights[n] for n in names])[0]
        first = self._draw(state, island)
        parents = [first]
        if self.operators[name].arity == 2:
            second = self._second_parent(state, island, first)
            if second is None:
                name = FALLBACK_OPERATOR
            else:
                parents.append(second)
        try:
            candidate = self.operators[name].propose([self._parent(p) for p in parents], self.rng)
        except NoCandidate:
            if name == FALLBACK_OPERATOR:
                raise
            parents = [first]
            candidate = self.operators[FALLBACK_OPERATOR].propose([self._parent(first)], self.rng)
        return Proposal(candidate=candidate, parent_bpb=min(p.val_bpb for p in parents))
