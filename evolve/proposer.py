"""Turns an island's population into its next candidate: pick an operator, draw parents, call it.

Drawing parents and building the context read the run state, so they happen on the driver's
thread (`prepare`); only the operator call itself (`Request.run`, an LLM conversation that may
take minutes) may run on a worker thread while the island trains its current candidate.
"""
from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from island.summary import log_tail, read_log
from operators.candidate import (Attempt, Candidate, LineageStep, NoCandidate, Parent, Peer, ProposalContext,
                                 ProposalControl)
from operators.edits import same_program
from operators.llm import LLMSummary, load_litellm
from operators.prompts import MAX_HISTORY
from operators.registry import make_operator

from .bets import story
from .lab import Lab
from .records import Bet
from .lessons import read_lessons, summary_prompt
from .llm_choice import LLMChoice
from .population import Member
from .state import RunState
from .tempering import descending

FALLBACK_OPERATOR = "perturb"
OFFLINE_OPERATORS = ("perturb", "crossover")
ATTEMPTS_BEFORE_DUPLICATE = 8
BEST_SHOWN = 3            # the island's best members (besides the parent) an LLM prompt lists
BASE_DESCRIPTION = "the unmodified base train.py"


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def is_llm(operator: str) -> bool:
    return operator.startswith("llm_")


@dataclass(frozen=True)
class Proposal:
    candidate: Candidate
    parent_bpb: float     # the best parent's val_bpb when the proposal was made
    epoch: int = 0        # the island's epoch when its parents were drawn (RunState IslandState.epoch)
    parent: str = ""      # the best parent's commit: what the candidate is judged against
    focus: str = ""       # the island's research focus the prompt carried (LLM operators)
    transcript: str = ""  # where its LLM requests and replies are kept (run-dir relative)
    stand_in_for: str = ""   # offline: the LLM operator whose proposal was not ready when the island freed up
    readmitted: bool = False   # trained again after its first run went stale (trial.readmission)
    fallback_from: str = ""  # a crossover was drawn but could not run; this candidate was made instead
    fallback_reason: str = ""

    @property
    def source_sha256(self) -> str:
        return source_sha256(self.candidate.source)


@dataclass
class Request:
    """Everything an operator call needs, snapshotted from the state on the driver's thread."""

    island: int
    operator: object
    parents: list[Parent]
    context: ProposalContext
    seed: int
    epoch: int = 0
    fallback_from: str = ""     # the crossover drawn, when it could not run and `operator` replaces it
    fallback_reason: str = ""

    @property
    def operator_name(self) -> str:
        return self.operator.name

    def run(self) -> Proposal:
        candidate = self.operator.propose(self.parents, random.Random(self.seed), context=self.context)
        best = min(self.parents, key=lambda p: p.val_bpb)
        return Proposal(candidate=candidate, parent_bpb=best.val_bpb, epoch=self.epoch, parent=best.commit,
                        focus=self.context.focus, fallback_from=self.fallback_from,
                        fallback_reason=self.fallback_reason)


def lineage_commits(by_commit: dict, commit: str) -> list[str]:
    """The commit and its ancestors through the experiments that made them, newest first (the
    base commit, which no candidate made, ends the list)."""
    chain, seen = [], set()
    while commit and commit not in seen:
        seen.add(commit)
        chain.append(commit)
        exp = by_commit.get(commit)
        if exp is None or exp.is_baseline:
            break
        commit = exp.parent or (exp.parents[0] if exp.parents else "")
    return chain


def edit_format(chosen, small_model: bool) -> str:
    """llm.edit_format as the operators take it: `auto` is `constants` for a model marked small."""
    value = getattr(chosen, "value", chosen)
    return ("constants" if small_model else "search_replace") if value == "auto" else value


def made_by(state: RunState) -> dict:
    """Each commit's experiment (the first one: a base commit's first baseline)."""
    by_commit: dict = {}
    for exp in state.experiments:
        by_commit.setdefault(exp.commit, exp)
    return by_commit


def judged_against(exp) -> str:
    """The commit an experiment was made from (and judged against)."""
    return exp.parent or (exp.parents[0] if exp.parents else "")


