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
from evolve.population import Member, Population
from evolve.trial import RERUN_SEED_STRIDE, Rules, Trial, readmission
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


PARENT = "p" * 40


def candidate_trial(seed: int = 7) -> Trial:
    proposal = Proposal(Candidate("x = 1\n", "x 0 -> 1", (PARENT,), "perturb"), parent_bpb=1.0, parent=PARENT)
    return Trial(Job("island-0/1", 0, PARENT, "x = 1\n", seed), proposal)


def job_ids():
    counter = iter(range(100, 200))
    return lambda island: f"island-{island}/{next(counter)}"


def arrive(trial: Trial, value: float | None, parent: list[float], status: Status = Status.OK, epoch: int = 0,
           ids=None) -> bool:
    """Files the run in progress with `value`; whether another run is due."""
    trial.file(measured(trial.job, value, status))
    return trial.next_run(SIGMA, RULES, ids or job_ids(), epoch, parent, lambda: 7 + RERUN_SEED_STRIDE)


# ---- trial ----------------------------------------------------------------------------------------
def test_a_clear_gain_is_kept_on_one_run_and_a_clear_loss_discarded():
    trial = candidate_trial()
    assert not arrive(trial, 0.95, [1.0])                  # 3.5 standard errors better: trusted at once
    verdict = trial.verdict(SIGMA, RULES, 0, [1.0])
    assert verdict.status == "keep" and verdict.parent_bpb == 1.0
    worse = candidate_trial()
    assert not arrive(worse, 1.02, [1.0])
    assert worse.verdict(SIGMA, RULES, 0, [1.0]).status == "discard"


def test_the_parent_is_judged_by_all_its_runs():
    trial = candidate_trial()
    assert not arrive(trial, 0.975, [1.0, 0.96, 0.97, 0.96])   # its parent averages 0.9725: no gain
    verdict = trial.verdict(SIGMA, RULES, 0, [1.0, 0.96, 0.97, 0.96])
    assert verdict.status == "discard" and verdict.parent_bpb == pytest.approx(0.9725)


def test_a_close_call_runs_again_then_its_parent_on_the_same_seed():
    trial, ids = candidate_trial(seed=7), job_ids()
    assert arrive(trial, 0.98, [1.0], ids=ids)                   # 1.4 standard errors: seed luck?
    assert (trial.job.source, trial.job.seed, trial.job.job_id) == ("x = 1\n", 7 + RERUN_SEED_STRIDE, "island-0/100")
    assert "confirm_sigmas" in trial.rerun_reason and trial.attempts == 1
    assert arrive(trial, 0.975, [1.0], ids=ids)                  # then the parent, same seed
    assert (trial.job.parent, trial.job.source, trial.job.seed) == (PARENT, None, 7 + RERUN_SEED_STRIDE)
    assert not arrive(trial, 0.985, [1.0], ids=ids)              # all runs in: the verdict is due
    verdict = trial.verdict(SIGMA, RULES, 0, [1.0])
    # child 0.9775 over 2 runs against parent 0.9925 over 2: 1.5 standard errors, and it won its seed
    assert verdict.status == "keep" and verdict.val_bpb == pytest.approx(0.9775)
    assert verdict.parent_bpb == pytest.approx(0.9925)
    assert [r.job.seed for r in trial.parent_runs] == [7 + RERUN_SEED_STRIDE]


def test_a_close_call_that_loses_to_its_parent_on_the_shared_seed_is_discarded():
    trial = candidate_trial()
    assert arrive(trial, 0.97, [1.0])
    assert arrive(trial, 0.975, [1.0])
    assert not arrive(trial, 0.974, [1.0])                       # the parent was better on that seed
    verdict = trial.verdict(SIGMA, RULES, 0, [1.0])
    assert verdict.status == "discard" and "against its parent's 0.974000" in verdict.reason


def test_a_failed_re_run_discards_and_a_crash_is_a_crash():
    trial = candidate_trial()
    assert arrive(trial, 0.98, [1.0])
    assert not arrive(trial, None, [1.0], Status.TIMEOUT)         # the re-run failed: its parent need not run
    verdict = trial.verdict(SIGMA, RULES, 0, [1.0])
    assert verdict.status == "discard" and "timeout" in verdict.reason and verdict.val_bpb == pytest.approx(0.98)
    parent_failed = candidate_trial()
    assert arrive(parent_failed, 0.98, [1.0]) and arrive(parent_failed, 0.97, [1.0])
    assert not arrive(parent_failed, None, [1.0], Status.CRASH)
    verdict = parent_failed.verdict(SIGMA, RULES, 0, [1.0])
    assert verdict.status == "discard" and verdict.reason.startswith("its parent's re-run")
    crashed = candidate_trial()
    assert not arrive(crashed, None, [1.0], Status.CRASH)
    assert crashed.verdict(SIGMA, RULES, 0, [1.0]).status == "crash"


