"""The run's state, rebuilt from its records: islands, their populations, counters, the noise floor.

`RunState.apply` is the only way state changes, live and on resume alike, so a resumed run
holds exactly the state the killed one had after its last record.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .bets import OpenBet, spend
from .population import Member, Population, hall_of_fame
from .records import (CRASH, DISCARD, EXPLORE, KEEP, Bet, Exchange, Experiment, LLMSummary, Migration, NoiseFloor,
                      NoiseUpdate, OperatorFailure, OperatorFallback, Promotion, Record, Remeasure, Reset, RunStart)


@dataclass
class IslandState:
    index: int
    population: Population
    experiments: int = 0
    keeps: int = 0
    discards: int = 0
    crashes: int = 0
    migration_rounds: int = 0
    resets: int = 0
    operator_failures: int = 0
    llm_usd: float = 0.0
    # Bumped when the island's population changes under its candidates: a reset (the population
    # replaced) or migrants that add a member. A candidate drawn in an earlier epoch is recorded but
    # never admitted (evolve/trial.py); a would-be keep whose parents survived is trained again as
    # a new experiment of the new epoch (trial.readmission), so real gains are not lost to timing.
    epoch: int = 0
    epoch_cause: str = ""          # what started the current epoch, for the not-admitted reason
    explores: int = 0
    # The exploring head of a hot island (evolve/tempering.py): the commit its next parent is,
    # which may be worse than its champion (the population's best, the island's branch). None: the
    # island has no head apart from its population (a greedy island, or a hot one before its first
    # step), and parents are drawn by tournament. Set by an explored child, by a kept child of the
    # head, and by a replica exchange; cleared by a reset. Git: refs/evolve/<run>/head/island-<k>.
    head: str | None = None
    bet: OpenBet | None = None     # an open multi-step bet of its LLM (evolve/bets.py); a reset drops it

    def champion(self) -> Member | None:
        return self.population.champion()


@dataclass
class RunState:
    n_islands: int
    population_size: int
    islands: list[IslandState] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)
    events: list[Record] = field(default_factory=list)
    sigma: float | None = None     # None until generation 0 is complete (NoiseFloor)
    sigma_dof: int = 0             # its degrees of freedom (evolve/noise.py)
    reset_rounds: int = 0
    exchange_rounds: int = 0
    # Every successful measurement of each commit, run-wide (the same commit may be measured on
    # several islands, e.g. the baseline with different seeds).
    measurements: dict[str, list[float]] = field(default_factory=dict)
    # Per candidate re-run on two fresh seeds or more next to its parent, the paired differences
    # (parent - child on each shared seed): their pooled within-candidate spread is how much of the
    # noise a shared seed does not cancel (evolve/noise.py unshared).
    paired: list[list[float]] = field(default_factory=list)
    starts: list[RunStart] = field(default_factory=list)
    promotions: list[Promotion] = field(default_factory=list)
    remeasures: list[Remeasure] = field(default_factory=list)   # the champions' extra runs (evolve/remeasure.py)
    summary_usd: float = 0.0       # LLM summaries of lessons.md (no island's)

    def __post_init__(self) -> None:
        if not self.islands:
            self.islands = [IslandState(k, Population(self.population_size)) for k in range(self.n_islands)]

    @classmethod
    def replay(cls, n_islands: int, population_size: int, records: list[Record]) -> "RunState":
        state = cls(n_islands, population_size)
        for record in records:
            state.apply(record)
        return state

    @property
    def next_seq(self) -> int:
        return len(self.experiments)

    def apply(self, record: Record) -> None:
        if isinstance(record, Experiment):
            self._apply_experiment(record)
        elif isinstance(record, (NoiseFloor, NoiseUpdate)):
            self.sigma, self.sigma_dof = record.sigma, record.dof
            self.events.append(record)
        elif isinstance(record, Migration):
            self.islands[record.source].migration_rounds = record.round
            for target in record.targets:
                arrived = [(c, v) for c, v in record.migrants if c not in self.islands[target].population]
                for commit, val_bpb in arrived:
                    self.islands[target].population.add(self._member(commit, val_bpb, record.source, record.after_seq))
                if arrived:
                    self.islands[target].epoch += 1
                    self.islands[target].epoch_cause = f"received migrants from island {record.source}"
            self.events.append(record)
        elif isinstance(record, Reset):
            self.reset_rounds = record.round
            for island, donor, commit, val_bpb in record.resets:
                origin = donor if donor >= 0 else island      # a restart's donor is the unmodified train.py (-1)
                self.islands[island].population.replace_all(self._member(commit, val_bpb, origin, record.after_seq))
                self.islands[island].resets += 1
                self.islands[island].epoch += 1
                self.islands[island].epoch_cause = "was restarted" if record.restart else "was reset"
                # a restart's hot island walks from the unmodified train.py (its head), whatever
                # migrants later join its population; a reset's draws from its new population
                self.islands[island].head = commit if record.restart and donor < 0 else None
                self.islands[island].bet = None
            self.events.append(record)
        elif isinstance(record, Bet):
            self._apply_bet(record)
            self.events.append(record)
        elif isinstance(record, Exchange):
            self._apply_exchange(record)
            self.events.append(record)
        elif isinstance(record, OperatorFailure):
            self.islands[record.island].operator_failures += 1
            self.islands[record.island].llm_usd += record.cost.get("usd", 0.0)
            self.events.append(record)
        elif isinstance(record, OperatorFallback):
            self.events.append(record)
        elif isinstance(record, Promotion):
            self.promotions.append(record)
            self.events.append(record)
        elif isinstance(record, Remeasure):
            if record.val_bpb is not None:
                self._observe(record.commit, [record.val_bpb])
            self.remeasures.append(record)
            self.events.append(record)
        elif isinstance(record, LLMSummary):
            self.summary_usd += record.cost.get("usd", 0.0)
            self.events.append(record)
        elif isinstance(record, RunStart):
            self.starts.append(record)
        else:  # pragma: no cover - records.from_json only yields the kinds above
            raise TypeError(f"unknown record {record!r}")

    def _apply_experiment(self, exp: Experiment) -> None:
        if exp.seq != self.next_seq:
            raise ValueError(f"journal out of order: experiment seq {exp.seq}, expected {self.next_seq}")
        self.experiments.append(exp)
        island = self.islands[exp.island]
        island.experiments += 1
        island.llm_usd += exp.cost.get("usd", 0.0)
        if not exp.outlier:
            self._observe(exp.commit, exp.runs)
        if exp.parent:
            self._observe(exp.parent, exp.parent_runs)
        by_seed = {seed: v for seed, v, outcome, _ in exp.parent_reruns if outcome == "ok" and v is not None}
        diffs = [by_seed[seed] - v for seed, v, outcome, _ in exp.reruns
                 if outcome == "ok" and v is not None and seed in by_seed]
        if len(diffs) >= 2 and not exp.outlier:
            self.paired.append(diffs)
        if exp.status == KEEP:
            island.keeps += 1
            if exp.commit not in island.population:   # a repeated baseline is already there, observed
                island.population.add(self._member(exp.commit, exp.val_bpb, exp.island, exp.seq))
        elif exp.status == DISCARD:
            island.discards += 1
        elif exp.status == CRASH:
            island.crashes += 1
        if island.bet is not None and island.head is not None and island.head in exp.parents:
            island.bet = spend(island.bet, exp)       # one more experiment of the bet's lineage
        if exp.status == EXPLORE:
            island.explores += 1
            island.head = exp.commit
        if exp.status == KEEP and island.head is not None and island.head in exp.parents:
            island.head = exp.commit      # the exploring lineage improved: it walks on from the keep

    def _apply_bet(self, bet: Bet) -> None:
        island = self.islands[bet.island]
        if bet.action == "open":
            island.bet = OpenBet(bet.name, bet.credit, 1, bet.best_commit, bet.best_bpb, bet.champion_bpb, bet.after_seq)
            island.head = bet.best_commit      # the bet's lineage walks on from the child that opened it
            return
        island.bet = None
        if bet.outcome == "kept":     # the best it reached joins the population: the island's new champion
            if bet.best_commit not in island.population:
                island.population.add(self._member(bet.best_commit, bet.best_bpb, bet.island, bet.after_seq))
            island.head = bet.best_commit
        else:                         # abandoned: parents come from the population again
            island.head = None

    def _apply_exchange(self, ex: Exchange) -> None:
        """A swap puts each island's state at the other: it joins the receiver's population (as a
        migrant would) and becomes its head, except on a greedy island, whose head is its champion."""
        self.exchange_rounds = ex.round
        if not ex.accepted:
            return
        for receiver, t_receiver, commit, val_bpb, sender in (
                (ex.cold, ex.temperatures[0], ex.hot_commit, ex.hot_bpb, ex.hot),
                (ex.hot, ex.temperatures[1], ex.cold_commit, ex.cold_bpb, ex.cold)):
            island = self.islands[receiver]
            if commit not in island.population:
                # no new epoch: a swap moves heads, and a candidate in flight on the old head is judged
                # as usual (counting swaps as epochs left frequent exchanges no explores at all)
                island.population.add(self._member(commit, val_bpb, sender, ex.after_seq))
            island.head = commit if t_receiver > 0 else None

    def _observe(self, commit: str, values: list[float]) -> None:
        """New measurements of a commit: one list per commit, which every member of it reads, so a
        commit has one val_bpb everywhere (the mean of all its runs)."""
        if not values:
            return
        self.measurements.setdefault(commit, []).extend(values)
        for island in self.islands:
            member = island.population.get(commit)
            if member is not None:
                for value in values:
                    member.observe(value)

    def _member(self, commit: str, val_bpb: float, origin: int, seq: int) -> Member:
        return Member(commit, list(self.measurements.get(commit) or [val_bpb]), origin, seq)

    def head_member(self, island: int) -> Member | None:
        """Island's exploring head as a member (scored by every run of its commit), or None."""
        head = self.islands[island].head
        if head is None:
            return None
        member = self.islands[island].population.get(head)
        return member if member is not None else self._member(head, float("nan"), island, -1)

    def state_of(self, island: int) -> Member | None:
        """What replica exchange swaps: the island's head, else its champion."""
        return self.head_member(island) or self.islands[island].champion()

    def member_bpb(self, commit: str) -> float:
        """A commit's score: the mean of every run of it in the run (nan when it has none)."""
        runs = self.measurements.get(commit)
        return sum(runs) / len(runs) if runs else float("nan")

    def runs_of(self, commit: str) -> list[float]:
        """Every successful measurement of a commit in the run."""
        return list(self.measurements.get(commit, []))

    # ---- questions the engine asks --------------------------------------------------------------
    def baseline_seeds_done(self) -> set[int]:
        return {e.seed for e in self.experiments if e.is_baseline}

    def hall_of_fame(self, size: int = 10) -> list[Member]:
        """The best distinct commits alive in any population, each scored by the mean of all its
        measurements in the run."""
        # every member already reads all runs of its commit (_observe keeps them in step)
        return hall_of_fame([m for isl in self.islands for m in isl.population.members], size)

    def champion(self) -> Member | None:
        best = self.hall_of_fame(1)
        return best[0] if best else None

    def seconds_run(self) -> float:
        """How long the run has been running, summed over its starts: each from its start to the
        end of the last experiment it recorded (time between starts does not count)."""
        total = 0.0
        for start, following in zip(self.starts, [*self.starts[1:], None]):
            last = following.after_seq if following else len(self.experiments) - 1
            ends = [e.finished for e in self.experiments[start.after_seq + 1:last + 1]]
            total += max([start.time, *ends]) - start.time
        return total

    def llm_usd(self) -> float:
        return sum(isl.llm_usd for isl in self.islands) + self.summary_usd

    def keeps_total(self) -> int:
        return sum(isl.keeps for isl in self.islands)
