"""The engine's pure parts alone, without Ray or git: a trial's runs and verdict, the epoch events,
the stop reason and the scheduler's decisions in generation 0."""
from __future__ import annotations

import os
import random
import signal
import time

import pytest
from omegaconf import OmegaConf

from evolve.config import Config
from evolve.epochs import Epochs
from evolve.proposer import Proposal, Proposer
from evolve.records import Experiment, Migration, NoiseFloor, Reset
from evolve.scheduler import Scheduler
from evolve.state import RunState
from evolve.stop import Stop, StopReason
from evolve.trial import RERUN_SEED_STRIDE, Rules, Trial
from island.actor import Job, Measurement
from island.fitness import FitnessResult, Status
from operators.candidate import Candidate

RULES = Rules(noise_k=1.0, confirm_sigmas=3.0, implausible_sigmas=20.0, max_runs=2)
SIGMA = 0.01


def config(**overrides):
    cfg = OmegaConf.structured(Config)
    cfg.islands = 2
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def measured(job: Job, val_bpb: float | None, status: Status = Status.OK) -> Measurement:
    result = FitnessResult(status=status, val_bpb=val_bpb, metrics={}, wall_s=1.0, reason="" if val_bpb else "boom",
                           log_path="", log_tail="", returncode=0)
    return Measurement(job=job, result=result, started=0.0, finished=1.0)


def candidate_trial(parent_bpb: float = 1.0, seed: int = 7) -> Trial:
    proposal = Proposal(Candidate("x = 1\n", "x 0 -> 1", ("p" * 40,), "perturb"), parent_bpb=parent_bpb)
    return Trial(Job("island-0/1", 0, "p" * 40, "x = 1\n", seed), proposal)


def job_ids():
    counter = iter(range(100, 200))
    return lambda island: f"island-{island}/{next(counter)}"


# ---- trial ----------------------------------------------------------------------------------------
def test_a_clear_gain_is_kept_on_one_run_and_a_clear_loss_discarded():
    trial = candidate_trial()
    m = measured(trial.job, 0.95)                          # 5 sigma better: trusted at once
    assert not trial.confirm(m, SIGMA, RULES, job_ids(), 0)
    assert trial.verdict(m, SIGMA, RULES, 0).status == "keep"
    worse = candidate_trial()
    m = measured(worse.job, 1.02)
    assert not worse.confirm(m, SIGMA, RULES, job_ids(), 0)
    assert worse.verdict(m, SIGMA, RULES, 0).status == "discard"


def test_a_close_call_runs_again_with_a_new_seed_and_the_mean_decides():
    trial = candidate_trial(seed=7)
    first = measured(trial.job, 0.98)                      # 2 sigma: could be seed luck
    assert trial.confirm(first, SIGMA, RULES, job_ids(), 0)
    assert trial.job.seed == 7 + RERUN_SEED_STRIDE and trial.job.job_id == "island-0/100"
    assert "confirm_sigmas" in trial.rerun_reason and trial.attempts == 1
    second = measured(trial.job, 1.0)                      # the luck did not repeat: mean 0.99, 1 sigma
    assert not trial.confirm(second, SIGMA, RULES, job_ids(), 0)   # max_runs reached
    verdict = trial.verdict(second, SIGMA, RULES, 0)
    assert verdict.status == "discard" and verdict.val_bpb == pytest.approx(0.99)
    assert "not confirmed" in verdict.reason


def test_a_failed_re_run_discards_and_a_crash_is_a_crash():
    trial = candidate_trial()
    assert trial.confirm(measured(trial.job, 0.98), SIGMA, RULES, job_ids(), 0)
    verdict = trial.verdict(measured(trial.job, None, Status.TIMEOUT), SIGMA, RULES, 0)
    assert verdict.status == "discard" and "timeout" in verdict.reason and verdict.val_bpb == pytest.approx(0.98)
    crashed = candidate_trial()
    m = measured(crashed.job, None, Status.CRASH)
    assert not crashed.confirm(m, SIGMA, RULES, job_ids(), 0)
    assert crashed.verdict(m, SIGMA, RULES, 0).status == "crash"


