"""The asynchronous island loop: Ray actors measure, the driver proposes, records and selects.

Each island starts its next experiment as soon as its last one is recorded; the only barrier is
generation 0, where every island measures the unmodified baseline (their spread is the noise
floor sigma) before any child is judged against it.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import fmean

import git
import ray

from island.actor import Island, IslandSettings, Job, Measurement, NodeSetupError, run_prepare
from island.fitness import FitnessResult, Status
from island.guards import reset_checkout
from island.fitness import kill_stale
from operators.candidate import NoCandidate

from . import disk
from .config import Checkouts, ConfigError, OnMaxCost, OnNodeLoss
from .disk import DiskFull
from .journal import Journal
from .lab import Trailers
from .llm_choice import LLMChoice
from .proposer import Proposal, Proposer, Request, is_llm, source_sha256
from .records import DISCARD, Experiment, NoiseFloor, OperatorFailure
from .selection import (BaselineRun, baseline_plan, decide, decide_runs, noise_floor, plan_migration,
                        plan_reset, rerun_reason)
from .state import RunState
from .view import LiveView
from .workspace import PACKAGED_TASK, Workspace

MAX_ACTOR_RETRIES = 2
ACTOR_START_TIMEOUT_S = 300
RERUN_SEED_STRIDE = 10_000   # confirmation run i of a candidate uses its first seed + i * stride
PROJECT_PROGRAM = Path(__file__).resolve().parents[1] / "program.md"


@dataclass
class InFlight:
    job: Job                       # the run in progress
    proposal: Proposal | None      # None for a baseline run
    attempts: int = 1
    earlier: list[Measurement] = field(default_factory=list)   # finished runs of this candidate
    rerun_reason: str = ""


class Engine:
    def __init__(self, cfg, run_dir: Path, islands: int, llm: LLMChoice | None = None):
        self.cfg = cfg
        self.llm = llm
        self.run_dir = run_dir
        self.n = islands
        self.rng = random.Random(cfg.seed)
        random.seed(cfg.seed)  # DEAP's selection draws from the random module
        self.stopping = False
        self._job_counter = 0

    # ---- set-up ---------------------------------------------------------------------------------
    def _open(self) -> None:
        if Workspace.exists(self.run_dir):
            self.ws = Workspace.open(self.run_dir, self.n)
        else:
            self.ws = Workspace.create(self.run_dir, self.cfg.task, self.n)
        self.lab = self.ws.lab
        self.journal = Journal(self.run_dir, self.n)
        records = self.journal.load()
        self.state = RunState.replay(self.n, self.cfg.selection.population_size, records)
        self.journal.rewrite_views(records)
        self._reconcile_refs()
        for pidfile in (self.run_dir / "pids").glob("*.pid"):
            kill_stale(pidfile)
        self.task_dirs = self.ws.ensure_worktrees()
        for k in range(self.n):
            reset_checkout(self.ws.worktree(k), self.ws.manifest.base_commit)
        llm = self.llm
        if llm:
            print(f"[evolve] llm: {llm.model}{' at ' + llm.api_base if llm.api_base else ''} ({llm.why})", flush=True)
        else:
            print("[evolve] llm: none (no provider key in the environment, no llm.api_base, or llm=none): "
                  "offline operators only", flush=True)
        self.proposer = Proposer(self.lab, self.cfg, llm, self.rng, self.run_dir, self._program())
        self.seen = {e.source_sha256 for e in self.state.experiments}
        self.base_sha256 = source_sha256(self.lab.read(self.ws.manifest.base_commit, "train.py"))
        self.seen.add(self.base_sha256)

    def _program(self) -> str:
        """The research brief: the task's own program.md, else the project's."""
        try:
            return self.lab.read(self.ws.manifest.base_commit, "program.md")
        except git.GitCommandError:  # the task has none
            return PROJECT_PROGRAM.read_text() if PROJECT_PROGRAM.exists() else ""

    def _reconcile_refs(self) -> None:
        """Make git agree with the journal: one ref per recorded experiment, branches at champions."""
        refs = self.lab.experiment_refs()
        for exp in self.state.experiments:
            if refs.get(exp.seq) != exp.commit:
                self.lab.keep_reachable(exp.seq, exp.commit)
        for seq in set(refs) - {e.seq for e in self.state.experiments}:
            self.lab.delete_experiment_ref(seq)
        self._branch_heads: dict[int, str | None] = {k: self.lab.branch_head(k) for k in range(self.n)}
        self._sync_branches()

    def _sync_branches(self) -> None:
        for island in self.state.islands:
            champion = island.champion()
            commit = champion.commit if champion else self.ws.manifest.base_commit
            if self._branch_heads.get(island.index) != commit:
                self.lab.set_branch(island.index, commit)
                self._branch_heads[island.index] = commit

    def _env(self) -> dict[str, str]:
        env = {}
        if self.cfg.task.cache_dir:
            env["EVOLVE_CACHE_DIR"] = str(Path(self.cfg.task.cache_dir).expanduser().resolve())
        return env

    def _prepare_task_data(self) -> None:
        """Builds the packaged task's data cache once, before islands start (custom tasks do their own)."""
        if Path(self.ws.manifest.task_dir) != PACKAGED_TASK:
            return
        print("[evolve] preparing task data (built once, then cached)", flush=True)
        error = run_prepare(self.task_dirs[0], sys.executable, self._env())
        if error:
            raise RuntimeError(error)

    def _start_actors(self) -> None:
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # "local" = always a private cluster: never attach to one that `ray start` (or another
            # run) left on this node, which address=None would do.
            kwargs = dict(address=self.cfg.ray.address or "local", include_dashboard=False, log_to_driver=False,
                          configure_logging=True, logging_level="warning")
            if self.cfg.ray.address is None:
                kwargs["object_store_memory"] = self.cfg.ray.object_store_mb * 1024 * 1024
            ray.init(**kwargs)
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
        if gpus:
            need = self.n * self.cfg.ray.gpus_per_island
            if need > gpus:
                raise ConfigError(f"islands={self.n} x ray.gpus_per_island={self.cfg.ray.gpus_per_island} needs "
                                  f"{need:g} GPUs; the cluster has {gpus:g}: lower islands, or set "
                                  "ray.gpus_per_island to a fraction to share GPUs")
            options = dict(num_gpus=self.cfg.ray.gpus_per_island, num_cpus=0)
        else:
            # A fraction of a CPU each, so the islands never hold every CPU slot (Ray would then
            # block any other task silently); the training threads are set by num_threads.
            # On a cluster no island may ask for more than the biggest node has.
            biggest = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]), default=cpus)
            options = dict(num_cpus=min(cpus / (self.n + 1), biggest))
        settings = IslandSettings(
            budget_s=self.cfg.task.budget_s, grace_s=self.cfg.task.grace_s,
            pinned_prepare_sha256=self.ws.manifest.prepare_sha256,
            log_dir=str(self.run_dir / "logs"), pid_dir=str(self.run_dir / "pids"),
            num_threads=max(1, int(os.cpu_count() or 1) // self.n), extra_env=self._env(),
            python=self.cfg.task.python or sys.executable, max_memory_mb=self.cfg.task.max_memory_mb,
            evaluator=self.cfg.task.evaluator, cache_dir=str(self.run_dir / "cache"),
            driver_node=ray.get_runtime_context().get_node_id(), node_dir=self.cfg.ray.node_dir,
            run_name=self.ws.manifest.run_name, checkouts=Checkouts(self.cfg.ray.checkouts).value,
            prepare_task=Path(self.ws.manifest.task_dir) == PACKAGED_TASK, sandbox=self.cfg.task.sandbox,
            network=self.cfg.task.network, sandbox_read_only=self.cfg.task.sandbox_read_only)
        self._island_options = options
        self._settings = settings
        self._shipped: dict[int, set[str]] = {}      # island -> commits its node-local clone holds
        self._clones: dict[int, bool | None] = {}    # island -> uses a clone (None: not known yet)
        self._nodes: dict[int, str | None] = {}      # island -> the Ray node it last ran on
        self.actors = [self._new_actor(k) for k in range(self.n)]
        # Where each island landed (waits for the actors to start, which the baselines need anyway).
        where = {a.where.remote(): k for k, a in enumerate(self.actors)}
        started, _ = ray.wait(list(where), num_returns=len(where), timeout=ACTOR_START_TIMEOUT_S)
        if not started:
            raise ConfigError(f"no island could start within {ACTOR_START_TIMEOUT_S} s, each asking for {options}; "
                              f"the cluster has {ray.cluster_resources()}: lower islands or add nodes")
        for ref in started:
            self._nodes[where[ref]], self._clones[where[ref]] = ray.get(ref)
        for k in sorted(set(where.values()) - {where[ref] for ref in started}):
            # e.g. a resumed run whose cluster lost a node for good: it goes on with the others
            ray.kill(self.actors[k])
            self._retire(k, None, f"it could not start within {ACTOR_START_TIMEOUT_S} s, asking for {options}")
        remote = [k for k in range(self.n) if self._clones[k]]
        if remote:
            print(f"[evolve] islands {remote} run on other nodes with node-local clones under "
                  f"{self.cfg.ray.node_dir}", flush=True)

    def _new_actor(self, k: int):
        self._shipped[k] = set()      # a new actor may land on a node without this island's clone
        self._clones[k] = None
        self._nodes[k] = None
        remote = ray.remote(Island).options(**self._island_options, name=None)
        return remote.remote(k, str(self.ws.worktree(k)), self.ws.manifest.prefix, self._settings)

    def _submit(self, k: int, flight: InFlight) -> None:
        """Starts flight.job on island k, with the git history its clone lacks when it has one."""
        job = flight.job
        if self._clones.get(k) is not False and job.parent not in self._shipped[k]:
            job = replace(job, bundle=self.lab.bundle(job.parent, self._shipped[k]))
            self._shipped[k].add(job.parent)
        self.inflight[self.actors[k].evaluate.remote(job)] = flight

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> RunState:
        self._check_disk()
        self._open()
        plan = baseline_plan(self.n, self.cfg.selection.baseline_runs, self.cfg.selection.noise_k, self.cfg.seed)
        done_seeds = self.state.baseline_seeds_done()
        self.baselines_left: dict[int, list[BaselineRun]] = {k: [] for k in range(self.n)}
        for b in plan:
            if b.seed not in done_seeds:
                self.baselines_left[b.island].append(b)
        self.baseline_total = len(plan)
        self._maybe_record_noise_floor()
        max_exp = self.cfg.run.max_experiments
        if len(self.state.experiments) >= max_exp:
            print(f"[evolve] {self.run_dir} already has {len(self.state.experiments)} experiments "
                  f"(run.max_experiments={max_exp}); nothing to do", flush=True)
            return self.state
        self.inflight: dict[ray.ObjectRef, InFlight] = {}
        self.retired: set[int] = set()     # islands gone for good (lost node, full node disk)
        self.prefetch: dict[int, tuple[Future, Request]] = {}   # island -> LLM proposal in progress
        self.planned: set[int] = set()     # islands whose next draw was offline (proposed when idle)
        self._prepare_task_data()
        self._start_actors()
        deadline = time.time() + self.cfg.run.hours * 3600 if self.cfg.run.hours > 0 else None
        view = LiveView(self.state, self.n, max_exp, self.run_dir, live=self.cfg.run.live and sys.stdout.isatty())
        old_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        interrupted, disk_full = False, None
        try:
            with view:
                while True:
                    if deadline and time.time() >= deadline:
                        self.stopping = True
                    self._check_disk()
                    self._dispatch(max_exp, view)
                    can_start = not self.stopping and len(self.state.experiments) + len(self.inflight) < max_exp
                    if not self.inflight:
                        if not (can_start and self.prefetch):
                            break
                        wait_futures([f for f, _ in self.prefetch.values()], timeout=0.5,
                                     return_when=FIRST_COMPLETED)
                        continue
                    ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=0.2 if self.prefetch else 0.5)
                    for ref in ready:
                        self._collect(ref, view)
                    view.refresh()
        except KeyboardInterrupt:
            interrupted = True
            print("\n[evolve] interrupted: stopping islands; unfinished experiments will re-run on resume",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - a full disk, wherever it shows, is a clean stop
            if not disk.is_disk_full(e):
                raise
            disk_full = e if isinstance(e, DiskFull) else DiskFull(
                disk.message(self.run_dir, self.cfg.run.min_free_mb, f"{type(e).__name__}: {e}"))
            interrupted = True
            print(f"\n[evolve] {disk_full}", flush=True)
        finally:
            signal.signal(signal.SIGTERM, old_sigterm)
            self._shutdown()
        view.print_summary(self.lab, interrupted=interrupted)
        if disk_full:
            raise disk_full
        return self.state

    def _check_disk(self, detail: str = "") -> None:
        """Raises DiskFull when the run dir has less than run.min_free_mb free (or `detail` says a
        write already failed for want of space)."""
        if detail or disk.free_mb(self.run_dir) < self.cfg.run.min_free_mb:
            raise DiskFull(disk.message(self.run_dir, self.cfg.run.min_free_mb, detail))

    def _busy(self) -> set[int]:
        return {f.job.island for f in self.inflight.values()}

    def _dispatch(self, max_exp: int, view: LiveView) -> None:
        busy = self._busy()
        for k in range(self.n):
            if self.stopping or len(self.state.experiments) + len(self.inflight) >= max_exp:
                return
            if k in busy or k in self.retired:
                continue
            flight = self._next_job(k)
            if flight is None:
                continue
            self._submit(k, flight)
            view.started(k, flight.proposal.candidate.description if flight.proposal else "baseline")
            more_to_start = not self.stopping and len(self.state.experiments) + len(self.inflight) < max_exp
            if flight.proposal is not None and self.cfg.llm.prefetch and more_to_start:
                self._plan_next(k)

    def _job_id(self, island: int) -> str:
        self._job_counter += 1
        return f"island-{island}/{time.strftime('%Y%m%d-%H%M%S')}-{self._job_counter:04d}"

    def _next_job(self, k: int) -> InFlight | None:
        if self.baselines_left[k]:
            b = self.baselines_left[k].pop(0)
            return InFlight(Job(self._job_id(k), k, self.ws.manifest.base_commit, None, b.seed), None)
        if self.state.sigma is None:
            return None  # generation 0 is not complete yet
        try:
            if k not in self.prefetch and k not in self.planned:
                self._plan_next(k)
            if k in self.prefetch:
                future, request = self.prefetch[k]
                if not future.done():
                    return None  # the island waits for its LLM proposal
                del self.prefetch[k]
                proposal = self._llm_outcome(k, future, request)
            else:
                self.planned.discard(k)
                proposal = self.proposer.propose_offline(self.state, k, self.seen)
        except NoCandidate as e:
            print(f"[evolve] island {k} cannot propose anything ({e}); it stops", flush=True)
            self.retired.add(k)
            return None
        parent = proposal.candidate.parents[0]
        self.seen.add(source_sha256(proposal.candidate.source))
        return InFlight(Job(self._job_id(k), k, parent, proposal.candidate.source, self.cfg.seed + k), proposal)

    def _plan_next(self, k: int) -> None:
        """Draws island k's next operator; an LLM proposal starts now, in the background, from the
        freshest records, so the model thinks while the island trains."""
        self._check_llm_budget()
        name = self.proposer.choose_operator()
        if not is_llm(name):
            self.planned.add(k)
            return
        try:
            request = self.proposer.prepare(self.state, k, name)
        except NoCandidate:
            return  # nothing to build on yet; the island proposes offline when it is idle
        self.prefetch[k] = (_in_background(request.run), request)

    def _llm_outcome(self, k: int, future: Future, request: Request) -> Proposal:
        """The LLM's candidate, or an offline one when the LLM produced nothing (recorded)."""
        try:
            proposal = future.result()
            if source_sha256(proposal.candidate.source) not in self.seen:
                return proposal
            reason, cost = "duplicate of an already measured train.py", asdict(proposal.candidate.cost)
        except NoCandidate as e:
            reason, cost = str(e), asdict(e.cost) if getattr(e, "cost", None) else {}
        except Exception as e:  # noqa: BLE001 - the run never dies from an operator
            reason, cost = f"{type(e).__name__}: {e}", {}
        self._append(OperatorFailure(island=k, operator=request.operator_name, reason=reason[:500],
                                     after_seq=self.state.next_seq - 1, cost=cost))
        self._check_llm_budget()
        return self.proposer.propose_offline(self.state, k, self.seen)

    def _check_llm_budget(self) -> None:
        cap = self.cfg.llm.max_cost_usd
        if not cap or not self.proposer.llm_enabled or self.state.llm_usd() < cap:
            return
        if OnMaxCost(self.cfg.llm.on_max_cost) == OnMaxCost.stop:
            print(f"[evolve] LLM spend ${self.state.llm_usd():.2f} reached llm.max_cost_usd={cap}: stopping",
                  flush=True)
            self.stopping = True
        else:
            print(f"[evolve] LLM spend ${self.state.llm_usd():.2f} reached llm.max_cost_usd={cap}: "
                  "offline operators from now on", flush=True)
        self.proposer.disable_llm()

    def _collect(self, ref: ray.ObjectRef, view: LiveView) -> None:
        flight = self.inflight.pop(ref)
        k = flight.job.island
        try:
            measurement: Measurement = self._arrived(k, ray.get(ref))
        except ray.exceptions.RayError as e:
            if disk.is_disk_full(e) and not self._clones.get(k):
                self._check_disk(f"island {k} could not write its files")
            # The actor died (killed, OOM-killed worker, lost node) or raised: the experiment is not a
            # row yet. Replace the actor (killing it first, so it cannot keep its GPU) and re-run;
            # after MAX_ACTOR_RETRIES the experiment is recorded as a crash so nothing is dropped.
            ray.kill(self.actors[k])
            node = (self._nodes.get(k) or "?")[:12]
            if self._node_lost(k):
                if OnNodeLoss(self.cfg.ray.on_node_loss) == OnNodeLoss.retire:
                    self._retire(k, flight, f"it lost its node {node} (ray.on_node_loss=retire)")
                    return
                if not self._room_for_an_island():
                    self._retire(k, flight, f"it lost its node {node} and the other nodes have no room for it")
                    return
            elif self._clones.get(k) and disk.is_disk_full(e):
                self._retire(k, flight, f"the disk of its node {node} is full (ray.node_dir={self.cfg.ray.node_dir})")
                return
            elif isinstance(getattr(e, "cause", None), NodeSetupError):
                self._retire(k, flight, str(e.cause))
                return
            print(f"[evolve] island {k} failed ({type(e).__name__}); restarting it", flush=True)
            self.actors[k] = self._new_actor(k)
            if flight.attempts <= MAX_ACTOR_RETRIES and not self.stopping:
                flight.attempts += 1
                self._submit(k, flight)
                return
            if self.stopping:
                return
            now = time.time()
            reason = f"island failed {flight.attempts} times: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            measurement = Measurement(job=flight.job, started=now, finished=now, result=FitnessResult(
                status=Status.CRASH, val_bpb=None, metrics={}, wall_s=0.0, reason=reason, log_path="",
                log_tail="", returncode=None))
        if measurement.result.status is not Status.OK:
            self._check_disk()   # a run that failed on a full disk is not the candidate's failure
        if self._run_again(flight, measurement, view):
            return
        try:
            self._record(flight, measurement)
        except (OSError, git.GitCommandError) as e:
            if disk.is_disk_full(e):
                self._check_disk(f"recording experiment {self.state.next_seq} failed")
            raise
        view.finished(k, self.state.experiments[-1])

    def _arrived(self, k: int, m: Measurement) -> Measurement:
        """Notes where island k ran; a log that lives on another node is written into the run dir."""
        self._nodes[k] = m.node
        self._clones[k] = m.log_text is not None
        if m.log_text is None:
            return m
        path = self.run_dir / "logs" / f"{m.job.job_id}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(m.log_text)
        return replace(m, result=replace(m.result, log_path=str(path)), log_text=None)

    def _node_lost(self, k: int) -> bool:
        node = self._nodes.get(k)
        return node is not None and not any(n["NodeID"] == node and n["Alive"] for n in ray.nodes())

    def _room_for_an_island(self) -> bool:
        free = ray.available_resources()
        names = {"num_gpus": "GPU", "num_cpus": "CPU"}
        return all(free.get(names[option], 0.0) >= amount for option, amount in self._island_options.items() if amount)

    def _retire(self, k: int, flight: InFlight | None, why: str) -> None:
        """Island k is gone (with its node); the run goes on without it. Its experiment in flight is
        dropped (never recorded); baselines it still owed move to the other islands; an LLM proposal
        made for it is recorded as an operator failure, so its cost still counts."""
        self.retired.add(k)
        alive = [i for i in range(self.n) if i not in self.retired]
        print(f"[evolve] island {k} is retired: {why}; {len(alive)} islands go on", flush=True)
        self.planned.discard(k)
        pending = self.prefetch.pop(k, None)
        if pending is not None:
            future, request = pending
            cost = {}
            if future.done() and future.exception() is None:
                cost = asdict(future.result().candidate.cost)
            self._append(OperatorFailure(island=k, operator=request.operator_name, reason=f"island retired: {why}",
                                         after_seq=self.state.next_seq - 1, cost=cost))
        owed, self.baselines_left[k] = self.baselines_left[k], []
        if flight is not None and flight.proposal is None:
            owed.append(BaselineRun(island=k, seed=flight.job.seed))
        for i, b in enumerate(owed if alive else []):
            self.baselines_left[alive[i % len(alive)]].append(b)

    def _run_again(self, flight: InFlight, m: Measurement, view: LiveView) -> bool:
        """Sends a would-be keep back to its island with a new seed when its gain is too close to the
        noise floor, or implausibly large, to trust one run (see selection.rerun_reason)."""
        if flight.proposal is None:
            return False
        runs = flight.earlier + [m]
        if any(r.result.status is not Status.OK for r in runs):
            return False
        sel = self.cfg.selection
        why = rerun_reason([r.result.val_bpb for r in runs], flight.proposal.parent_bpb, self.state.sigma or 0.0,
                           sel.noise_k, sel.confirm_sigmas, sel.implausible_sigmas, 1 + sel.confirm_runs)
        if not why:
            return False
        k = flight.job.island
        flight.earlier.append(m)
        flight.rerun_reason = why
        flight.job = replace(flight.job, job_id=self._job_id(k),
                             seed=runs[0].job.seed + RERUN_SEED_STRIDE * len(flight.earlier))
        flight.attempts = 1
        self._submit(k, flight)
        view.started(k, f"re-run (seed {flight.job.seed}): {flight.proposal.candidate.description}")
        return True

    # ---- recording ------------------------------------------------------------------------------
    def _record(self, flight: InFlight, last: Measurement) -> None:
        runs = flight.earlier + [last]
        first = runs[0]
        job, proposal, result = first.job, flight.proposal, first.result
        outcome = result.status.value
        parent_bpb = proposal.parent_bpb if proposal else None
        sigma, sel = self.state.sigma or 0.0, self.cfg.selection
        values = [r.result.val_bpb for r in runs if r.result.status is Status.OK]
        failed = next((r for r in runs[1:] if r.result.status is not Status.OK), None)
        if len(runs) == 1:
            val_bpb, reason = result.val_bpb, result.reason
            status = decide(outcome, val_bpb, parent_bpb, sigma, sel.noise_k)
        elif failed is not None:
            val_bpb, status = fmean(values), DISCARD
            reason = f"re-run with seed {failed.job.seed}: {failed.result.status.value}: {failed.result.reason}"
        else:
            val_bpb = fmean(values)
            status, reason = decide_runs(values, parent_bpb, sigma, sel.noise_k, sel.implausible_sigmas)
        seq = self.state.next_seq
        if proposal is None:
            commit, parents, operator = job.parent, (), "baseline"
            description, cost = f"baseline (seed {job.seed})", {}
            sha = self.base_sha256
        else:
            cand = proposal.candidate
            parents, operator, description, cost = cand.parents, cand.operator, cand.description, asdict(cand.cost)
            trailers = Trailers(island=job.island, seq=seq, operator=operator, parents=parents,
                                val_bpb=val_bpb, status=status, outcome=outcome)
            commit = self.lab.commit_candidate(parents, cand.source, description, trailers)
            sha = source_sha256(cand.source)
        exp = Experiment(
            seq=seq, island=job.island, island_seq=self.state.islands[job.island].experiments, commit=commit,
            parents=parents, operator=operator, description=description, outcome=outcome, status=status,
            val_bpb=val_bpb, parent_bpb=parent_bpb, seed=job.seed, wall_s=sum(r.result.wall_s for r in runs),
            reason=reason, log=self._relative_log(result), started=first.started, finished=last.finished,
            metrics=dict(result.metrics), cost=cost, source_sha256=sha,
            reruns=tuple((r.job.seed, r.result.val_bpb, r.result.status.value, self._relative_log(r.result))
                         for r in runs[1:]),
            rerun_reason=flight.rerun_reason, first_bpb=result.val_bpb if len(runs) > 1 else None)
        self._append(exp)
        self.lab.keep_reachable(seq, commit)
        self._maybe_record_noise_floor()
        retired = frozenset(self.retired)
        migration = plan_migration(self.state, job.island, self.cfg.migration.interval, self.cfg.migration.size,
                                   self.cfg.migration.topology, self.rng, retired)
        if migration:
            self._append(migration)
        reset = plan_reset(self.state, self.cfg.reset.interval, self.cfg.reset.fraction, self.rng, retired)
        if reset:
            self._append(reset)
        self._sync_branches()

    def _relative_log(self, result: FitnessResult) -> str:
        return os.path.relpath(result.log_path, self.run_dir) if result.log_path else ""

    def _append(self, record) -> None:
        self.journal.append(record)
        self.state.apply(record)

    def _maybe_record_noise_floor(self) -> None:
        if self.state.sigma is not None:
            return
        baselines = [e for e in self.state.experiments if e.is_baseline]
        if len(baselines) < self.baseline_total:
            return
        values = [e.val_bpb for e in baselines if e.val_bpb is not None]
        self._append(NoiseFloor(sigma=noise_floor(values), baselines=tuple(values)))
        if not values:
            first = baselines[0]
            print(f"[evolve] the unmodified train.py failed on every island ({first.outcome}: {first.reason}); "
                  f"see {self.run_dir / first.log}. Fix the task and start a new run.dir.", flush=True)
            self.stopping = True

    def _shutdown(self) -> None:
        actors = getattr(self, "actors", [])
        for actor in actors:
            ray.kill(actor)  # ends any fitness run in flight: its supervisor dies with the actor
        for actor in actors:  # wait until each is gone before touching its worktree
            try:
                ray.get(actor.ping.remote(), timeout=30)
            except (ray.exceptions.RayError, TimeoutError):
                pass
        for k in range(self.n):
            try:
                reset_checkout(self.ws.worktree(k), self._branch_heads.get(k) or self.ws.manifest.base_commit)
            except (OSError, git.GitCommandError) as e:  # e.g. a full disk: the next start resets it again
                print(f"[evolve] could not reset island {k}'s worktree ({str(e).splitlines()[0][:200]}); "
                      "it is reset on the next start", flush=True)
        if getattr(self, "_own_ray", False) and ray.is_initialized():
            ray.shutdown()


def _in_background(fn) -> Future:
    """Runs fn on a daemon thread (an LLM call must never keep a stopping driver alive)."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(fn())
        except BaseException as e:  # noqa: BLE001 - handed to whoever reads the future
            future.set_exception(e)

    threading.Thread(target=target, daemon=True).start()
    return future


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
