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
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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
def complete_lines(path: Path) -> tuple[list[str], bool]:
    """The complete lines of a file that another process may be appending to, and whether an
    incomplete last line was left out. Read-only: the file is never truncated."""
    if not path.exists():
        return [], False
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines.pop() != b""     # text after the last newline is a line still being written
    return [line.decode() for line in lines if line.strip()], torn


def run_config(run_dir: Path) -> DictConfig:
    """The run's resolved Hydra config (<run_dir>/.hydra/config.yaml); empty when there is none."""
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
    manifest = json.loads((run_dir / "run.json").read_text())
    cfg = run_config(run_dir)
    if not (run_dir / ".hydra" / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir}/.hydra/config.yaml is missing: the run's budget is unknown")
    budget_s = float(config_value(cfg, "task.budget_s"))
    grace_s = float(config_value(cfg, "task.grace_s"))
    python = config_value(cfg, "task.python") or sys.executable
    extra_env = {"EVOLVE_HELDOUT": "1"}
    if cache_dir:
        extra_env["EVOLVE_CACHE_DIR"] = str(Path(cache_dir).expanduser().resolve())
    lab_dir = Path(manifest["lab_dir"])
    prefix = manifest.get("prefix", "")
    records = []
    for given in commits:
        # Records carry the full hash, whatever abbreviation the caller used.
        commit = _git(lab_dir, "rev-parse", "--verify", "--quiet", f"{given}^{{commit}}", check=False) or given
        log_path = run_dir / "logs" / "rescore" / f"{commit[:12]}-seed{seed}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="evolve-rescore-"))
        worktree = tmp / "checkout"
        try:
            _git(lab_dir, "worktree", "add", "--detach", str(worktree), commit)
            task_dir = worktree / prefix if prefix else worktree
            refused = pre_run_check(task_dir, manifest["prepare_sha256"])
            if refused:
                log_path.write_text(f"rejected before running: {refused}\n")
                val_bpb, test_bpb, outcome, reason = None, None, "rejected", refused
            else:
                result = run_fitness(task_dir, budget_s=budget_s, grace_s=grace_s, log_path=log_path,
                                     seed=seed, extra_env=extra_env, python=python)
                val_bpb, outcome = result.val_bpb, result.status.value
                test_bpb = parse_test_bpb(read_log(log_path))
                if test_bpb is not None and not math.isfinite(test_bpb):
                    test_bpb, reason = None, "test_bpb is not finite"
                elif test_bpb is None:
                    reason = NO_TEST_BPB if result.ok else f"{NO_TEST_BPB} ({result.reason})"
                else:
                    reason = ""
        except subprocess.CalledProcessError as e:
            log_path.write_text(f"could not check out {commit}: {e.stderr}\n")
            val_bpb, test_bpb, outcome, reason = None, None, "rejected", f"cannot check out {commit[:12]}"
        finally:
            _git(lab_dir, "worktree", "remove", "--force", str(worktree), check=False)
            _git(lab_dir, "worktree", "prune", check=False)
            shutil.rmtree(tmp, ignore_errors=True)
        record = asdict(Rescore(commit=commit, val_bpb=val_bpb, test_bpb=test_bpb, seed=seed,
                                finished=time.time(), outcome=outcome, reason=reason,
                                log=os.path.relpath(log_path, run_dir)))
        with open(run_dir / RESCORE_FILE, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        records.append(record)
    return records


def _git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=check, capture_output=True, text=True)
    return done.stdout.strip()