def test_an_implausible_gain_that_does_not_reproduce_is_discarded():
    trial = candidate_trial()
    assert trial.confirm(measured(trial.job, 0.5), SIGMA, RULES, job_ids(), 0)   # 50 sigma
    verdict = trial.verdict(measured(trial.job, 1.0), SIGMA, RULES, 0)
    assert verdict.status == "discard" and "not reproducible" in verdict.reason


def test_baselines_are_never_re_run_and_always_kept_when_they_score():
    trial = Trial(Job("island-1/1", 1, "b" * 40, None, 3), None)
    m = measured(trial.job, 2.5)
    assert not trial.confirm(m, SIGMA, RULES, job_ids(), 0)
    assert trial.verdict(m, SIGMA, RULES, 0).status == "keep" and trial.label == "baseline"


# ---- epochs ---------------------------------------------------------------------------------------
def experiment(seq, island, val, operator="perturb", status="keep"):
    return Experiment(seq=seq, island=island, island_seq=0, commit=f"{seq:040d}", parents=("p",), operator=operator,
                      description="d", outcome="ok" if val else "crash", status=status if val else "crash",
                      val_bpb=val, parent_bpb=None, seed=seq, wall_s=1.0)


def test_the_noise_floor_is_due_once_every_baseline_is_in_and_empty_when_all_failed():
    epochs = Epochs(config(), random.Random(0), baseline_total=2)
    state = RunState(2, 4)
    state.apply(experiment(0, 0, 2.50, "baseline"))
    assert epochs.noise_floor(state) is None
    state.apply(experiment(1, 1, 2.52, "baseline"))
    floor = epochs.noise_floor(state)
    assert floor.sigma == pytest.approx(0.0141421, rel=1e-4) and floor.baselines == (2.50, 2.52)
    state.apply(floor)
    assert epochs.noise_floor(state) is None              # recorded once
    failed = RunState(2, 4)
    failed.apply(experiment(0, 0, None, "baseline"))
    failed.apply(experiment(1, 1, None, "baseline"))
    assert epochs.noise_floor(failed).baselines == ()


def test_events_after_a_record_come_in_order_each_planned_from_the_state_the_last_left():
    cfg = config(**{"migration.interval": 1, "reset.interval": 1, "reset.fraction": 0.5})
    epochs = Epochs(cfg, random.Random(0), baseline_total=2)
    state = RunState(2, 4)
    state.apply(experiment(0, 0, 2.50, "baseline"))
    state.apply(experiment(1, 1, 2.60, "baseline"))
    kinds = []
    for event in epochs.after(state, 1, frozenset()):
        kinds.append(type(event).__name__)
        state.apply(event)
    assert kinds == ["NoiseFloor", "Migration", "Reset"]
    migration = next(e for e in state.events if isinstance(e, Migration))
    assert migration.source == 1 and migration.targets == (0,)
    # The reset ranked islands after the migrant arrived: island 0 (2.50) survives, island 1 is reseeded.
    reset = state.events[-1]
    assert [(island, donor) for island, donor, _, _ in reset.resets] == [(1, 0)]
    assert list(epochs.after(state, 1, frozenset())) == []      # nothing more is due


def test_retired_islands_take_no_part_in_migration():
    cfg = config(**{"migration.interval": 1, "reset.interval": 0})
    epochs = Epochs(cfg, random.Random(0), baseline_total=1)
    state = RunState(2, 4)
    state.apply(NoiseFloor(0.01, (2.5,)))
    state.apply(experiment(0, 0, 2.50, "baseline"))
    assert list(epochs.after(state, 0, frozenset({1}))) == []


# ---- stop -----------------------------------------------------------------------------------------
def test_the_first_stop_reason_wins_unless_a_hard_one_comes_later():
    stop = Stop()
    assert not stop.requested and stop.exit_code == 0
    stop.request(StopReason.DEADLINE)
    stop.request(StopReason.SPEND_CAP)
    assert stop.reason is StopReason.DEADLINE
    stop.request(StopReason.TERMINATED)
    stop.request(StopReason.INTERRUPTED)
    assert stop.reason is StopReason.TERMINATED


def test_sigterm_becomes_a_graceful_interrupt_that_remembers_the_signal():
    stop, before = Stop(), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with stop.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert stop.reason is StopReason.TERMINATED
    assert signal.getsignal(signal.SIGTERM) is before      # the handler is only ours while the loop runs