def test_an_implausible_gain_that_does_not_reproduce_is_discarded():
    trial = candidate_trial()
    assert arrive(trial, 0.5, [1.0])                              # 50 sigma
    assert arrive(trial, 1.0, [1.0])
    assert not arrive(trial, 1.0, [1.0])
    verdict = trial.verdict(SIGMA, RULES, 0, [1.0])
    assert verdict.status == "discard" and "not reproducible" in verdict.reason


def test_baselines_are_never_re_run_and_always_kept_when_they_score():
    trial = Trial(Job("island-1/1", 1, "b" * 40, None, 3), None)
    assert not arrive(trial, 2.5, [])
    assert trial.verdict(SIGMA, RULES, 0, []).status == "keep" and trial.label == "baseline"


# ---- epochs ---------------------------------------------------------------------------------------
def experiment(seq, island, val, operator="perturb", status="keep"):
    return Experiment(seq=seq, island=island, island_seq=0, commit=f"{seq:040d}", parents=("p",), operator=operator,
                      description="d", outcome="ok" if val else "crash", status=status if val else "crash",
                      val_bpb=val, parent_bpb=None, seed=seq, wall_s=1.0)


def test_the_noise_floor_needs_its_successful_baselines_and_gives_up_after_twice_the_plan():
    epochs = Epochs(config(), random.Random(0), baseline_total=2)
    state = RunState(2, 4)
    state.apply(experiment(0, 0, 2.50, "baseline"))
    assert epochs.noise_floor(state) is None
    state.apply(experiment(1, 1, 2.52, "baseline"))
    floor = epochs.noise_floor(state)
    assert floor.sigma == pytest.approx(0.0141421, rel=1e-4) and floor.baselines == (2.50, 2.52)
    state.apply(floor)
    assert epochs.noise_floor(state) is None              # recorded once
    assert floor.dof == 1
    failed = RunState(2, 4)
    failed.apply(experiment(0, 0, None, "baseline"))
    failed.apply(experiment(1, 1, 2.5, "baseline"))
    assert epochs.noise_floor(failed) is None                # a failed baseline is re-run, not dropped
    failed.apply(experiment(2, 0, None, "baseline"))
    failed.apply(experiment(3, 1, None, "baseline"))
    assert epochs.noise_floor(failed).baselines == (2.5,)    # four runs: the engine stops (min_baselines 2)


def test_the_noise_estimate_learns_from_every_repeated_measurement():
    epochs = Epochs(config(), random.Random(0), baseline_total=2)
    state = RunState(2, 4)
    for seq, value in enumerate((2.50, 2.52)):
        state.apply(Experiment(seq=seq, island=seq, island_seq=0, commit="b" * 40, parents=(), operator="baseline",
                               description="baseline", outcome="ok", status="keep", val_bpb=value, parent_bpb=None,
                               seed=seq, wall_s=1.0))
    events = list(epochs.after(state, 1, frozenset()))
    assert [type(e).__name__ for e in events] == ["NoiseFloor"]
    for e in events:
        state.apply(e)
    # a child confirmed once more and its parent re-run on the same seed: three more degrees of freedom
    state.apply(Experiment(seq=2, island=0, island_seq=1, commit="c" * 40, parents=("b" * 40,), operator="perturb",
                           description="d", outcome="ok", status="keep", val_bpb=2.45, parent_bpb=2.51, seed=2,
                           wall_s=2.0, reruns=((10002, 2.46, "ok", ""),), first_bpb=2.44,
                           parent_reruns=((10002, 2.53, "ok", ""),), parent="b" * 40))
    update = epochs.noise_update(state)
    assert update.dof == 3 and state.runs_of("b" * 40) == [2.50, 2.52, 2.53]
    expected = (((2.50 - 2.5167) ** 2 + (2.52 - 2.5167) ** 2 + (2.53 - 2.5167) ** 2) + 2 * 0.01 ** 2) / 3
    assert update.sigma == pytest.approx(expected ** 0.5, rel=1e-3)
    state.apply(update)
    assert (state.sigma, state.sigma_dof) == (update.sigma, 3) and epochs.noise_update(state) is None
    # every island's member of the parent reads all its runs: one number per commit
    assert state.islands[0].population.get("b" * 40).val_bpb == pytest.approx(2.5167, abs=1e-4)


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
    assert signal.getsignal(signal.SIGTERM) is before      # the handler is only ours while the run runs
    graceful = Stop()
    with graceful.sigterm_as_interrupt():
        graceful.stopping = True                           # the graceful stop has begun: it is not interrupted
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
    assert graceful.reason is StopReason.TERMINATED and graceful.exit_code == 143


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
    cfg = config(**{"selection.baseline_runs": 3, "selection.min_baselines": 3})
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


