"""The islands as Ray actors: start and stop, placement, jobs with git bundles, remote logs, restarts,
node loss and retirement."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import git
import ray

from island.actor import Island, IslandSettings, Measurement, NodeSetupError
from island.fitness import FitnessResult, Status
from island.guards import reset_checkout

from . import disk
from .config import Checkouts, ConfigError, OnNodeLoss
from .trial import Trial
from .view import say
from .workspace import PACKAGED_TASK, Workspace

MAX_ACTOR_RETRIES = 2
ACTOR_START_TIMEOUT_S = 300


class NoIslandStarted(RuntimeError):
    """Ray could place none of the islands in time (a cluster without room): the run cannot go on."""


@dataclass(frozen=True)
class Arrival:
    """What came back for a trial: a measurement, an island gone for good, or nothing to record
    (its island died and the run re-submitted it, or the run is stopping)."""

    trial: Trial
    measurement: Measurement | None = None
    retired: str = ""     # why the island is gone for good


class Fleet:
    """One Ray actor per island; the only part of the engine that talks to Ray."""

    def __init__(self, cfg, workspace: Workspace, run_dir: Path, task_env: dict[str, str]):
        self.cfg = cfg
        self.ws = workspace
        self.run_dir = run_dir
        self.n = workspace.manifest.islands
        self.task_env = task_env
        self.own_ray = False
        self.island_options: dict[str, float] = {}
        self.settings: IslandSettings | None = None
        self.actors: list = []
        self.shipped: dict[int, set[str]] = {}      # island -> commits its node-local clone holds
        self.clones: dict[int, bool | None] = {}    # island -> uses a clone (None: not known yet)
        self.nodes: dict[int, str | None] = {}      # island -> the Ray node it last ran on
        self.in_flight: dict[ray.ObjectRef, Trial] = {}

    # ---- start ----------------------------------------------------------------------------------
    def start(self) -> dict[int, str]:
        """Starts Ray (unless joining a cluster) and one actor per island; returns the islands that
        could not start in time, with why (the run goes on without them)."""
        self._init_ray()
        self.island_options = self._placement()
        m = self.ws.manifest
        self.settings = IslandSettings(
            budget_s=self.cfg.task.budget_s, grace_s=self.cfg.task.grace_s, pinned_prepare_sha256=m.prepare_sha256,
            log_dir=str(self.run_dir / "logs"), pid_dir=str(self.run_dir / "pids"),
            num_threads=max(1, int(os.cpu_count() or 1) // self.n), extra_env=self.task_env,
            python=self.cfg.task.python or sys.executable, max_memory_mb=self.cfg.task.max_memory_mb,
            evaluator=self.cfg.task.evaluator, cache_dir=str(self.run_dir / "cache"),
            driver_node=ray.get_runtime_context().get_node_id(), node_dir=self.cfg.ray.node_dir,
            run_name=m.run_name, checkouts=Checkouts(self.cfg.ray.checkouts).value,
            prepare_task=Path(m.task_dir) == PACKAGED_TASK, seed_env=self.cfg.task.seed_env,
            enforce_budget=self.cfg.task.enforce_budget, budget_tolerance=self.cfg.task.budget_tolerance,
            budget_tolerance_s=self.cfg.task.budget_tolerance_s, sandbox=self.cfg.task.sandbox,
            network=self.cfg.task.network, sandbox_read_only=self.cfg.task.sandbox_read_only,
            curve_pattern=self.cfg.task.curve_pattern)
        self.actors = [self._new_actor(k) for k in range(self.n)]
        # Where each island landed (waits for the actors to start, which the baselines need anyway).
        where = {a.where.remote(): k for k, a in enumerate(self.actors)}
        started, _ = ray.wait(list(where), num_returns=len(where), timeout=ACTOR_START_TIMEOUT_S)
        if not started:
            raise NoIslandStarted(f"no island could start within {ACTOR_START_TIMEOUT_S} s, each asking for "
                              f"{self.island_options}; the cluster has {ray.cluster_resources()}: lower islands "
                              "or add nodes")
        for ref in started:
            self.nodes[where[ref]], self.clones[where[ref]] = ray.get(ref)
        not_started = {}
        for k in sorted(set(where.values()) - {where[ref] for ref in started}):
            # e.g. a resumed run whose cluster lost a node for good: it goes on with the others
            ray.kill(self.actors[k])
            not_started[k] = f"it could not start within {ACTOR_START_TIMEOUT_S} s, asking for {self.island_options}"
        remote = [k for k in range(self.n) if self.clones.get(k)]
        if remote:
            say(f"islands {remote} run on other nodes with node-local clones under {self.cfg.ray.node_dir}")
        return not_started

    def _init_ray(self) -> None:
        self.own_ray = not ray.is_initialized()
        if not self.own_ray:
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # "local" = always a private cluster: never attach to one that `ray start` (or another run)
        # left on this node, which address=None would do.
        kwargs = dict(address=self.cfg.ray.address or "local", include_dashboard=False, log_to_driver=False,
                      configure_logging=True, logging_level="warning")
        if self.cfg.ray.address is None:
            kwargs["object_store_memory"] = self.cfg.ray.object_store_mb * 1024 * 1024
        # ray.init installs its own SIGTERM handler (sys.exit(15), no graceful stop; and a SIGTERM
        # that lands inside ray.init can be swallowed by it): keep ours, during ray.init and after.
        ours = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        ray_utils = getattr(getattr(ray, "_private", None), "utils", None)
        rays = getattr(ray_utils, "set_sigterm_handler", None)
        if ours is not None and rays is not None:
            ray_utils.set_sigterm_handler = lambda handler: None
        try:
            ray.init(**kwargs)
        finally:
            if rays is not None:
                ray_utils.set_sigterm_handler = rays
            if ours is not None:
                signal.signal(signal.SIGTERM, ours)

    def _placement(self) -> dict[str, float]:
        """What each island asks Ray for: a GPU share where there are GPUs, else a CPU fraction."""
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
        per_island = self.cfg.ray.gpus_per_island
        if gpus:
            if self.n * per_island > gpus:
                raise ConfigError(f"islands={self.n} x ray.gpus_per_island={per_island} needs "
                                  f"{self.n * per_island:g} GPUs; the cluster has {gpus:g}: lower islands, or set "
                                  "ray.gpus_per_island to a fraction to share GPUs")
            return dict(num_gpus=per_island, num_cpus=0)
        # A fraction of a CPU each, so the islands never hold every CPU slot (Ray would then block
        # any other task silently); the training threads are set by num_threads. On a cluster no
        # island may ask for more than the biggest node has.
        biggest = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]), default=cpus)
        return dict(num_cpus=min(cpus / (self.n + 1), biggest))

    def _new_actor(self, k: int):
        self.shipped[k] = set()      # a new actor may land on a node without this island's clone
        self.clones[k] = None
        self.nodes[k] = None
        remote = ray.remote(Island).options(**self.island_options, name=None)
        return remote.remote(k, str(self.ws.worktree(k)), self.ws.manifest.prefix, self.settings)

    # ---- jobs -----------------------------------------------------------------------------------
    def submit(self, trial: Trial) -> None:
        """Starts trial.job on its island, with the git history the island's clone lacks when it has one."""
        k, job = trial.island, trial.job
        if self.clones.get(k) is not False and job.parent not in self.shipped[k]:
            job = replace(job, bundle=self.ws.lab.bundle(job.parent, self.shipped[k]))
            self.shipped[k].add(job.parent)
        self.in_flight[self.actors[k].evaluate.remote(job)] = trial

    def busy(self) -> set[int]:
        return {t.island for t in self.in_flight.values()}

    def wait(self, timeout: float) -> list[ray.ObjectRef]:
        ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=timeout)
        return ready

    def collect(self, ref: ray.ObjectRef, stopping: bool) -> Arrival:
        trial = self.in_flight.pop(ref)
        k = trial.island
        try:
            return Arrival(trial, self._arrived(k, ray.get(ref)))
        except ray.exceptions.RayError as e:
            return self._failed(trial, e, stopping)

    def _arrived(self, k: int, m: Measurement) -> Measurement:
        """Notes where island k ran; a log that lives on another node is written into the run dir."""
        self.nodes[k] = m.node
        self.clones[k] = m.log_text is not None
        if m.log_text is None:
            return m
        path = self.run_dir / "logs" / f"{m.job.job_id}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(m.log_text)
        return replace(m, result=replace(m.result, log_path=str(path)), log_text=None)

    def _failed(self, trial: Trial, e: ray.exceptions.RayError, stopping: bool) -> Arrival:
        """The actor died (killed, OOM-killed worker, lost node) or raised: the experiment is not a
        row yet. The actor is replaced (killed first, so it cannot keep its GPU) and the run re-sent;
        after MAX_ACTOR_RETRIES it is recorded as a crash so nothing is dropped."""
        k = trial.island
        if disk.is_disk_full(e) and not self.clones.get(k):
            disk.ensure_free(self.run_dir, self.cfg.run.min_free_mb, f"island {k} could not write its files")
        ray.kill(self.actors[k])
        node = (self.nodes.get(k) or "?")[:12]
        if self._node_lost(k):
            if OnNodeLoss(self.cfg.ray.on_node_loss) == OnNodeLoss.retire:
                return Arrival(trial, retired=f"it lost its node {node} (ray.on_node_loss=retire)")
            if not self._room_for_an_island():
                return Arrival(trial, retired=f"it lost its node {node} and the other nodes have no room for it")
        elif self.clones.get(k) and disk.is_disk_full(e):
            return Arrival(trial, retired=f"the disk of its node {node} is full (ray.node_dir={self.cfg.ray.node_dir})")
        elif isinstance(getattr(e, "cause", None), NodeSetupError):
            return Arrival(trial, retired=str(e.cause))
        say(f"island {k} failed ({type(e).__name__}); restarting it")
        self.actors[k] = self._new_actor(k)
        if trial.attempts <= MAX_ACTOR_RETRIES and not stopping:
            trial.attempts += 1
            self.submit(trial)
            return Arrival(trial)
        if stopping:
            return Arrival(trial)
        now = time.time()
        reason = f"island failed {trial.attempts} times: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        return Arrival(trial, Measurement(job=trial.job, started=now, finished=now, result=FitnessResult(
            status=Status.CRASH, val_bpb=None, metrics={}, wall_s=0.0, reason=reason, log_path="",
            log_tail="", returncode=None)))

    def _node_lost(self, k: int) -> bool:
        node = self.nodes.get(k)
        return node is not None and not any(n["NodeID"] == node and n["Alive"] for n in ray.nodes())

    def _room_for_an_island(self) -> bool:
        free = ray.available_resources()
        names = {"num_gpus": "GPU", "num_cpus": "CPU"}
        return all(free.get(names[option], 0.0) >= amount for option, amount in self.island_options.items() if amount)

    # ---- stop -----------------------------------------------------------------------------------
    def shutdown(self, heads: dict[int, str]) -> None:
        """Ends every fitness run in flight, leaves each worktree at `heads[k]`, stops a private Ray."""
        for actor in self.actors:
            ray.kill(actor)  # ends any fitness run in flight: its supervisor dies with the actor
        for actor in self.actors:  # wait until each is gone before touching its worktree
            try:
                ray.get(actor.ping.remote(), timeout=30)
            except (ray.exceptions.RayError, TimeoutError):
                pass
        for k, commit in heads.items():
            try:
                reset_checkout(self.ws.worktree(k), commit)
            except (OSError, git.GitCommandError) as e:  # e.g. a full disk: the next start resets it again
                say(f"could not reset island {k}'s worktree ({str(e).splitlines()[0][:200]}); "
                    "it is reset on the next start")
        if self.own_ray and ray.is_initialized():
            ray.shutdown()
