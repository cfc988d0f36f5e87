"""The asynchronous island loop: the fleet measures, the scheduler proposes, the recorder records.

Each island starts its next experiment as soon as its last one is recorded; the only barrier is
generation 0, where every island measures the unmodified baseline (their spread is the noise
floor sigma) before any child is judged against it. docs/architecture.md walks one experiment
through the parts composed here.
"""
from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

from . import disk
from .disk import DiskFull
from .epochs import Epochs
from .fleet import Arrival, Fleet
from .live_report import LiveReport
from .lessons import Lessons
from .llm_choice import LLMChoice, describe
from .opener import OpenedRun, open_run, prepare_task_data
from .journal import event_detail
from .noise import judging_sigma, pooled, unshared
from .promotion import PromotionTrial, promotion_record
from .proposer import Proposer
from .remeasure import RemeasureTrial, remeasure_record
from .recorder import Recorder
from .records import LLMSummary, NoiseFloor
from .scheduler import Scheduler
from .state import RunState
from .stop import Stop, StopReason
from .tempering import descending, ladder
from .bets import bet_verdict
from .trial import Rules, readmission, tempered
from .view import LiveView, say


class Engine:
    def __init__(self, cfg, run_dir: Path, islands: int, llm: LLMChoice | None = None):
        self.cfg = cfg
        self.run_dir = run_dir
        self.n = islands
        self.llm = llm
        self.rng = random.Random(cfg.seed)   # every draw the engine makes comes from this one generator
        self.rules = Rules.from_config(cfg.selection)
        self.temperatures = ladder(islands, cfg.selection.t_max)   # sigma units; island 0 greedy
        self.stop = Stop()
        self.live_report = LiveReport(run_dir, cfg.report.every)   # report/index.html, rebuilt in the background
        self.lessons: Lessons | None = None   # lessons.md, written every llm.lessons_every experiments

    def run(self) -> RunState:
        """Runs until a limit or a stop; self.stop.exit_code then says how it ended."""
        disk.ensure_free(self.run_dir, self.cfg.run.min_free_mb)
        with self.stop.sigterm_as_interrupt():     # start-up, the loop and the graceful stop alike
            opened = open_run(self.cfg, self.run_dir, self.n)
            try:
                return self._run(opened)
            finally:
                opened.lock.release()

    def _run(self, opened: OpenedRun) -> RunState:
        cfg = self.cfg
        state, recorder = opened.state, opened.recorder
        say(describe(self.llm))
        if any(self.temperatures):
            say("temperature ladder (sigma units): " + ", ".join(
                f"island {k} T={t:.3g}" for k, t in enumerate(self.temperatures))
                + (f"; replica exchange every {cfg.exchange.interval} experiments" if cfg.exchange.interval else ""))
        proposer = Proposer(opened.workspace.lab, cfg, self.llm, self.rng, self.run_dir, opened.brief,
                            self.temperatures, base_commit=opened.workspace.manifest.base_commit)
        scheduler = Scheduler(cfg, state, proposer, opened.workspace.manifest.base_commit, opened.base_sha256,
                              self.stop, recorder.append, opened.curves)
        self.lessons = Lessons(self.run_dir, cfg.llm.lessons_every,
                               summarise=proposer.summariser() if cfg.llm.lessons else None)
        epochs = Epochs(cfg, self.rng, scheduler.baseline_total)
        for event in (epochs.noise_floor(state), epochs.noise_update(state)):   # due when a kill came first
            self._record_event(event, recorder)
        floor = next((e for e in state.events if isinstance(e, NoiseFloor)), None)
        if floor is not None and self._too_few_baselines(floor, state):
            return state       # a resume of a run whose baselines failed: nothing to judge against
        if scheduler.done():
            if self._every_baseline_failed_so_far(state):
                return state
            say(f"{self.run_dir} already has {len(state.experiments)} experiments "
                f"(run.max_experiments={cfg.run.max_experiments}); nothing to do")
            self.stop.request(StopReason.LIMIT)
            return state
        prepare_task_data(opened)
        fleet = Fleet(cfg, opened.workspace, self.run_dir, opened.task_env)
        # An interrupt while the fleet starts leaves through __main__ (exit 130, or 143 for SIGTERM):
        # nothing ran yet, and shutting down a Ray that is half-way through ray.init can crash it.
        for k, why in fleet.start().items():
            scheduler.retire(k, None, why)
        used = state.seconds_run()
        self.stop.set_deadline(cfg.run.hours, used)
        if cfg.run.hours and used:
            say(f"run.hours={cfg.run.hours:g} counts every start: {used / 3600:.3f} h ran before this one")
        view = LiveView(state, self.n, cfg.run.max_experiments, self.run_dir,
                        live=cfg.run.live and sys.stdout.isatty())
        try:
            with view:
                self._loop(fleet, scheduler, recorder, epochs, view)
            if len(scheduler.retired) == self.n:
                self.stop.request(StopReason.ALL_RETIRED)
                say("every island is retired: the run cannot go on (exit 1)")
            if not self.stop.requested:
                self._every_baseline_failed_so_far(state)
            self.stop.request(StopReason.LIMIT)   # nothing else stopped it: the limits were reached
        except KeyboardInterrupt:
            self.stop.stopping = True
            self.stop.request(StopReason.INTERRUPTED)   # a SIGTERM already said TERMINATED, which stays
            say("interrupted: stopping islands; unfinished experiments will re-run on resume", fresh_line=True)
        except Exception as e:  # noqa: BLE001 - a full disk, wherever it shows, is a clean stop
            if not disk.is_disk_full(e):
                raise
            self.stop.request(StopReason.DISK_FULL, str(e) if isinstance(e, DiskFull) else
                              disk.message(self.run_dir, cfg.run.min_free_mb, f"{type(e).__name__}: {e}"))
            say(self.stop.detail, fresh_line=True)
        finally:
            self.stop.stopping = True
            try:
                scheduler.cancel_proposals("the run ended")
            except OSError as e:   # a full disk: the stop is already on its way
                say(f"LLM proposals in flight not recorded: {e}")
            fleet.shutdown(recorder.heads())
        cut_short = self.stop.reason in (StopReason.INTERRUPTED, StopReason.TERMINATED, StopReason.DISK_FULL)
        view.print_summary(opened.workspace.lab, interrupted=cut_short)
        if cut_short:   # Ctrl-C or a scheduler's SIGTERM wants a prompt exit: no report process outlives the run
            self.live_report.abandon()
        if self.stop.reason is StopReason.DISK_FULL:
            raise DiskFull(self.stop.detail)
        if not cut_short:
            self.live_report.finish(len(state.experiments))
        return state

    def _loop(self, fleet: Fleet, scheduler: Scheduler, recorder: Recorder, epochs: Epochs, view: LiveView) -> None:
        while True:
            self.stop.check_deadline()
            disk.ensure_free(self.run_dir, self.cfg.run.min_free_mb)
            for trial in scheduler.next_trials(fleet.busy(), len(fleet.in_flight)):
                fleet.submit(trial)
                view.started(trial.island, trial.label)
            if not fleet.in_flight:
                if not scheduler.waiting_for_llm(0):
                    return
                scheduler.wait_for_llm(timeout=0.5)
                continue
            for ref in fleet.wait(timeout=0.2 if scheduler.prefetch else 0.5):
                self._collect(fleet.collect(ref, self.stop.requested), fleet, scheduler, recorder, epochs, view)
            view.refresh()

    def _collect(self, arrival: Arrival, fleet: Fleet, scheduler: Scheduler, recorder: Recorder, epochs: Epochs,
                 view: LiveView) -> None:
        trial, m = arrival.trial, arrival.measurement
        if arrival.retired:
            scheduler.retire(trial.island, trial, arrival.retired)
            return
        if m is None:
            return
        if not m.result.ok:
            disk.ensure_free(self.run_dir, self.cfg.run.min_free_mb)  # a failure on a full disk is not the candidate's
        if trial.is_promotion:
            self._collect_promotion(trial, m, fleet, scheduler, recorder, view)
            return
        if trial.is_remeasure:
            self._collect_remeasure(trial, m, scheduler, recorder, view)
            return
        state = recorder.state
        sigma, epoch = state.sigma or 0.0, state.islands[trial.island].epoch
        # The verdict's sigma: widened while it rests on few degrees of freedom (selection.widen_sigma).
        judging = judging_sigma(sigma, state.sigma_dof, self.cfg.selection.widen_sigma)
        # ... and the part of it a seed shared by child and parent does not cancel (their paired runs).
        spread = unshared(judging, pooled(state.paired), self.cfg.selection.widen_sigma)
        parent_runs = state.runs_of(trial.proposal.parent) if trial.proposal else []
        trial.file(m)
        if self.stop.requested:
            trial.stop_confirming()   # no new fitness run once the run is stopping; unconfirmed is not kept
        if trial.next_run(judging, self.rules, scheduler.job_id, epoch, parent_runs, scheduler.fresh_seed, spread):
            fleet.submit(trial)
            whose = "parent, paired" if trial.job.source is None else "re-run"
            view.started(trial.island, f"{whose} (seed {trial.job.seed}): {trial.label}")
            return
        island = state.islands[trial.island]
        temperature = self._temperature(state, trial.island)
        verdict = tempered(trial, trial.verdict(judging, self.rules, epoch, parent_runs, spread, island.epoch_cause),
                           temperature, sigma, epoch, island.head, self.rng.random)
        verdict = bet_verdict(trial, verdict, island.bet, island.head, temperature,
                              self.cfg.selection.bet_max_credit, epoch)
        again = readmission(trial, verdict, island.population, island.head, epoch)
        if again is not None and not self.stop.requested:
            verdict = replace(verdict, reason=verdict.reason + "; queued to train again in the new epoch")
            scheduler.readmit(trial.island, again)
        exp = recorder.record(trial, verdict)
        for event in epochs.after(recorder.state, trial.island, frozenset(scheduler.retired)):
            self._record_event(event, recorder)
        summary = self.lessons.after(recorder.state)
        if summary is not None:
            recorder.append(LLMSummary(after_seq=exp.seq, cost=summary.cost, reason=summary.reason))
        recorder.sync_branches()
        view.finished(trial.island, exp)
        self.live_report.after_record(len(recorder.state.experiments))

    def _temperature(self, state: RunState, island: int) -> float:
        """Island's temperature now: its place on the ladder, or 0 while the run is descending
        (selection.descend_window: every island is greedy then)."""
        t = self.temperatures[island]
        sel = self.cfg.selection
        if t > 0 and sel.descend_window > 0 and descending(state.experiments, state.sigma,
                                                           sel.descend_window * state.n_islands, sel.descend_sigmas):
            return 0.0
        return t

    def _collect_promotion(self, trial: PromotionTrial, m, fleet: Fleet, scheduler: Scheduler, recorder: Recorder,
                           view: LiveView) -> None:
        """A promotion's champion run is followed by the base's, then recorded; a stopping run drops it."""
        trial.file(m)
        if not self.stop.requested and trial.next_promotion_run():
            fleet.submit(trial)
            view.started(trial.island, f"promotion: base at {trial.job.budget_s:g} s")
            return
        scheduler.promotion_done()
        if self.stop.requested and trial.pending:
            return
        record = promotion_record(trial, recorder.state, scheduler.base_commit, self.cfg.promote.factor)
        recorder.append(record)
        say("promotion: " + event_detail(record))

    def _collect_remeasure(self, trial: RemeasureTrial, m, scheduler: Scheduler, recorder: Recorder,
                           view: LiveView) -> None:
        """The champion's extra run is recorded; its commit's mean (and sigma) take it in at once."""
        trial.file(m)
        scheduler.remeasure_done()
        view.idle(trial.island)
        record = remeasure_record(trial, recorder.state)
        recorder.append(record)
        self._record_event(Epochs.noise_update(recorder.state), recorder)
        recorder.sync_branches()
        say("re-measure: " + event_detail(record))

    def _record_event(self, event, recorder: Recorder) -> None:
        if event is None:
            return
        recorder.append(event)
        if isinstance(event, NoiseFloor):
            self._too_few_baselines(event, recorder.state)

    def _too_few_baselines(self, floor: NoiseFloor, state: RunState) -> bool:
        """Stops the run (exit 1) when generation 0 ended with fewer successful baselines than
        selection.min_baselines: there is no noise floor to judge anything against."""
        if len(floor.baselines) >= self.cfg.selection.min_baselines:
            return False
        what = ("failed on every island" if not floor.baselines else
                f"succeeded {len(floor.baselines)} times, fewer than selection.min_baselines="
                f"{self.cfg.selection.min_baselines}")
        self._stop_for_failed_baselines(what, state)
        return True

    def _every_baseline_failed_so_far(self, state: RunState) -> bool:
        """Stops the run (exit 1) when the limits came before generation 0 ended and no baseline
        succeeded: a run.max_experiments smaller than the baselines' re-runs must not make a broken
        task look like a finished night (exit 0)."""
        baselines = [e for e in state.experiments if e.is_baseline]
        if state.sigma is not None or not baselines or any(e.val_bpb is not None for e in baselines):
            return False
        self._stop_for_failed_baselines(f"failed on every island ({len(baselines)} runs)", state)
        return True

    def _stop_for_failed_baselines(self, what: str, state: RunState) -> None:
        failed = next(e for e in state.experiments if e.is_baseline and e.val_bpb is None)
        say(f"the unmodified train.py {what} ({failed.outcome}: {failed.reason}); "
            f"see {self.run_dir / failed.log}. Fix the task and start a new run.dir.")
        self.stop.request(StopReason.BASELINES_FAILED)
