"""Which island runs what next: owed baselines, the generation-0 barrier, limits, operator draws,
LLM proposals prepared while islands train, and the LLM spend cap."""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, replace
from typing import Callable

from island.actor import Job
from operators.candidate import NoCandidate, Peer

from .budget import max_uncounted_s
from .curves import CurveBook
from .promotion import PromotionTrial, due_promotion
from .remeasure import RemeasureTrial, due_remeasure
from .config import OnMaxCost
from .proposer import Proposal, Proposer, Request, is_llm
from .records import OperatorFailure, OperatorFallback, Record
from .epochs import baseline_cap
from .selection import BaselineRun, baseline_plan
from .state import RunState
from .stop import Stop, StopReason
from .transcripts import Transcripts
from .trial import RERUN_SEED_STRIDE, Trial, still_there
from .view import say


class Scheduler:
    """Decides; never runs anything itself (the fleet does) and writes only through `record`."""

    def __init__(self, cfg, state: RunState, proposer: Proposer, base_commit: str, base_sha256: str,
                 stop: Stop, record: Callable[[Record], None], curves: CurveBook | None = None):
        self.state = state
        self.proposer = proposer
        self.base_commit = base_commit
        self.stop = stop
        self.record = record
        self.n = state.n_islands
        self.seed = cfg.seed
        self.first_seed = cfg.selection.first_seed
        self.max_experiments = cfg.run.max_experiments
        self.prefetch_enabled = cfg.llm.prefetch
        self.max_cost_usd = cfg.llm.max_cost_usd
        self.on_max_cost = OnMaxCost(cfg.llm.on_max_cost)
        self.enforce_budget = cfg.task.enforce_budget
        self.uncounted_margin = cfg.task.uncounted_margin
        self.uncounted_margin_s = cfg.task.uncounted_margin_s
        self.curves = curves
        self.early_stop = cfg.early_stop if cfg.early_stop.enabled and cfg.selection.name != "ratchet" else None
        self.curve_pattern = cfg.task.curve_pattern
        self.promote_every, self.promote_factor = cfg.promote.every, cfg.promote.factor
        self.budget_s = cfg.task.budget_s
        self.promoting: PromotionTrial | None = None   # the promotion in flight (one at a time)
        self.champion_runs = cfg.selection.champion_runs
        self.remeasuring: RemeasureTrial | None = None   # the champion's re-measurement in flight (one at a time)
        plan = baseline_plan(self.n, cfg.selection.baseline_runs, cfg.selection.noise_k, cfg.seed,
                             cfg.selection.min_baselines)
        done = state.baseline_seeds_done()
        self.baseline_total = len(plan)
        self.baselines_left: dict[int, list[BaselineRun]] = {k: [] for k in range(self.n)}
        for b in plan:
            if b.seed not in done:
                self.baselines_left[b.island].append(b)
        self.baselines_started: set[int] = set()      # seeds of baseline runs started by this process
        # Paired re-runs (and first runs, selection.first_seed=fresh) take fresh seeds, run-wide and
        # across resumes: multiples of the stride above every seed in the journal.
        used = [seed for e in state.experiments for seed, *_ in ((e.seed,), *e.reruns, *e.parent_reruns)]
        used += [r.seed for r in (*state.promotions, *state.remeasures)]
        self._fresh_seeds = max(((s - self.seed) // RERUN_SEED_STRIDE for s in used), default=0)
        self.seen = {e.source_sha256 for e in state.experiments} | {base_sha256}   # train.py files measured
        self.prefetch: dict[int, tuple[Future, Request]] = {}   # island -> LLM proposal in progress
        self.planned: set[int] = set()     # islands whose next draw was offline (proposed when idle)
        self.fallbacks: dict[int, tuple[str, str]] = {}   # island -> (crossover drawn, why it could not run)
        self.retired: set[int] = set()     # islands gone for good (lost node, full node disk, nothing to propose)
        self.running: dict[int, Trial] = {}   # island -> the trial it trains now (shown to the LLM)
        self.readmitted: dict[int, list[Proposal]] = {k: [] for k in range(self.n)}   # trained again next (trial.readmission)
        self.max_wait_s = cfg.llm.max_wait_s
        self.idle_since: dict[int, float] = {}   # island -> when it started waiting for its LLM proposal
        self.transcripts = Transcripts(proposer.run_dir)
        self._job_counter = 0

    # ---- limits ---------------------------------------------------------------------------------
    def can_start(self, in_flight: int) -> bool:
        return not self.stop.requested and len(self.state.experiments) + in_flight < self.max_experiments

    def done(self) -> bool:
        """run.max_experiments are recorded and the champion has its runs (a run stopped during its
        last champion's re-measurement finishes it on resume)."""
        return (len(self.state.experiments) >= self.max_experiments
                and due_remeasure(self.state, self.champion_runs, self.base_commit) is None)

    def waiting_for_llm(self, in_flight: int) -> bool:
        """Whether nothing runs but an LLM proposal is still worth waiting for."""
        return bool(self.prefetch) and self.can_start(in_flight)

    def wait_for_llm(self, timeout: float) -> None:
        wait_futures([f for f, _ in self.prefetch.values()], timeout=timeout, return_when=FIRST_COMPLETED)

    # ---- what runs next -------------------------------------------------------------------------
    def next_trials(self, busy: set[int], in_flight: int) -> list[Trial]:
        """The trials to start now on idle islands, in island order, within run.max_experiments."""
        self._rerun_failed_baselines()
        self.running = {k: trial for k, trial in self.running.items() if k in busy}
        # promotions and the champion's re-measurements are counted apart from run.max_experiments
        in_flight -= (self.promoting is not None) + (self.remeasuring is not None)
        trials: list[Trial] = []
        for k in range(self.n):
            if self.stop.requested:
                break
            if k in busy or k in self.retired:
                continue
            # the champion is re-measured even once the limit is reached: the run's last number is honest
            trial = self._remeasure(k)
            if trial is None:
                if not self.can_start(in_flight + len(trials)):
                    continue
                trial = self._promotion(k) or self._next_trial(k)
            if trial is None:
                continue
            if trial.is_promotion or trial.is_remeasure:
                in_flight -= 1
            trials.append(trial)
            self.running[k] = trial
            self.idle_since.pop(k, None)
            if (trial.proposal is not None and self.prefetch_enabled and k not in self.prefetch
                    and self.can_start(in_flight + len(trials))):
                self._plan_next(k)
        return trials

    def _promotion(self, k: int) -> PromotionTrial | None:
        """A champion's promotion to start on island k, when one is due and none is in flight."""
        if self.promoting is not None or self.state.sigma is None:
            return None
        commit = due_promotion(self.state, self.promote_every, self.base_commit)
        if commit is None:
            return None
        job = Job(self.job_id(k), k, commit, None, self.fresh_seed(), budget_s=self.promote_factor * self.budget_s)
        self.promoting = PromotionTrial(job, self.base_commit)
        return self.promoting

    def promotion_done(self) -> None:
        self.promoting = None

    def _remeasure(self, k: int) -> RemeasureTrial | None:
        """One more run of the run's champion on island k, when it has too few (one at a time)."""
        if self.remeasuring is not None:
            return None
        commit = due_remeasure(self.state, self.champion_runs, self.base_commit)
        if commit is None:
            return None
        self.remeasuring = RemeasureTrial(Job(self.job_id(k), k, commit, None, self.fresh_seed()))
        return self.remeasuring

    def remeasure_done(self) -> None:
        self.remeasuring = None

    def fresh_seed(self) -> int:
        """A seed no run of this run has used yet: a first run's (selection.first_seed=fresh), or a
        paired re-run's of a candidate and its parent."""
        self._fresh_seeds += 1
        return self._fresh_seeds * RERUN_SEED_STRIDE + self.seed

    def job_id(self, island: int) -> str:
        self._job_counter += 1
        return f"island-{island}/{time.strftime('%Y%m%d-%H%M%S')}-{self._job_counter:04d}"

    def _rerun_failed_baselines(self) -> None:
        """Generation 0 needs its planned number of successful baselines: a failed one is run again
        with a new seed (on the next live island), up to baseline_cap runs in all."""
        if self.state.sigma is not None:
            return
        baselines = [e for e in self.state.experiments if e.is_baseline]
        recorded = {e.seed for e in baselines}
        in_flight = len(self.baselines_started - recorded)
        owed = sum(len(runs) for runs in self.baselines_left.values())
        ok = sum(e.val_bpb is not None for e in baselines)
        missing = self.baseline_total - ok - owed - in_flight
        room = baseline_cap(self.baseline_total) - len(baselines) - owed - in_flight
        alive = [k for k in range(self.n) if k not in self.retired]
        used = recorded | self.baselines_started | {b.seed for runs in self.baselines_left.values() for b in runs}
        for i in range(min(missing, room) if alive else 0):
            seed = max(used) + 1
            used.add(seed)
            self.baselines_left[alive[i % len(alive)]].append(BaselineRun(island=alive[i % len(alive)], seed=seed))

    def _next_trial(self, k: int) -> Trial | None:
        if self.baselines_left[k]:
            b = self.baselines_left[k].pop(0)
            self.baselines_started.add(b.seed)
            return Trial(Job(self.job_id(k), k, self.base_commit, None, b.seed), None)
        if self.state.sigma is None:
            return None  # generation 0 is not complete yet
        while self.readmitted[k]:
            again = self.readmitted[k].pop(0)
            island = self.state.islands[k]
            if still_there(again.parent, island.population, island.head):
                return self._trial(k, replace(again, epoch=island.epoch))    # proposed now, in this epoch
            say(f"island {k}: not training {again.candidate.description!r} again: its parent is gone")
        try:
            if k not in self.prefetch and k not in self.planned:
                self._plan_next(k)
            if k in self.prefetch and self._prefetch_is_stale(k):
                self._replan(k)
            if k in self.prefetch:
                future, request = self.prefetch[k]
                if future.done():
                    del self.prefetch[k]
                    proposal = self._llm_outcome(k, future, request)
                elif self._waited_enough(k):   # train an offline candidate meanwhile; the proposal stays
                    proposal = replace(self.proposer.propose_offline(self.state, k, self.seen),
                                       stand_in_for=request.operator_name)
                else:
                    return None  # the island waits for its LLM proposal
            else:
                self.planned.discard(k)
                proposal = self.proposer.propose_offline(self.state, k, self.seen)
        except NoCandidate as e:
            say(f"island {k} cannot propose anything ({e}); it stops")
            self.retired.add(k)
            return None
        self._record_fallbacks(k, proposal)
        self.seen.add(proposal.source_sha256)
        return self._trial(k, proposal)

    def _trial(self, k: int, proposal: Proposal) -> Trial:
        parent = proposal.candidate.parents[0]
        limit = (max_uncounted_s(self.state.experiments, k, self.uncounted_margin, self.uncounted_margin_s)
                 if self.enforce_budget else None)
        return Trial(Job(self.job_id(k), k, parent, proposal.candidate.source, self._first_seed(k), max_uncounted_s=limit,
                         early_stop=self._early_stop_rule(parent)), proposal)

    def _first_seed(self, k: int) -> int:
        """The seed of a candidate's first run on island k (selection.first_seed)."""
        return self.fresh_seed() if self.first_seed == "fresh" else self.seed + k

    def readmit(self, k: int, proposal: Proposal) -> None:
        """A stale would-be keep of island k is trained again as its next experiment."""
        self.readmitted[k].append(proposal)

    def _early_stop_rule(self, parent: str):
        """The early-stop rule of a child of ``parent`` (None: off, or no curves to compare with yet)."""
        if self.early_stop is None or self.curves is None:
            return None
        return self.curves.early_stop_rule(parent, self.base_commit, self.early_stop.k, self.early_stop.min_fraction,
                                           self.curve_pattern)

    def _plan_next(self, k: int) -> None:
        """Draws island k's next operator; an LLM proposal starts now, in the background, from the
        freshest records, so the model thinks while the island trains."""
        self._check_llm_budget()
        name = self.proposer.choose_operator()
        if not is_llm(name):
            self.planned.add(k)
            return
        try:
            request = self.proposer.prepare(self.state, k, name, self.in_flight())
        except NoCandidate:
            return  # nothing to build on yet; the island proposes offline when it is idle
        if request.fallback_from:   # a crossover that cannot run: offline when idle, recorded then
            self.fallbacks[k] = (request.fallback_from, request.fallback_reason)
            self.planned.add(k)
            return
        self.prefetch[k] = (_in_background(request.run), request)

    def _record_fallbacks(self, k: int, proposal: Proposal) -> None:
        """Records each crossover drawn for this candidate that could not run (an LLM one at planning,
        an offline one inside propose_offline) and the operator that made the candidate instead."""
        drawn = [self.fallbacks.pop(k)] if k in self.fallbacks else []
        if proposal.fallback_from:
            drawn.append((proposal.fallback_from, proposal.fallback_reason))
        for operator, reason in drawn:
            self.record(OperatorFallback(island=k, operator=operator, fallback=proposal.candidate.operator,
                                         reason=reason[:500], after_seq=self.state.next_seq - 1))

    def _waited_enough(self, k: int) -> bool:
        """With prefetch, an idle island waits at most llm.max_wait_s for its LLM proposal (without
        prefetch, as in the ratchet, it always waits: the loop is strictly serial)."""
        if not self.prefetch_enabled:
            return False
        since = self.idle_since.setdefault(k, time.monotonic())
        return time.monotonic() - since >= self.max_wait_s

    def cancel_proposals(self, why: str, grace_s: float = 1.0) -> None:
        """The run ends: every LLM proposal still in flight is cancelled (it stops before its next
        request) and recorded as an operator failure with what it cost so far."""
        for _, request in self.prefetch.values():
            if request.context.control is not None:
                request.context.control.cancel(why)
        if self.prefetch:
            wait_futures([f for f, _ in self.prefetch.values()], timeout=grace_s)
        for k in sorted(self.prefetch):
            self._drop_prefetch(k, f"cancelled: {why}")

    def in_flight(self) -> tuple[Peer, ...]:
        """The candidates training now, in island order (baselines left out)."""
        return tuple(Peer(island=k, description=t.proposal.candidate.description,
                          operator=t.proposal.candidate.operator)
                     for k, t in sorted(self.running.items()) if t.proposal is not None)

    def _prefetch_is_stale(self, k: int) -> bool:
        """Whether island k's population changed (a reset, or migrants) since its LLM proposal was drawn."""
        return self.prefetch[k][1].epoch != self.state.islands[k].epoch

    def _replan(self, k: int) -> None:
        """Drops island k's stale LLM proposal (recorded with what it cost so far) and draws anew."""
        self._drop_prefetch(k, f"re-planned: island {k} {self.state.islands[k].epoch_cause} after its parents were drawn "
                               f"(epoch {self.prefetch[k][1].epoch} -> {self.state.islands[k].epoch})")
        self._plan_next(k)

    def _drop_prefetch(self, k: int, reason: str) -> None:
        """Island k's LLM proposal will not be used: an operator failure, with what it cost (so far,
        when it is still running: its finished calls and its time)."""
        future, request = self.prefetch.pop(k)
        control = request.context.control
        cost, transcript = {}, {}
        if future.done():
            error = future.exception()
            if error is None:
                cost, transcript = asdict(future.result().candidate.cost), future.result().candidate.transcript
            else:
                cost = asdict(error.cost) if getattr(error, "cost", None) else {}
                transcript = getattr(error, "transcript", None) or {}
        elif control is not None:   # stop it: before its next request, or by aborting the one in flight
            control.cancel(reason)
            cost = asdict(control.cost_so_far())
        if control is not None and control.aborted:
            reason += " (still waiting for the model: its request was aborted, the connection to the server closed)"
        path = self.transcripts.keep(k, request.operator_name, transcript, reason)
        self.record(OperatorFailure(island=k, operator=request.operator_name, reason=reason,
                                    after_seq=self.state.next_seq - 1, cost=cost, transcript=path))

    def _llm_outcome(self, k: int, future: Future, request: Request) -> Proposal:
        """The LLM's candidate, or an offline one when the LLM produced nothing (recorded)."""
        path = ""
        try:
            proposal = future.result()
            path = self.transcripts.keep(k, request.operator_name, proposal.candidate.transcript, "candidate")
            if proposal.source_sha256 not in self.seen:
                return replace(proposal, transcript=path)
            reason, cost = "duplicate of an already measured train.py", asdict(proposal.candidate.cost)
        except NoCandidate as e:
            reason, cost = str(e), asdict(e.cost) if getattr(e, "cost", None) else {}
            path = self.transcripts.keep(k, request.operator_name, getattr(e, "transcript", None) or {}, reason)
        except Exception as e:  # noqa: BLE001 - the run never dies from an operator
            reason, cost = f"{type(e).__name__}: {e}", {}
        self.record(OperatorFailure(island=k, operator=request.operator_name, reason=reason[:500],
                                    after_seq=self.state.next_seq - 1, cost=cost, transcript=path))
        self._check_llm_budget()
        return self.proposer.propose_offline(self.state, k, self.seen)

    def _check_llm_budget(self) -> None:
        cap = self.max_cost_usd
        if not cap or not self.proposer.llm_enabled or self.state.llm_usd() < cap:
            return
        if self.on_max_cost == OnMaxCost.stop:
            say(f"LLM spend ${self.state.llm_usd():.2f} reached llm.max_cost_usd={cap}: stopping")
            self.stop.request(StopReason.SPEND_CAP)
        else:
            say(f"LLM spend ${self.state.llm_usd():.2f} reached llm.max_cost_usd={cap}: offline operators from now on")
        self.proposer.disable_llm()

    # ---- islands that leave -----------------------------------------------------------------------
    def retire(self, k: int, trial: Trial | None, why: str) -> None:
        """Island k is gone (with its node); the run goes on without it. Its trial in flight is
        dropped (never recorded); baselines it still owed move to the other islands; an LLM proposal
        made for it is recorded as an operator failure, so its cost still counts."""
        self.retired.add(k)
        alive = [i for i in range(self.n) if i not in self.retired]
        say(f"island {k} is retired: {why}; {len(alive)} islands go on")
        self.planned.discard(k)
        self.readmitted[k] = []
        self.fallbacks.pop(k, None)
        if k in self.prefetch:
            self._drop_prefetch(k, f"island retired: {why}")
        owed, self.baselines_left[k] = self.baselines_left[k], []
        if trial is not None and trial.is_promotion:
            self.promoting, trial = None, None     # a champion still due is promoted on another island
        if trial is not None and trial.is_remeasure:
            self.remeasuring, trial = None, None   # ... and re-measured on another
        if trial is not None and trial.proposal is None:
            owed.append(BaselineRun(island=k, seed=trial.job.seed))
        for i, b in enumerate(owed if alive else []):
            self.baselines_left[alive[i % len(alive)]].append(b)


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
