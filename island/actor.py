"""The Island: one worktree (and, under Ray, one GPU) that measures candidates one at a time.

It checks out the parent commit, writes the candidate's train.py, guards it, runs the fitness
subprocess, guards again and leaves the checkout pristine. It never commits or decides: the
driver records the result (see evolve/engine.py). The engine wraps this class in `ray.remote`.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .fitness import FitnessResult, Status, run_fitness
from .guards import clean_worktree, post_run_check, pre_run_check, reset_checkout


@dataclass(frozen=True)
class Job:
    job_id: str
    island: int
    parent: str                  # commit to check out
    source: str | None           # candidate train.py; None = run the parent unchanged (baseline)
    seed: int


@dataclass(frozen=True)
class IslandSettings:
    budget_s: float
    grace_s: float
    pinned_prepare_sha256: str
    log_dir: str
    pid_dir: str
    num_threads: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    max_memory_mb: int | None = None        # per-process memory limit of a fitness run (CPU only)
    evaluator: str | None = "auto"          # prepare.py's function whose result is the score


@dataclass(frozen=True)
class Measurement:
    job: Job
    result: FitnessResult
    started: float
    finished: float


class Island:
    def __init__(self, index: int, checkout: str, task_dir: str, settings: IslandSettings):
        self.index = index
        self.checkout = Path(checkout)     # the worktree root
        self.task_dir = Path(task_dir)     # where train.py lives inside it
        self.settings = settings

    def evaluate(self, job: Job) -> Measurement:
        started = time.time()
        s = self.settings
        log_path = Path(s.log_dir) / f"{job.job_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        reset_checkout(self.checkout, job.parent)
        if job.source is not None:
            (self.task_dir / "train.py").write_text(job.source)
        reason = pre_run_check(self.task_dir, s.pinned_prepare_sha256)
        if reason:
            log_path.write_text(f"rejected before running: {reason}\n")
            result = FitnessResult.rejected(reason, log_path)
        else:
            result = run_fitness(self.task_dir, budget_s=s.budget_s, grace_s=s.grace_s, log_path=log_path,
                                 seed=job.seed, extra_env=s.extra_env, python=s.python,
                                 num_threads=s.num_threads, max_memory_mb=s.max_memory_mb, evaluator=s.evaluator,
                                 pidfile=Path(s.pid_dir) / f"island-{self.index}.pid")
            tampered = post_run_check(self.task_dir, s.pinned_prepare_sha256)
            if tampered:
                result = replace(result, status=Status.REJECTED, val_bpb=None, reason=tampered)
        clean_worktree(self.checkout)
        return Measurement(job=job, result=result, started=started, finished=time.time())

    def ping(self) -> int:
        return self.index
