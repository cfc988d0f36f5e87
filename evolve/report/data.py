"""Reading a run: its manifest, config, journal (as far as its complete lines go), replayed state,
rescore records, and the experiments as a DataFrame. Reading never writes: a journal line still
being written by a running engine is left out, not truncated.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ..journal import Journal
from ..records import Experiment, Migration, Reset
from ..rescore import config_value, read_rescores, run_config
from ..state import RunState

COLUMNS = ("seq", "island", "island_seq", "commit", "parents", "operator", "status", "outcome", "val_bpb",
           "parent_bpb", "delta", "delta_sigma", "seed", "runs", "parent_runs", "wall_s", "training_seconds", "peak_vram_mb",
           "cost_usd", "tokens", "started", "finished", "elapsed_s", "description", "reason", "log")
MAX_DIFF_LINES = 400


@dataclass
class RunData:
    run_dir: Path
    name: str
    manifest: dict
    config: DictConfig
    records: list                       # every complete journal record, in order
    experiments: pd.DataFrame           # one row per experiment, COLUMNS
    state: RunState                     # populations and champions after the last complete record
    torn: bool                          # the journal ended in a line still being written
    rescores: dict[str, dict] = field(default_factory=dict)

    @property
    def n_islands(self) -> int:
        return int(self.manifest["islands"])

    @property
    def start(self) -> float:
        return float(self.manifest["created"])

    @property
    def sigma(self) -> float | None:
        """The noise estimate: pooled over every repeated measurement of identical code (evolve/noise.py)."""
        return self.state.sigma

    @property
    def events(self) -> list:
        """NoiseFloor, Migration, Reset and OperatorFailure records, in journal order."""
        return list(self.state.events)

    @property
    def migrations(self) -> list[Migration]:
        return [e for e in self.events if isinstance(e, Migration)]

    @property
    def resets(self) -> list[Reset]:
        return [e for e in self.events if isinstance(e, Reset)]

    @property
    def max_experiments(self) -> int | None:
        value = config_value(self.config, "run.max_experiments")
        return int(value) if value is not None else None

    def running(self) -> bool:
        """A torn journal line is a write in progress; a fitness run holds a pid file while it lasts
        (a killed engine leaves its pid files behind, hence the check that the process is alive)."""
        return self.torn or any(_alive(p) for p in (self.run_dir / "pids").glob("*.pid"))


def _alive(pidfile: Path) -> bool:
    try:
        pid = json.loads(pidfile.read_text())["supervisor_pid"]
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_run(run_dir: str | os.PathLike) -> RunData:
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "run.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no run.json)")
    manifest = json.loads((run_dir / "run.json").read_text())
    config = run_config(run_dir)
    records, torn = Journal(run_dir, int(manifest["islands"])).read()
    state = RunState.replay(int(manifest["islands"]), population_size(config), records)
    return RunData(run_dir=run_dir, name=manifest.get("run_name", run_dir.name), manifest=manifest, config=config,
                   records=records,
                   experiments=experiments_frame(state.experiments, state.sigma, float(manifest["created"])),
                   state=state, torn=torn, rescores=read_rescores(run_dir))


def population_size(config: DictConfig) -> int:
    return int(config_value(config, "selection.population_size", 4))


def new_state(manifest: dict, config: DictConfig) -> RunState:
    return RunState(int(manifest["islands"]), population_size(config))


def experiments_frame(experiments: list[Experiment], sigma: float | None, start: float) -> pd.DataFrame:
    rows = []
    for e in experiments:
        delta = None if e.val_bpb is None or e.parent_bpb is None else e.val_bpb - e.parent_bpb
        rows.append({
            "seq": e.seq, "island": e.island, "island_seq": e.island_seq, "commit": e.commit,
            "parents": tuple(e.parents), "operator": e.operator, "status": e.status, "outcome": e.outcome,
            "val_bpb": _nan(e.val_bpb), "parent_bpb": _nan(e.parent_bpb), "delta": _nan(delta),
            "delta_sigma": delta / sigma if delta is not None and sigma else math.nan,
            "seed": e.seed, "runs": 1 + len(e.reruns), "parent_runs": e.parent_n, "wall_s": e.wall_s,
            "training_seconds": _nan(e.metrics.get("training_seconds")),
            "peak_vram_mb": _nan(e.metrics.get("peak_vram_mb")), "cost_usd": e.cost.get("usd", 0.0),
            "tokens": int(e.cost.get("prompt_tokens", 0) + e.cost.get("completion_tokens", 0)),
            "started": e.started, "finished": e.finished, "elapsed_s": e.finished - start,
            "description": e.description, "reason": e.reason, "log": e.log,
        })
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("val_bpb", "parent_bpb", "delta", "delta_sigma", "wall_s", "training_seconds", "peak_vram_mb",
                "cost_usd", "started", "finished", "elapsed_s"):
        frame[col] = frame[col].astype(float)
    return frame


def load(run_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per experiment, in seq order; the rows of experiments.tsv with full commit hashes,
    parents as a tuple, delta in units of the noise floor (delta_sigma) and timing columns."""
    return read_run(run_dir).experiments


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def distinct_names(a: RunData, b: RunData) -> tuple[str, str]:
    """How two runs are told apart: their names, or their directories when the names are equal."""
    if a.name != b.name:
        return a.name, b.name
    return str(a.run_dir), str(b.run_dir)


def git_diff(run: RunData, parent: str, commit: str) -> str:
    """`git diff parent commit -- train.py` in the lab repository."""
    path = f"{run.manifest.get('prefix', '')}train.py"
    done = subprocess.run(["git", "-C", run.manifest["lab_dir"], "diff", parent, commit, "--", path],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"(no diff: {done.stderr.strip() or 'git failed'})"
    lines = done.stdout.splitlines()
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return "\n".join(lines)