def test_a_failed_baseline_is_run_again_with_a_new_seed():
    state, recorded = RunState(2, 4), []
    s = scheduler(config(), state, recorded)
    assert [t.job.seed for t in s.next_trials(busy=set(), in_flight=0)] == [0, 1]
    state.apply(experiment(0, 0, None, "baseline"))
    again = s.next_trials(busy={1}, in_flight=1)
    assert [(t.island, t.job.seed, t.proposal) for t in again] == [(0, 2, None)]


def test_a_retired_island_hands_its_owed_and_in_flight_baselines_to_the_others():
    cfg = config(**{"selection.baseline_runs": 4, "selection.min_baselines": 4})
    s = scheduler(cfg, RunState(3, 4), [])
    started = s.next_trials(busy=set(), in_flight=0)
    assert [t.island for t in started] == [0, 1, 2]
    s.retire(1, started[1], "it lost its node")
    assert 1 in s.retired
    owed = sorted(b.seed for k in (0, 2) for b in s.baselines_left[k])
    assert owed == [1, 3] and s.baselines_left[1] == []
    assert [t.island for t in s.next_trials(busy={0, 2}, in_flight=2)] == []


# ---- island epochs --------------------------------------------------------------------------------
def test_a_reset_and_migrants_that_add_a_member_start_a_new_epoch_of_the_island():
    state = RunState(3, 4)
    state.apply(experiment(0, 0, 2.5, "baseline"))
    state.apply(Migration(source=0, round=1, targets=(1,), migrants=(("0" * 40, 2.5),), after_seq=0))
    assert [isl.epoch for isl in state.islands] == [0, 1, 0]
    assert state.islands[1].epoch_cause == "received migrants from island 0"
    state.apply(Migration(source=0, round=2, targets=(1,), migrants=(("0" * 40, 2.5),), after_seq=0))
    assert [isl.epoch for isl in state.islands] == [0, 1, 0]        # already a member: nothing changed
    state.apply(Reset(round=1, resets=((2, 0, "0" * 40, 2.5),), after_seq=0))
    assert [isl.epoch for isl in state.islands] == [0, 1, 1]
    assert state.islands[2].epoch_cause == "was reset"


def test_a_stale_would_be_keep_whose_parent_survived_is_trained_again_once_in_the_new_epoch():
    trial = candidate_trial()                                # drawn in epoch 0
    arrive(trial, 0.95, [1.0], epoch=1)
    stale = trial.verdict(SIGMA, RULES, 1, [1.0], epoch_cause="received migrants from island 1")
    assert stale.reason.startswith("not admitted: island 0 received migrants from island 1 while it ran")
    population = Population(4)
    population.add(Member(PARENT, [1.0], 0, 0))
    again = readmission(trial, stale, population, None, 1)
    assert again is not None and again.epoch == 1 and again.candidate.source == trial.proposal.candidate.source
    assert again.candidate.cost.usd == 0 and again.readmitted
    second = Trial(Job("island-0/2", 0, PARENT, again.candidate.source, 7), again)
    arrive(second, 0.95, [1.0], epoch=2)                     # stale again: it is not trained a third time
    assert readmission(second, second.verdict(SIGMA, RULES, 2, [1.0]), population, None, 2) is None
    assert readmission(trial, stale, Population(4), None, 1) is None      # its parent is gone (a reset)
    assert readmission(trial, stale, Population(4), PARENT, 1) is not None   # a hot island's head is still there
    loss = candidate_trial()
    arrive(loss, 1.02, [1.0], epoch=1)
    assert readmission(loss, loss.verdict(SIGMA, RULES, 1, [1.0]), population, None, 1) is None