class Proposer:
    def __init__(self, lab: Lab, cfg, llm: LLMChoice | None, rng: random.Random, run_dir: Path, program: str,
                 temperatures: tuple[float, ...] = (), base_commit: str = ""):
        self.lab = lab
        self.temperatures = temperatures    # each island's, in sigma units (evolve/tempering.py)
        self.bet_max_credit = cfg.selection.bet_max_credit
        self.descend_window, self.descend_sigmas = cfg.selection.descend_window, cfg.selection.descend_sigmas
        self.rng = rng
        self.run_dir = run_dir
        self.program = program
        self.tournament_size = cfg.selection.tournament_size
        self.noise_k = cfg.selection.noise_k
        self.budget_s = cfg.task.budget_s
        self.crossover_other_island = cfg.operators.crossover_other_island
        weights = {name: float(w) for name, w in cfg.operators.weights.items() if w > 0}
        self.all_weights = weights
        self.offline_weights = {n: w for n, w in weights.items() if not is_llm(n)} or {FALLBACK_OPERATOR: 1.0}
        self.llm_enabled = llm is not None and any(is_llm(n) for n in weights)
        exclude = list(cfg.operators.perturb.exclude)
        self.exclude = exclude
        self._offline = {name: make_operator(name, **({"max_changes": cfg.operators.perturb.max_changes,
                                                        "scale": cfg.operators.perturb.scale, "exclude": exclude}
                                                       if name == "perturb" else {"exclude": exclude}))
                         for name in OFFLINE_OPERATORS}
        # Hotter islands take bigger perturb steps (operators.perturb.hot_scale at selection.t_max).
        t_max, hot_scale = cfg.selection.t_max, cfg.operators.perturb.hot_scale
        self._hot_perturb = {k: make_operator("perturb", max_changes=cfg.operators.perturb.max_changes,
                                              scale=cfg.operators.perturb.scale * (1 + (hot_scale - 1) * t / t_max),
                                              exclude=exclude)
                             for k, t in enumerate(temperatures) if t > 0 and hot_scale != 1}
        self._llm: dict[tuple[int, str], object] = {}
        self._llm_cfg = cfg.llm
        self._island_overrides = {int(k): dict(v) for k, v in cfg.llm.islands.items()}
        self.focuses = [str(f) for f in cfg.llm.focuses]
        self._llm_choice = llm
        self._sources: dict[str, str] = {}
        self.base_commit = base_commit    # the run's unmodified train.py (the parent's diff is against it)
        if self.llm_enabled:   # litellm's import takes seconds: not on the first proposal's clock
            threading.Thread(target=load_litellm, daemon=True, name="import-litellm").start()

    # ---- operators ------------------------------------------------------------------------------
    def disable_llm(self) -> None:
        self.llm_enabled = False

    def _operator(self, name: str, island: int):
        if not is_llm(name):
            return self._hot_perturb.get(island, self._offline[name]) if name == "perturb" else self._offline[name]
        if (island, name) not in self._llm:
            self._llm[(island, name)] = make_operator(name, **self._llm_knobs(island))
        return self._llm[(island, name)]

    def _llm_knobs(self, island: int) -> dict:
        c, choice = self._llm_cfg, self._llm_choice
        knobs = dict(model=choice.model, api_base=choice.api_base, temperature=c.temperature,
                     max_tokens=c.max_tokens, timeout_s=c.timeout_s, num_retries=c.num_retries,
                     max_fix_rounds=c.max_fix_rounds, context_tokens=c.context_tokens,
                     edit_format=edit_format(c.edit_format, c.small_model), exclude=tuple(self.exclude))
        knobs.update({k: v for k, v in self._island_overrides.get(island, {}).items() if k in knobs})
        return knobs

    def summariser(self):
        """fn(lessons text) -> (summary, cost dict) with the run's LLM (llm.lessons), or None without one."""
        if self._llm_choice is None:
            return None
        operator = LLMSummary(**self._llm_knobs(-1))
        return lambda text: (lambda summary, cost: (summary, asdict(cost)))(*operator.summarise(summary_prompt(text)))

    def focus(self, island: int) -> str:
        """Island k's research focus: llm.islands.<k>.focus, else llm.focuses[k % len], else none."""
        own = self._island_overrides.get(island, {}).get("focus")
        if own is not None:
            return str(own)
        return self.focuses[island % len(self.focuses)] if self.focuses else ""

    def choose_operator(self) -> str:
        weights = self.all_weights if self.llm_enabled else self.offline_weights
        names = list(weights)
        return self.rng.choices(names, weights=[weights[n] for n in names])[0]

    # ---- parents and context --------------------------------------------------------------------
    def _source(self, commit: str) -> str:
        if commit not in self._sources:
            self._sources[commit] = self.lab.read(commit, "train.py")
        return self._sources[commit]

    def _parent(self, member: Member, by_commit: dict | None = None) -> Parent:
        made = (by_commit or {}).get(member.commit)
        description = "" if made is None else BASE_DESCRIPTION if made.is_baseline else made.description
        return Parent(commit=member.commit, source=self._source(member.commit), val_bpb=member.val_bpb,
                      island=member.origin_island, description=description,
                      metrics=dict(made.metrics) if made is not None else {})

    def greedy_on_champion(self, state: RunState, island: int) -> bool:
        """With a temperature ladder and selection.descend_window: the greedy island 0 always, and
        every island while the run is descending (evolve/tempering.py), builds on the run's champion."""
        if self.descend_window <= 0 or not any(self.temperatures):
            return False
        if self.temperatures[island] <= 0:
            return True
        return descending(state.experiments, state.sigma, self.descend_window * state.n_islands, self.descend_sigmas)

    def _draw(self, state: RunState, island: int) -> Member:
        if self.greedy_on_champion(state, island):
            champion = state.champion()
            if champion is not None:
                return champion
        head = state.head_member(island)
        if head is not None:   # a hot island walks on from its exploring head
            return head
        population = state.islands[island].population
        if len(population):
            return population.select_parent(self.tournament_size, self.rng)
        champion = state.champion()  # an island whose baseline crashed borrows the run's best
        if champion is None:
            raise NoCandidate("no evaluated train.py to start from (every baseline failed)")
        return champion

    def _second_parent(self, state: RunState, island: int, first: Member) -> tuple[Member | None, str]:
        """(the second parent, "") or (None, why there is none)."""
        others = [isl for isl in state.islands if isl.index != island and len(isl.population)]
        if self.crossover_other_island and others:
            other = self.rng.choice(others)
            second = other.population.select_parent(self.tournament_size, self.rng)
            if second.commit != first.commit:
                return second, ""
            return None, (f"the second parent drawn (from island {other.index}) is the first one, "
                          f"{first.commit[:7]}: both islands hold that commit")
        rest = [m for m in state.islands[island].population.members if m.commit != first.commit]
        if rest:
            return self.rng.choice(rest), ""
        return None, f"island {island} has no member other than the first parent {first.commit[:7]}"

    @staticmethod
    def _nothing_to_combine(parents: list[Parent], ancestor: str | None) -> str:
        """Why two parents give a crossover nothing to combine ("" when they do): the same train.py,
        or one of them unchanged since their common ancestor."""
        first, second = parents
        if same_program(first.source, second.source):
            return f"parents {first.commit[:7]} and {second.commit[:7]} have the same train.py"
        for parent in parents:
            if ancestor is not None and same_program(parent.source, ancestor):
                return f"parent {parent.commit[:7]} has no change since the common ancestor: nothing to combine"
        return ""

    def context(self, state: RunState, island: int, parents: list[Parent], shown: int = MAX_HISTORY,
                in_flight: tuple[Peer, ...] = ()) -> ProposalContext:
        """What an LLM operator is told: the history of the (first) parent's lineage, i.e. every
        experiment, on any island, made from the parent or one of its ancestors (the operator shows
        the last `shown`; only their failures' logs are read); the kept changes that led to the
        parent and the base train.py; the island's best other members; the candidates training now;
        the noise floor and the brief."""
        by_commit = made_by(state)
        chain = lineage_commits(by_commit, parents[0].commit)
        on_chain = set(chain)
        experiments = [e for e in state.experiments if not e.is_baseline and judged_against(e) in on_chain]
        first_shown = len(experiments) - shown

        def tail(i: int, e) -> str:
            wanted = e.status == "crash" and e.log and i >= first_shown
            return log_tail(read_log(self.run_dir / e.log)) if wanted else ""

        history = tuple(Attempt(
            description=e.description, status=e.status, outcome=e.outcome, val_bpb=e.val_bpb,
            delta=None if e.val_bpb is None or e.parent_bpb is None else e.val_bpb - e.parent_bpb,
            reason=e.reason, log_tail=tail(i, e), island=e.island,
            tried_on="" if judged_against(e) == parents[0].commit else judged_against(e))
            for i, e in enumerate(experiments))
        lineage = tuple(LineageStep(commit=c, description=by_commit[c].description, island=by_commit[c].island,
                                    delta=None if by_commit[c].val_bpb is None or by_commit[c].parent_bpb is None
                                    else by_commit[c].val_bpb - by_commit[c].parent_bpb)
                        for c in reversed(chain) if c in by_commit and not by_commit[c].is_baseline)
        shown_commits = {p.commit for p in parents}
        best = tuple(Peer(island=m.origin_island, description=self._parent(m, by_commit).description, commit=m.commit,
                          val_bpb=m.val_bpb)
                     for m in sorted(state.islands[island].population.members, key=lambda m: (m.val_bpb, m.seq))
                     if m.commit not in shown_commits)[:BEST_SHOWN]
        ancestor = None
        if len(parents) == 2:
            base = self.lab.merge_base(parents[0].commit, parents[1].commit)
            ancestor = self.lab.read(base, "train.py") if base else None
        return ProposalContext(island=island, program=self.program, history=history, sigma=state.sigma or 0.0,
                               noise_k=self.noise_k, budget_s=self.budget_s, common_ancestor_source=ancestor,
                               temperature=self.temperatures[island] if island < len(self.temperatures) else 0.0,
                               bet_max_credit=self.bet_max_credit,
                               bets=story([e for e in state.events if isinstance(e, Bet) and e.island == island],
                                          state.islands[island].bet),
                               base_source=self._source(self.base_commit) if self.base_commit else None,
                               lineage=lineage, best=best, in_flight=tuple(in_flight),
                               lessons=read_lessons(self.run_dir), focus=self.focus(island),
                               control=ProposalControl())

    # ---- proposing ------------------------------------------------------------------------------
    def prepare(self, state: RunState, island: int, operator_name: str, in_flight: tuple[Peer, ...] = ()) -> Request:
        """Draws parents and snapshots the context now; raises NoCandidate if nothing can be built.
        `in_flight`: the candidates training now (shown to an LLM so it does not repeat them)."""
        operator = self._operator(operator_name, island)
        first = self._draw(state, island)
        members = [first]
        fallback_from = fallback_reason = ""
        if operator.arity == 2:
            second, why = self._second_parent(state, island, first)
            if second is None:   # recorded as an OperatorFallback by the scheduler
                fallback_from, fallback_reason = operator.name, why
                operator = self._operator(FALLBACK_OPERATOR, island)
            else:
                members.append(second)
        llm = is_llm(operator.name)
        by_commit = made_by(state) if llm else None
        parents = [self._parent(m, by_commit) for m in members]
        context = (self.context(state, island, parents, getattr(operator, "max_history", MAX_HISTORY), in_flight)
                   if llm else ProposalContext(island=island))
        if llm and len(parents) == 2:   # no request for a crossover that has nothing to combine
            why = self._nothing_to_combine(parents, context.common_ancestor_source)
            if why:
                fallback_from, fallback_reason = operator.name, why
                operator, parents = self._operator(FALLBACK_OPERATOR, island), parents[:1]
                context = ProposalContext(island=island)
        return Request(island, operator, parents, context, seed=self.rng.randrange(2**32),
                       epoch=state.islands[island].epoch, fallback_from=fallback_from, fallback_reason=fallback_reason)

    def propose_offline(self, state: RunState, island: int, seen: set[str]) -> Proposal:
        """A fresh offline candidate, re-drawn while it duplicates an already measured train.py."""
        proposal = None
        for _ in range(ATTEMPTS_BEFORE_DUPLICATE):
            names = list(self.offline_weights)
            name = self.rng.choices(names, weights=[self.offline_weights[n] for n in names])[0]
            try:
                proposal = self.prepare(state, island, name).run()
            except NoCandidate as e:
                if name == FALLBACK_OPERATOR:
                    raise
                proposal = replace(self.prepare(state, island, FALLBACK_OPERATOR).run(), fallback_from=name,
                                   fallback_reason=str(e).removeprefix(f"{name}: "))
            if proposal.source_sha256 not in seen:
                break
        return proposal
