"""What the journal holds: one record per finished experiment and per event.

Records are plain dataclasses; `to_json`/`from_json` are the only (de)serialisation. The journal
is the single source of truth: the TSV files and the branches are derived from it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Union

KEEP, DISCARD, CRASH = "keep", "discard", "crash"
EARLY_STOPPED = "early-stopped"   # an outcome (island.summary.Status.EARLY_STOPPED): status discard
# A worse child a hot island took as its new head (evolve/tempering.py): not believed to be an
# improvement, so results.tsv (keep/discard/crash only) writes it as discard, "explore: ..."
EXPLORE = "explore"
NOT_ADMITTED = "not admitted:"   # how a stale would-be keep's reason starts (evolve/trial.py)


@dataclass(frozen=True)
class Experiment:
    seq: int                      # global order of completion, 0-based
    island: int
    island_seq: int               # n-th experiment of this island, 0-based
    commit: str
    parents: tuple[str, ...]
    operator: str                 # "baseline", "perturb", "crossover", ...
    description: str
    outcome: str                  # ok / crash / timeout / oom / nan / rejected / over-budget / early-stopped ...
    status: str                   # keep / discard / crash (results.tsv's vocabulary), or explore
    val_bpb: float | None
    parent_bpb: float | None
    seed: int
    wall_s: float
    reason: str = ""
    log: str = ""
    started: float = 0.0          # unix seconds
    finished: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    source_sha256: str = ""       # of the train.py measured, to avoid measuring the same file twice
    # Confirmation runs of the same train.py with other seeds (seed, val_bpb, outcome, log); when
    # present, first_bpb is the first run's value, val_bpb the mean of every successful run, and
    # rerun_reason says why it ran again.
    reruns: tuple[tuple[int, float | None, str, str], ...] = ()
    rerun_reason: str = ""
    first_bpb: float | None = None
    # The parent measured again next to a confirmation run, with the same seed (paired), as
    # (seed, val_bpb, outcome, log); parent is the commit the child was judged against.
    parent_reruns: tuple[tuple[int, float | None, str, str], ...] = ()
    parent: str = ""
    # Its runs disagree beyond selection.implausible_sigmas: they stay in the record but are kept
    # out of the noise model (a fault, not run-to-run noise).
    outlier: bool = False
    parent_n: int = 0             # how many runs of the parent parent_bpb is the mean of
    # Outcome early-stopped: the fraction of the budget its run reached when the early-stop rule
    # cut it (its curve is in curves.jsonl).
    stopped_at: float | None = None
    focus: str = ""               # the island's research focus its LLM prompt carried (llm.islands.<k>.focus)
    transcript: str = ""          # LLM operators: the proposal's requests and replies (llm/..., run-dir relative)
    stand_in_for: str = ""        # an offline candidate trained while this LLM operator's proposal was not ready
    kind: str = "experiment"

    @property
    def is_baseline(self) -> bool:
        return self.operator == "baseline"

    @property
    def runs(self) -> list[float]:
        """Every successful val_bpb measured for this experiment (the first run, then re-runs)."""
        if self.status == CRASH or self.val_bpb is None:
            return []
        if not self.reruns:
            return [self.val_bpb]
        return [self.first_bpb] + [v for _, v, outcome, _ in self.reruns
                                                                if outcome == "ok" and v is not None]

    @property
    def parent_runs(self) -> list[float]:
        """The successful paired re-runs of the parent."""
        return [v for _, v, outcome, _ in self.parent_reruns if outcome == "ok" and v is not None]


@dataclass(frozen=True)
class NoiseFloor:
    """Generation 0 is complete: sigma from the baselines (empty: every baseline failed)."""

    sigma: float
    baselines: tuple[float, ...]
    dof: int = 0
    kind: str = "sigma"


@dataclass(frozen=True)
class NoiseUpdate:
    """The pooled noise estimate after more repeated measurements of identical code."""

    sigma: float
    dof: int
    after_seq: int
    kind: str = "noise"


@dataclass(frozen=True)
class Migration:
    source: int
    round: int                    # the source island's migration round, 1-based
    targets: tuple[int, ...]
    migrants: tuple[tuple[str, float], ...]   # (commit, val_bpb)
    after_seq: int
    kind: str = "migration"


@dataclass(frozen=True)
class Reset:
    round: int                    # run-wide reset round, 1-based (a restart keeps the round it came in)
    resets: tuple[tuple[int, int, str, float], ...]  # (island, donor island, commit, val_bpb)
    after_seq: int
    kind: str = "reset"
    # A restart (selection.descend_window): the run stopped descending, so the hot islands restart
    # from the unmodified train.py (donor -1) and the greedy island 0 takes the run's champion if it
    # lacks it. Not a round of reset.interval's schedule.
    restart: bool = False


@dataclass(frozen=True)
class Exchange:
    """Replica exchange between neighbours on the temperature ladder: when accepted, each island
    takes the other's state as its head (a greedy island adds it to its population instead)."""

    round: int                    # run-wide exchange round, 1-based
    cold: int                     # the island with the lower temperature
    hot: int
    cold_commit: str              # the cold island's state before the swap: its head, else its champion
    cold_bpb: float
    hot_commit: str
    hot_bpb: float
    temperatures: tuple[float, ...]   # (cold, hot), in sigma units
    probability: float
    accepted: bool
    after_seq: int
    kind: str = "exchange"


