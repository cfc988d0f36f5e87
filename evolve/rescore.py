"""Re-scoring champions on the held-out test split, which the search never saw.

    records = rescore(run_dir, [commit, ...])   # appends one record per commit to <run_dir>/rescore.jsonl
    latest = read_rescores(run_dir)             # {commit: the newest record}

Contract with the task's prepare.py: a fitness run with EVOLVE_HELDOUT=1 in its environment also
evaluates the test split and prints a line `test_bpb: <float>`. Each commit is checked out in a
temporary detached worktree of the lab (removed afterwards), guarded like any candidate (only
train.py may differ, prepare.py must hash to the pinned value) and run by island.fitness.run_fitness
with the run's own budget and seed 0. A task without held-out support prints no such line; its
record says so ("no test_bpb in output") instead of failing.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import git
from omegaconf import DictConfig, OmegaConf

from .journal import complete_lines
from .workspace import Workspace

RESCORE_FILE = "rescore.jsonl"
NO_TEST_BPB = "no test_bpb in output"
_TEST_BPB = re.compile(r"^\s*test_bpb:\s*(\S+)\s*$")


@dataclass(frozen=True)
class Rescore:
    commit: str
    val_bpb: float | None
    test_bpb: float | None
    seed: int
    finished: float
    outcome: str          # the fitness run's status: ok / crash / timeout / oom / nan / rejected
    reason: str           # why test_bpb is missing ("" when it is there)
    log: str              # relative to the run dir


# ---- reading a run's files, tolerant of a run that is still writing them ----------------------------
def run_config(run_dir: Path) -> DictConfig:
    """The run's resolved Hydra config (<run_dir>/.hydra/config.yaml), for display; empty when there is none."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    return OmegaConf.load(path) if path.exists() else OmegaConf.create({})


def config_value(cfg: DictConfig, key: str, default=None):
    # select() resolves only the key asked for, so an unresolvable ${now:...} elsewhere is harmless.
    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


def read_rescores(run_dir: Path) -> dict[str, dict]:
    """The newest rescore record of each commit."""
    lines, _ = complete_lines(Path(run_dir) / RESCORE_FILE)
    latest: dict[str, dict] = {}
    for line in lines:
        record = json.loads(line)
        latest[record["commit"]] = record
    return latest


# ---- re-scoring -------------------------------------------------------------------------------------
def parse_test_bpb(log_text: str) -> float | None:
    """The value of the last `test_bpb: <float>` line anywhere in a log (it may precede `---`)."""
    value = None
    for line in log_text.replace("\r", "\n").split("\n"):
        m = _TEST_BPB.match(line)
        if m:
            try:
                value = float(m.group(1))
            except ValueError:
                continue
    return value


def rescore(run_dir: str | os.PathLike, commits: list[str], *, cache_dir: str | None = None,
            seed: int = 0) -> list[dict]:
    """Runs each commit with EVOLVE_HELDOUT=1 and appends its record to rescore.jsonl.

    `cache_dir`, when given, is passed as EVOLVE_CACHE_DIR (the task's data cache)."""
    # Imported here: the report reads rescore.jsonl without needing the fitness machinery.
    from island.fitness import run_fitness
    from island.guards import pre_run_check
    from island.summary import read_log

    run_dir = Path(run_dir).resolve()
    ws = Workspace.open(run_dir)
    pinned = ws.manifest.settings
    if not pinned:
        raise FileNotFoundError(f"{run_dir}/run.json pins no task settings (a run made by an older evolve): "
                                "the run's budget is unknown")
    extra_env = {"EVOLVE_HELDOUT": "1"}
    if cache_dir:
        extra_env["EVOLVE_CACHE_DIR"] = str(Path(cache_dir).expanduser().resolve())
    records = []
    for given in commits:
        # Records carry the full hash, whatever abbreviation the caller used.
        try:
            commit = ws.lab.repo.git.rev_parse("--verify", "--quiet", f"{given}^{{commit}}")
        except git.GitCommandError:
            commit = given
        log_path = run_dir / "logs" / "rescore" / f"{commit[:12]}-seed{seed}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="evolve-rescore-"))
        worktree = tmp / "checkout"
        try:
            task_dir = ws.lab.ensure_worktree(worktree, commit)
            refused = pre_run_check(task_dir, ws.manifest.prepare_sha256)
            if refused:
                log_path.write_text(f"rejected before running: {refused}\n")
                val_bpb, test_bpb, outcome, reason = None, None, "rejected", refused
            else:
                result = run_fitness(task_dir, budget_s=float(pinned["task.budget_s"]),
                                     grace_s=float(pinned["task.grace_s"]), log_path=log_path, seed=seed,
                                     extra_env=extra_env, python=pinned["task.python"] or sys.executable)
                val_bpb, outcome = result.val_bpb, result.status.value
                test_bpb = parse_test_bpb(read_log(log_path))
                if test_bpb is not None and not math.isfinite(test_bpb):
                    test_bpb, reason = None, "test_bpb is not finite"
                elif test_bpb is None:
                    reason = NO_TEST_BPB if result.ok else f"{NO_TEST_BPB} ({result.reason})"
                else:
                    reason = ""
        except git.GitCommandError as e:
            log_path.write_text(f"could not check out {commit}: {e.stderr}\n")
            val_bpb, test_bpb, outcome, reason = None, None, "rejected", f"cannot check out {commit[:12]}"
        finally:
            try:
                ws.lab.remove_worktree(worktree)
            except git.GitCommandError:
                pass
            ws.lab.repo.git.worktree("prune")
            shutil.rmtree(tmp, ignore_errors=True)
        record = asdict(Rescore(commit=commit, val_bpb=val_bpb, test_bpb=test_bpb, seed=seed,
                                finished=time.time(), outcome=outcome, reason=reason,
                                log=os.path.relpath(log_path, run_dir)))
        with open(run_dir / RESCORE_FILE, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        records.append(record)
    return records