def test_a_candidate_whose_sequential_test_was_running_when_migrants_arrived_is_trained_again():
    # the seventh-to-ninth sessions' lost real gains: migrants that added a member to the island cut a
    # close call's sequential test short, and it was discarded as "not confirmed" and never trained again
    rules = Rules(noise_k=1.0, confirm_sigmas=5.0, implausible_sigmas=20.0, max_runs=4, paired_sigmas=3.0)
    population = Population(4)
    population.add(Member(PARENT, [1.0], 0, 0))

    def confirming(parent_paired: float) -> Trial | None:
        trial = candidate_trial()                                           # drawn in epoch 0
        for value in (0.98, 0.975, parent_paired):   # first run, its re-run, the parent's run on that seed
            trial.file(measured(trial.job, value))
            due = trial.next_run(SIGMA, rules, job_ids(), 0, [1.0], lambda: 7 + RERUN_SEED_STRIDE)
        assert len(trial.pairs()) == 1
        return trial if due else None

    running = confirming(0.99)            # paired gain 0.015, short of 3 sigma: in epoch 0 it runs again
    assert running is not None and "sequential" in running.rerun_reason
    assert not running.next_run(SIGMA, rules, job_ids(), 1, [1.0], lambda: 20007)   # the island changed
    stale = running.verdict(SIGMA, rules, 1, [1.0], epoch_cause="received migrants from island 1")
    assert stale.status == "discard" and stale.reason == (
        "not admitted: island 0 received migrants from island 1 while it ran (epoch 0 -> 1); "
        "its confirmation was still running (1 paired seed(s))")
    again = readmission(running, stale, population, None, 1)
    assert again is not None and again.epoch == 1 and again.readmitted
    # a paired loss decides the test whatever the epoch: a plain discard, not trained again
    lost = candidate_trial()
    for value in (0.98, 0.975, 0.97):
        lost.file(measured(lost.job, value))
        lost.next_run(SIGMA, rules, job_ids(), 0, [1.0], lambda: 7 + RERUN_SEED_STRIDE)
    verdict = lost.verdict(SIGMA, rules, 1, [1.0])
    assert verdict.status == "discard" and verdict.reason.startswith("not confirmed")
    assert readmission(lost, verdict, population, None, 1) is None


def test_a_candidate_drawn_before_its_islands_epoch_changed_is_recorded_but_never_admitted():
    trial = candidate_trial()                                # drawn in epoch 0
    assert not arrive(trial, 0.95, [1.0], epoch=1)
    assert trial.verdict(SIGMA, RULES, 0, [1.0]).status == "keep"
    stale = trial.verdict(SIGMA, RULES, 1, [1.0])
    assert stale.status == "discard" and stale.reason.startswith("not admitted: island 0 was reset")
    assert stale.val_bpb == 0.95                             # the row keeps its measurement
    close_call = candidate_trial()
    assert not arrive(close_call, 0.98, [1.0], epoch=1)      # no re-run for what cannot be admitted
    loss = candidate_trial()
    arrive(loss, 1.02, [1.0], epoch=1)
    assert loss.verdict(SIGMA, RULES, 1, [1.0]).reason == ""   # only keeps change


def test_paired_re_runs_take_fresh_seeds_across_resumes():
    state = RunState(2, 4)
    state.apply(Experiment(seq=0, island=0, island_seq=0, commit="c" * 40, parents=("b" * 40,), operator="perturb",
                           description="d", outcome="ok", status="keep", val_bpb=2.45, parent_bpb=2.51, seed=0,
                           wall_s=2.0, reruns=((20000, 2.46, "ok", ""),), first_bpb=2.44,
                           parent_reruns=((20000, 2.53, "ok", ""),), parent="b" * 40))
    s = scheduler(config(), state, [])          # a resumed run: its journal has used 20000
    assert [s.fresh_seed(), s.fresh_seed()] == [30000, 40000]


def test_a_close_call_is_not_confirmed_once_the_run_stops_and_is_not_kept():
    trial = candidate_trial()
    trial.file(measured(trial.job, 0.98))                       # a close call...
    trial.stop_confirming()                                     # ...as run.hours (or the spend cap) is reached
    assert not trial.next_run(SIGMA, RULES, job_ids(), 0, [1.0], lambda: 10007)
    verdict = trial.verdict(SIGMA, RULES, 0, [1.0])
    assert verdict.status == "discard" and verdict.reason.startswith("not confirmed: the run stopped")
    clear = candidate_trial()
    clear.file(measured(clear.job, 0.95))                       # a clear gain needs no further run
    clear.stop_confirming()
    assert not clear.next_run(SIGMA, RULES, job_ids(), 0, [1.0], lambda: 10007)
    assert clear.verdict(SIGMA, RULES, 0, [1.0]).status == "keep"


def test_a_pending_parent_run_is_dropped_when_the_re_run_failed():
    trial = candidate_trial()
    assert arrive(trial, 0.98, [1.0])
    trial.file(measured(trial.job, None, Status.CRASH))          # the candidate's re-run crashed
    assert not trial.next_run(SIGMA, RULES, job_ids(), 0, [1.0], lambda: 20007)   # its parent does not run
    assert trial.verdict(SIGMA, RULES, 0, [1.0]).status == "discard"