@dataclass(frozen=True)
class Bet:
    """A multi-step bet of a hot island opened or closed (evolve/bets.py)."""

    island: int
    name: str
    action: str                   # open / close
    credit: int                   # experiments it may spend, the opening one included
    after_seq: int
    best_commit: str              # open: the opening child; close: the best its lineage reached
    best_bpb: float
    champion_bpb: float           # the island's champion when it opened: what it had to beat
    outcome: str = ""             # close: kept / abandoned
    kind: str = "bet"


@dataclass(frozen=True)
class OperatorFailure:
    """An operator that produced no candidate (LLM error, unusable reply); the island fell back."""

    island: int
    operator: str
    reason: str
    after_seq: int
    cost: dict[str, float] = field(default_factory=dict)
    transcript: str = ""          # the proposal's requests and replies (llm/..., run-dir relative)
    kind: str = "operator_failure"


@dataclass(frozen=True)
class OperatorFallback:
    """A crossover drawn for an island that could not run (no second parent other than the first,
    or parents with nothing to combine): the island trained an offline candidate instead."""

    island: int
    operator: str                 # the operator drawn (llm_crossover, crossover)
    fallback: str                 # the operator that made the candidate instead (perturb, crossover)
    reason: str
    after_seq: int
    kind: str = "operator_fallback"


@dataclass(frozen=True)
class Promotion:
    """A champion trained at promote.factor times the budget next to the base commit at the same
    budget and seed: does its gain at the search's budget hold at the longer one?"""

    island: int                   # where both long runs ran
    commit: str
    base: str
    seed: int
    factor: float
    budget_s: float               # the long budget
    short_delta: float            # champion minus base, the means of their runs at the search's budget
    champion_bpb: float | None    # at the long budget (None: the run failed)
    base_bpb: float | None
    long_delta: float | None      # champion minus base at the long budget (negative: still better)
    held: bool                    # the champion still beats the base at the long budget
    budget_ignored: bool          # the task did not train longer: promotions are off for the run
    reason: str
    wall_s: float                 # what both long runs cost
    after_seq: int
    kind: str = "promotion"


@dataclass(frozen=True)
class Remeasure:
    """The run's champion trained again at the search's budget on a fresh seed
    (selection.champion_runs, evolve/remeasure.py): its number becomes the mean of more runs."""

    island: int                   # where it ran
    commit: str
    seed: int
    val_bpb: float | None         # this run's (None: it failed)
    outcome: str                  # ok / crash / timeout / ...
    reason: str                   # why it failed ("" when it did not)
    runs: int                     # the commit's successful runs, this one included
    mean_bpb: float | None        # their mean: the commit's val_bpb from now on
    wall_s: float
    after_seq: int
    kind: str = "remeasure"


@dataclass(frozen=True)
class LLMSummary:
    """The LLM's summary of lessons.md (llm.lessons=true): what it cost, and why it failed if it did."""

    after_seq: int
    cost: dict[str, float] = field(default_factory=dict)
    reason: str = ""              # empty when the summary was written into lessons.md
    kind: str = "llm_summary"


@dataclass(frozen=True)
class RunStart:
    """A start (or resume) of the run: how long the run has been running sums over starts."""

    time: float                   # unix seconds
    after_seq: int
    kind: str = "start"


Record = Union[Experiment, NoiseFloor, NoiseUpdate, Migration, Reset, Exchange, Bet, OperatorFailure,
               OperatorFallback, Promotion, Remeasure, LLMSummary, RunStart]
_KINDS = {"experiment": Experiment, "sigma": NoiseFloor, "noise": NoiseUpdate, "migration": Migration,
          "reset": Reset, "exchange": Exchange, "bet": Bet, "operator_failure": OperatorFailure,
          "operator_fallback": OperatorFallback,
          "promotion": Promotion, "remeasure": Remeasure, "llm_summary": LLMSummary, "start": RunStart}
_TUPLE_FIELDS = {"parents", "baselines", "targets", "migrants", "resets", "reruns", "parent_reruns", "temperatures"}


def to_json(record: Record) -> str:
    return json.dumps(dataclasses.asdict(record), sort_keys=True)


def from_json(line: str) -> Record:
    data: dict[str, Any] = json.loads(line)
    cls = _KINDS[data["kind"]]
    for key in _TUPLE_FIELDS & data.keys():
        data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in data[key])
    return cls(**data)
