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


@dataclass(frozen=True)
class Experiment:
    seq: int                      # global order of completion, 0-based
    island: int
    island_seq: int               # n-th experiment of this island, 0-based
    commit: str
    parents: tuple[str, ...]
    operator: str                 # "baseline", "perturb", "crossover", ...
    description: str
    outcome: str                  # ok / crash / timeout / oom / nan / rejected
    status: str                   # keep / discard / crash (results.tsv's vocabulary)
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
    kind: str = "experiment"

    @property
    def is_baseline(self) -> bool:
        return self.operator == "baseline"


@dataclass(frozen=True)
class NoiseFloor:
    sigma: float
    baselines: tuple[float, ...]
    kind: str = "sigma"


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
    round: int                    # run-wide reset round, 1-based
    resets: tuple[tuple[int, int, str, float], ...]  # (island, donor island, commit, val_bpb)
    after_seq: int
    kind: str = "reset"


@dataclass(frozen=True)
class OperatorFailure:
    """An operator that produced no candidate (LLM error, unusable reply); the island fell back."""

    island: int
    operator: str
    reason: str
    after_seq: int
    cost: dict[str, float] = field(default_factory=dict)
    kind: str = "operator_failure"


Record = Union[Experiment, NoiseFloor, Migration, Reset, OperatorFailure]
_KINDS = {"experiment": Experiment, "sigma": NoiseFloor, "migration": Migration, "reset": Reset,
          "operator_failure": OperatorFailure}
_TUPLE_FIELDS = {"parents", "baselines", "targets", "migrants", "resets"}


def to_json(record: Record) -> str:
    return json.dumps(dataclasses.asdict(record), sort_keys=True)


def from_json(line: str) -> Record:
    data: dict[str, Any] = json.loads(line)
    cls = _KINDS[data["kind"]]
    for key in _TUPLE_FIELDS & data.keys():
        data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in data[key])
    return cls(**data)