def test_a_deadline_in_the_past_requests_a_stop():
    stop = Stop()
    stop.set_deadline(0)
    stop.check_deadline()
    assert not stop.requested
    stop.set_deadline(1e-6)      # 3.6 ms
    time.sleep(0.01)
    stop.check_deadline()
    assert stop.reason is StopReason.DEADLINE


# ---- scheduler ------------------------------------------------------------------------------------
def scheduler(cfg, state, recorded):
    proposer = Proposer(None, cfg, None, random.Random(0), run_dir=None, program="")
    return Scheduler(cfg, state, proposer, "b" * 40, "sha-of-base", Stop(), recorded.append)


def test_generation_0_runs_every_baseline_then_waits_for_the_noise_floor():
    cfg = config(**{"selection.baseline_runs": 3})
    state, recorded = RunState(2, 4), []
    s = scheduler(cfg, state, recorded)
    first = s.next_trials(busy=set(), in_flight=0)
    assert [(t.island, t.job.seed, t.proposal) for t in first] == [(0, 0, None), (1, 1, None)]
    assert s.next_trials(busy={0, 1}, in_flight=2) == []          # both busy
    state.apply(experiment(0, 0, 2.5, "baseline"))
    third = s.next_trials(busy={1}, in_flight=1)
    assert [(t.island, t.job.seed) for t in third] == [(0, 2)]    # the third baseline goes to island 0
    state.apply(experiment(1, 1, 2.5, "baseline"))
    assert s.next_trials(busy={0}, in_flight=1) == []             # no child before sigma is known
    assert recorded == []


def test_the_experiment_limit_counts_what_is_in_flight():
    cfg = config(**{"run.max_experiments": 1})
    s = scheduler(cfg, RunState(2, 4), [])
    assert len(s.next_trials(busy=set(), in_flight=0)) == 1
    assert s.next_trials(busy=set(), in_flight=1) == []
    assert not s.can_start(1)
    s.stop.request(StopReason.DEADLINE)
    assert not s.can_start(0)


def test_a_retired_island_hands_its_owed_and_in_flight_baselines_to_the_others():
    cfg = config(**{"selection.baseline_runs": 4})
    s = scheduler(cfg, RunState(3, 4), [])
    started = s.next_trials(busy=set(), in_flight=0)
    assert [t.island for t in started] == [0, 1, 2]
    s.retire(1, started[1], "it lost its node")
    assert 1 in s.retired
    owed = sorted(b.seed for k in (0, 2) for b in s.baselines_left[k])
    assert owed == [1, 3] and s.baselines_left[1] == []
    assert [t.island for t in s.next_trials(busy={0, 2}, in_flight=2)] == []


# ---- island epochs --------------------------------------------------------------------------------
def test_resets_and_arriving_migrants_start_a_new_epoch_of_the_island():
    state = RunState(3, 4)
    state.apply(experiment(0, 0, 2.5, "baseline"))
    state.apply(Migration(source=0, round=1, targets=(1,), migrants=(("0" * 40, 2.5),), after_seq=0))
    assert [isl.epoch for isl in state.islands] == [0, 1, 0]
    state.apply(Reset(round=1, resets=((2, 0, "0" * 40, 2.5),), after_seq=0))
    assert [isl.epoch for isl in state.islands] == [0, 1, 1]


def test_a_candidate_drawn_before_its_islands_epoch_changed_is_recorded_but_never_admitted():
    trial = candidate_trial()                                # drawn in epoch 0
    clear_gain = measured(trial.job, 0.95)
    assert trial.verdict(clear_gain, SIGMA, RULES, 0).status == "keep"
    stale = trial.verdict(clear_gain, SIGMA, RULES, 1)
    assert stale.status == "discard" and stale.reason.startswith("not admitted: island 0 was reset")
    assert stale.val_bpb == 0.95                             # the row keeps its measurement
    close_call = candidate_trial()
    assert not close_call.confirm(measured(close_call.job, 0.98), SIGMA, RULES, job_ids(), 1)   # no re-run
    loss = candidate_trial()
    assert loss.verdict(measured(loss.job, 1.02), SIGMA, RULES, 1).reason == ""   # only keeps change
