"""The Island: one checkout (and, under Ray, one GPU) that measures candidates one at a time.

It checks out the parent commit, writes the candidate's train.py, guards it, runs the fitness
subprocess, guards again and leaves the checkout pristine. It never commits or decides: the
driver records the result (see evolve/engine.py). The engine wraps this class in `ray.remote`.

On the driver's node the checkout is a worktree of the lab in the run directory. On any other
node (or everywhere with `checkouts="clone"`) it is a node-local clone under `node_dir` that
receives commits as git bundles, and the island returns its log's text instead of writing into
the run directory: nothing assumes a shared file system.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import budget
from .clone import NodeClone
from .curve import EarlyStop
from .environment import SEED_ENV, scrubbed_env
from .fitness import FitnessResult, Status, kill_stale, run_fitness
from .guards import clean_worktree, post_run_check, pre_run_check, reset_checkout
from .summary import log_tail, read_log
from .sandbox import SandboxUnavailable, normalize_mode, notice, resolve

MAX_LOG_BYTES = 8 * 2**20   # of a remote island's log sent back to the driver (the tail is kept)
PREPARE_TIMEOUT_S = 3600    # building (or downloading) a task's data on a node


class NodeSetupError(RuntimeError):
    """The island's node cannot run the task (its data could not be prepared there): the node's
    fault, not any candidate's."""


@dataclass(frozen=True)
class Job:
    job_id: str
    island: int
    parent: str                  # commit to check out
    source: str | None           # candidate train.py; None = run the parent unchanged (baseline)
    seed: int
    bundle: bytes | None = None  # git history a node-local clone lacks (set by the engine per island)
    # Most wall seconds the run may spend outside its counted training (island/budget.py's
    # uncounted_limit of the island's baseline runs); None: not checked (baselines, or no baseline yet).
    max_uncounted_s: float | None = None
    # The early-stop rule of a candidate's first run (island/curve.py); None: it runs to the end.
    early_stop: EarlyStop | None = None
    budget_s: float | None = None   # a promotion's longer budget; None: the island's own (task.budget_s)


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
    cache_dir: str | None = None            # per-island compile caches live in <cache_dir>/island-<k>
    # Where islands keep their node-local clones when their node is not the driver's.
    driver_node: str | None = None          # the driver's Ray node id (None: not under Ray)
    node_dir: str = "/tmp/evolve-nodes"
    run_name: str = "run"
    checkouts: str = "auto"                 # auto: worktree on the driver's node, clone elsewhere; clone
    prepare_task: bool = False              # run `python prepare.py` once in a node-local clone
    seed_env: str = SEED_ENV                # the variable that carries a run's seed to train.py
    # Budget enforcement (island/budget.py): a candidate that rebinds prepare.py's budget, or a run
    # whose training_seconds exceed budget_s x (1 + budget_tolerance) + budget_tolerance_s, or whose
    # uncounted time exceeds Job.max_uncounted_s, is over-budget. False turns all three off.
    enforce_budget: bool = True
    budget_tolerance: float = budget.DEFAULT_TOLERANCE
    budget_tolerance_s: float = budget.DEFAULT_TOLERANCE_S
    # The fitness-run sandbox (island/sandbox.py), resolved on the island's own node: auto (bwrap when
    # it works there), bwrap (the island retires when it cannot), none.
    sandbox: str = "auto"
    network: bool = False                   # a sandboxed run keeps the host's network
    sandbox_read_only: tuple[str, ...] = () # more paths a sandboxed run may read (a custom task's data)
    curve_pattern: str | None = None        # reads the step log's curve points (None: the default)

    def __post_init__(self) -> None:
        """Plain values whatever the config handed over (its enum, its list), so nothing else travels."""
        object.__setattr__(self, "sandbox", normalize_mode(self.sandbox))
        object.__setattr__(self, "network", bool(self.network))
        object.__setattr__(self, "sandbox_read_only", tuple(str(p) for p in self.sandbox_read_only))


@dataclass(frozen=True)
class Measurement:
    job: Job
    result: FitnessResult
    started: float
    finished: float
    node: str | None = None          # Ray node id of the island that measured it
    log_text: str | None = None      # the log itself, from an island whose log is not in the run dir


def run_prepare(task_dir: Path, python: str, extra_env: dict[str, str], timeout: float | None = None) -> str | None:
    """Runs the task's `python prepare.py` (which builds and caches its data) in a scrubbed
    environment; None when it succeeded, else what went wrong with the end of its output."""
    try:
        done = subprocess.run([python, "prepare.py"], cwd=task_dir, capture_output=True, text=True,
                              env=scrubbed_env(extra=extra_env), timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"prepare.py took over {timeout:g} s"
    if done.returncode != 0:
        return f"prepare.py failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
    return None


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - outside Ray there is no node
        return None


class Island:
    def __init__(self, index: int, worktree: str, task_subdir: str, settings: IslandSettings):
        self.index = index
        self.settings = settings
        self.node = _node_id()
        remote = settings.checkouts == "clone" or (
            settings.driver_node is not None and self.node not in (None, settings.driver_node))
        if remote:
            home = (Path(settings.node_dir).expanduser() / settings.run_name / f"node-{(self.node or 'local')[:12]}"
                    / f"island-{index}")
            self.clone: NodeClone | None = NodeClone(home / "repo")
            self.checkout = self.clone.root
            self.log_dir, self.pid_dir, caches = home / "logs", home / "pids", home / "cache"
        else:
            self.clone = None
            self.checkout = Path(worktree)
            self.log_dir, self.pid_dir = Path(settings.log_dir), Path(settings.pid_dir)
            caches = Path(settings.cache_dir or self.log_dir.parent / "cache") / f"island-{index}"
        # A restarted actor (or one of a resumed run) first ends what its predecessor's last fitness
        # run left behind, so two trainings never share a GPU.
        kill_stale(self.pid_dir / f"island-{index}.pid")
        self.task_dir = self.checkout / task_subdir      # where train.py lives inside the checkout
        # Compile caches kept across experiments (outside the checkout, which is cleaned after each
        # run), so an unchanged or slightly changed model starts warm.
        self.env = {**settings.extra_env, "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
                    "TRITON_CACHE_DIR": str(caches / "triton")}
        self._prepared = False
        self.sandboxed: bool | None = None   # decided on this node before the first run

    def where(self) -> tuple[str | None, bool]:
        """(Ray node id, whether the checkout is a node-local clone)."""
        return self.node, self.clone is not None

    def _receive(self, job: Job) -> None:
        if job.bundle:
            self.clone.receive(job.bundle, job.parent)
        self.clone.ensure_head(job.parent)

    def _prepare_node(self) -> None:
        """Builds the task's data on this node once (prepare.py caches it, with a lock), from the
        pinned prepare.py of a pristine checkout."""
        reason = pre_run_check(self.task_dir, self.settings.pinned_prepare_sha256)
        if reason:
            raise NodeSetupError(f"prepare.py cannot run on node {self.node}: {reason}")
        error = run_prepare(self.task_dir, self.settings.python, self.env, PREPARE_TIMEOUT_S)
        if error:
            raise NodeSetupError(f"on node {self.node}: {error}")
        clean_worktree(self.checkout)   # whatever it wrote next to itself is not the candidate's change
        self._prepared = True

    def _resolve_sandbox(self) -> bool:
        """Whether this node's fitness runs are sandboxed; NodeSetupError when task.sandbox=bwrap
        cannot run here. The driver announced its own node's state; other nodes say theirs."""
        try:
            sandboxed = resolve(self.settings.sandbox)
        except SandboxUnavailable as e:
            raise NodeSetupError(f"on node {self.node}: {e}") from None
        note = notice(self.settings.sandbox) if self.clone is not None else None
        if note:
            print(f"[evolve] island {self.index} on node {self.node}: {note}", flush=True)
        return sandboxed

    def evaluate(self, job: Job) -> Measurement:
        started = time.time()
        s = self.settings
        if self.sandboxed is None:
            self.sandboxed = self._resolve_sandbox()
        if self.clone is not None:
            self._receive(job)
        log_path = self.log_dir / f"{job.job_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        reset_checkout(self.checkout, job.parent)
        if self.clone is not None and self.settings.prepare_task and not self._prepared:
            self._prepare_node()
        if job.source is not None:
            (self.task_dir / "train.py").write_text(job.source)
        reason = pre_run_check(self.task_dir, s.pinned_prepare_sha256)
        rebinding = None if reason or not s.enforce_budget else budget.budget_rebinding(
            (self.task_dir / "train.py").read_text(errors="replace"))
        if reason:
            log_path.write_text(f"rejected before running: {reason}\n")
            result = FitnessResult.rejected(reason, log_path)
        elif rebinding:
            log_path.write_text(f"over-budget, not run: {rebinding}\n")
            result = FitnessResult.rejected(rebinding, log_path, status=Status.OVER_BUDGET)
        else:
            result = run_fitness(self.task_dir, budget_s=job.budget_s or s.budget_s, grace_s=s.grace_s, log_path=log_path,
                                 seed=job.seed, extra_env=self.env, python=s.python,
                                 num_threads=s.num_threads, max_memory_mb=s.max_memory_mb, evaluator=s.evaluator,
                                 pidfile=self.pid_dir / f"island-{self.index}.pid", seed_env=s.seed_env,
                                 sandbox="bwrap" if self.sandboxed else "none", network=s.network,
                                 read_only=s.sandbox_read_only, writable=(self.checkout,),
                                 curve_pattern=s.curve_pattern, early_stop=job.early_stop)
            tampered = post_run_check(self.task_dir, s.pinned_prepare_sha256)
            if tampered:
                result = replace(result, status=Status.REJECTED, val_bpb=None, reason=tampered)
            elif result.ok and s.enforce_budget:
                result = self._judge_budget(job, result)
        clean_worktree(self.checkout)
        log_text = None
        if self.clone is not None:
            with open(log_path, "rb") as f:
                f.seek(max(0, log_path.stat().st_size - MAX_LOG_BYTES))
                log_text = f.read().decode(errors="replace")
        return Measurement(job=replace(job, bundle=None), result=result, started=started, finished=time.time(),
                           node=self.node, log_text=log_text)

    def _judge_budget(self, job: Job, result: FitnessResult) -> FitnessResult:
        """``result`` as over-budget when it trained longer than the budget allows or spent more
        uncounted time than job.max_uncounted_s; unchanged otherwise."""
        s = self.settings
        reason = budget.over_budget(result.metrics, result.wall_s, job.budget_s or s.budget_s, s.budget_tolerance,
                                    s.budget_tolerance_s, job.max_uncounted_s)
        if reason is None:
            return result
        if job.source is None:
            reason += (" -- this is the unmodified train.py: set task.budget_s to the budget its prepare.py "
                       "uses, or task.enforce_budget=false")
        return replace(result, status=Status.OVER_BUDGET, val_bpb=None, reason=reason,
                       log_tail=log_tail(read_log(result.log_path)))

    def ping(self) -> int:
        return self.index
