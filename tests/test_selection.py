"""The selection policy and run state, replayed from records exactly as the engine does."""
from __future__ import annotations

import random

import pytest

from evolve.config import Topology
from evolve.population import Member, Population
from evolve.records import Experiment, Migration, NoiseFloor, NoiseUpdate, Reset, from_json, to_json
from evolve.epochs import migration_targets, plan_migration, plan_reset
from evolve.noise import pooled
from evolve.selection import baseline_plan, decide, decide_runs, rerun_reason
from evolve.state import RunState


def exp(seq, island, commit, val, status="keep", operator="perturb", parents=("p",)):
    return Experiment(seq=seq, island=island, island_seq=0, commit=commit, parents=parents, operator=operator,
                      description=f"change {seq}", outcome="ok" if status != "crash" else "crash", status=status,
                      val_bpb=None if status == "crash" else val, parent_bpb=None, seed=0, wall_s=1.0)


def test_a_keep_needs_more_than_k_standard_errors_of_the_difference():
    # one run each: the standard error of the difference is sigma * sqrt(2)
    assert decide("ok", [0.990], [1.000], sigma=0.004, noise_k=2.0) == "discard"     # 1.77 standard errors
    assert decide("ok", [0.988], [1.000], sigma=0.004, noise_k=2.0) == "keep"        # 2.12
    # a parent measured four times is a sharper estimate: the same gain now clears the bar
    assert decide("ok", [0.990], [1.0, 1.002, 0.998, 1.0], sigma=0.004, noise_k=2.0) == "keep"
    assert decide("ok", [0.999], [1.000], sigma=0.004, noise_k=0.0) == "keep"        # noise_k 0: any gain
    assert decide("ok", [1.000], [1.000], sigma=0.0, noise_k=0.0) == "discard"       # equal is not better
    assert decide("ok", [0.999], [1.000], sigma=0.0, noise_k=1.0) == "keep"          # sigma 0 still tests:
    assert decide("ok", [1.0 - 1e-6], [1.000], sigma=0.0, noise_k=1.0) == "discard"  # at the printed resolution
    assert decide("timeout", [], [1.000], sigma=0.0, noise_k=0.0) == "crash"
    assert decide("ok", [1.2], None, sigma=0.0, noise_k=1.0) == "keep"  # baselines are kept


def test_only_would_be_keeps_near_the_noise_floor_or_implausibly_far_beyond_it_run_again():
    def why(values, parent=(1.0,), sigma=0.01, confirm=3.0, implausible=20.0, max_runs=2):
        return rerun_reason(values, list(parent), sigma, noise_k=1.0, confirm_sigmas=confirm,
                            implausible_sigmas=implausible, max_runs=max_runs)

    assert "within selection.confirm_sigmas=3" in why([0.98])      # 1.4 standard errors: seed luck?
    assert why([0.995]) == ""                                       # 0.35: a discard, nothing to confirm
    assert why([0.95]) == ""                                        # 3.5: trusted on one run
    assert "implausibly large" in why([0.7])                        # 30 sigma: re-run before keeping
    assert why([0.98, 0.985]) == ""                                 # already re-run: the runs decide
    assert "within" in why([0.98, 0.985], max_runs=3)               # confirm_runs=2 allows one more
    assert why([0.98], confirm=0) == "" and why([0.7], implausible=0) == ""   # both can be turned off
    assert "implausibly large" in why([0.98], sigma=0.0)            # sigma 0 never waves a gain through
    assert rerun_reason([0.98], None, 0.01, 1.0, 3.0, 20.0, 2) == ""   # baselines never re-run


def test_the_runs_of_child_and_parent_decide_and_the_child_must_win_every_shared_seed():
    assert decide_runs([0.98, 0.975], [1.0], [], 0.01, noise_k=1.0, implausible_sigmas=20.0) == ("keep", "")
    status, reason = decide_runs([0.98, 1.03], [1.0], [], 0.01, noise_k=1.0, implausible_sigmas=20.0)
    assert status == "discard" and "not confirmed: mean of 2 runs 1.005000 vs parent 1.000000 over 1 runs" in reason
    status, reason = decide_runs([0.5, 1.0], [1.0], [], 0.01, noise_k=1.0, implausible_sigmas=20.0)
    assert status == "discard" and "not reproducible" in reason and "50.0 sigma" in reason
    assert decide_runs([0.5, 1.0], [1.0], [], 0.01, noise_k=1.0, implausible_sigmas=0.0)[0] == "keep"
    # the means clear the bar, but on the shared seed the parent was as good: seed luck, not a gain
    status, reason = decide_runs([0.97, 0.975], [1.0, 0.974], [(10000, 0.975, 0.974)], 0.01, 1.0, 20.0)
    assert status == "discard" and "on seed 10000 it scored 0.975000 against its parent's 0.974000" in reason
    assert decide_runs([0.97, 0.973], [1.0, 0.974], [(10000, 0.973, 0.974)], 0.01, 1.0, 20.0) == ("keep", "")
    # selection.paired_sigmas: on the shared seed it must win by more than that many sigma
    status, reason = decide_runs([0.97, 0.973], [1.0, 0.974], [(10000, 0.973, 0.974)], 0.01, 1.0, 20.0, 1.5)
    assert status == "discard" and "selection.paired_sigmas" in reason
    assert decide_runs([0.97, 0.955], [1.0, 0.974], [(10000, 0.955, 0.974)], 0.01, 1.0, 20.0, 1.5)[0] == "keep"


def test_a_confirmed_experiment_counts_every_run_in_population_and_hall_of_fame():
    state = RunState(n_islands=1, population_size=4)
    state.apply(exp(0, 0, "base", 1.0, operator="baseline", parents=()))
    confirmed = Experiment(seq=1, island=0, island_seq=1, commit="child", parents=("base",), operator="perturb",
                           description="d", outcome="ok", status="keep", val_bpb=0.97, parent_bpb=1.0, seed=0,
                           wall_s=2.0, reruns=((10000, 0.96, "ok", "logs/b.log"),), rerun_reason="within",
                           first_bpb=0.98)
    assert from_json(to_json(confirmed)) == confirmed
    state.apply(from_json(to_json(confirmed)))
    assert state.islands[0].population.get("child").observations == [0.98, 0.96]
    assert state.measurements["child"] == [0.98, 0.96]
    failed_rerun = Experiment(seq=2, island=0, island_seq=2, commit="flaky", parents=("base",), operator="perturb",
                              description="d", outcome="ok", status="discard", val_bpb=0.98, parent_bpb=1.0,
                              seed=0, wall_s=2.0, reruns=((10000, None, "timeout", "logs/c.log"),),
                              rerun_reason="within", first_bpb=0.98)
    state.apply(failed_rerun)
    assert "flaky" not in state.islands[0].population and state.measurements["flaky"] == [0.98]


def test_baseline_plan_gives_every_island_its_own_seed_and_enough_runs_for_sigma():
    plan = baseline_plan(n_islands=4, baseline_runs=0, noise_k=1.0, seed=10)
    assert [(b.island, b.seed) for b in plan] == [(0, 10), (1, 11), (2, 12), (3, 13)]
    single = baseline_plan(n_islands=1, baseline_runs=0, noise_k=1.0, seed=0)
    assert [b.island for b in single] == [0, 0]  # one island still measures sigma from two seeds
    assert len(baseline_plan(n_islands=1, baseline_runs=0, noise_k=0.0, seed=0)) == 1
    # selection.min_baselines: the last round is filled, so no island idles while others finish it
    assert [b.island for b in baseline_plan(4, 0, 1.0, 0, min_baselines=6)] == [0, 1, 2, 3] * 2
    assert len(baseline_plan(2, 0, 1.0, 0, min_baselines=6)) == 6
    assert len(baseline_plan(5, 0, 1.0, 0, min_baselines=6)) == 10
    assert len(baseline_plan(8, 0, 1.0, 0, min_baselines=6)) == 8
    assert len(baseline_plan(4, 5, 1.0, 0, min_baselines=6)) == 6     # an explicit number is not rounded
    assert pooled([[1.0]]).sigma == 0.0 and abs(pooled([[1.0, 1.002]]).sigma - 0.0014142) < 1e-6


def test_population_drops_the_worst_never_the_best():
    pop = Population(capacity=2)
    for seq, val in enumerate([1.0, 0.9, 1.1, 0.95]):
        pop.add(Member(f"c{seq}", [val], 0, seq))
    assert sorted(m.val_bpb for m in pop.members) == [0.9, 0.95]
    pop.add(Member("c1", [0.7], 0, 9))  # a re-measurement averages into the same member
    assert pop.get("c1").val_bpb == 0.8 and len(pop) == 2
    rng = random.Random(0)
    assert {pop.select_parent(2, rng).commit for _ in range(50)} <= {"c1", "c3"}
    # the run's generator alone decides: the global random module is not touched
    state = random.getstate()
    draws = [pop.select_parent(2, random.Random(7)).commit for _ in range(5)]
    assert random.getstate() == state
    assert draws == [pop.select_parent(2, random.Random(7)).commit for _ in range(5)]


def test_topologies():
    rng = random.Random(0)
    assert migration_targets(3, 4, Topology.ring, rng) == (0,)
    assert migration_targets(1, 4, Topology.full, rng) == (0, 2, 3)
    assert all(migration_targets(2, 4, Topology.random, rng)[0] != 2 for _ in range(20))
    assert migration_targets(0, 1, Topology.ring, rng) == ()


def test_retired_islands_receive_no_migrants_and_take_no_part_in_resets():
    rng = random.Random(0)
    assert migration_targets(0, 4, Topology.ring, rng, retired=frozenset({1})) == (2,)   # the ring closes the gap
    assert migration_targets(3, 4, Topology.ring, rng, retired=frozenset({0})) == (1,)
    assert migration_targets(1, 4, Topology.full, rng, retired=frozenset({2})) == (0, 3)
    assert all(migration_targets(0, 3, Topology.random, rng, retired=frozenset({1})) == (2,) for _ in range(10))
    assert migration_targets(0, 2, Topology.ring, rng, retired=frozenset({1})) == ()
    state = RunState(n_islands=3, population_size=2)
    for seq, (island, val) in enumerate([(0, 1.0), (1, 1.1), (2, 0.9), (0, 1.0), (1, 1.1), (2, 0.9)]):
        state.apply(exp(seq, island, f"c{seq}", val))
    reset = plan_reset(state, interval=2, fraction=0.5, rng=rng, retired=frozenset({1}))
    assert reset is not None and [(i, d) for i, d, _, _ in reset.resets] == [(0, 2)]   # island 1 is neither
    assert plan_reset(state, interval=2, fraction=0.5, rng=rng, retired=frozenset({1, 2})) is None


def test_migration_is_due_every_interval_and_recorded_once():
    state = RunState(n_islands=2, population_size=3)
    state.apply(exp(0, 0, "a", 1.0, operator="baseline", parents=()))
    state.apply(exp(1, 1, "b", 1.1, operator="baseline", parents=()))
    state.apply(NoiseFloor(sigma=0.01, baselines=(1.0, 1.1)))
    rng = random.Random(0)
    assert plan_migration(state, 0, interval=2, size=1, topology=Topology.ring, rng=rng) is None
    state.apply(exp(2, 0, "c", 0.9))
    m = plan_migration(state, 0, interval=2, size=1, topology=Topology.ring, rng=rng)
    assert m.targets == (1,) and m.migrants == (("c", 0.9),) and m.round == 1
    state.apply(m)
    assert plan_migration(state, 0, interval=2, size=1, topology=Topology.ring, rng=rng) is None
    assert state.islands[1].champion().commit == "c"  # the migrant is now island 1's best
    assert state.islands[1].champion().origin_island == 0


def test_reset_replaces_the_weakest_with_a_survivors_champion():
    state = RunState(n_islands=4, population_size=3)
    for k, val in enumerate([1.0, 1.3, 0.8, 1.2]):
        state.apply(exp(k, k, f"base{k}", val, operator="baseline", parents=()))
    rng = random.Random(1)
    assert plan_reset(state, interval=2, fraction=0.5, rng=rng) is None  # 4 < 2 x 4 experiments
    for seq in range(4, 8):
        state.apply(exp(seq, seq % 4, f"x{seq}", 2.0, status="discard"))
    reset = plan_reset(state, interval=2, fraction=0.5, rng=rng)
    assert sorted(i for i, *_ in reset.resets) == [1, 3]  # the two weakest islands
    assert all(donor in (0, 2) and commit == f"base{donor}" for _, donor, commit, _ in reset.resets)
    state.apply(reset)
    assert [len(isl.population) for isl in state.islands] == [1, 1, 1, 1]
    assert plan_reset(state, interval=2, fraction=0.5, rng=rng) is None  # once per round


def test_records_round_trip_through_json():
    records = [exp(0, 1, "abc", 0.99), NoiseFloor(0.002, (1.0, 1.004), dof=1), NoiseUpdate(0.003, 4, 7),
               Migration(0, 1, (1, 2), (("abc", 0.99),), 3), Reset(1, ((1, 0, "abc", 0.99),), 4)]
    assert [from_json(to_json(r)) for r in records] == records


def test_hall_of_fame_scores_a_commit_by_all_its_measurements():
    state = RunState(n_islands=2, population_size=3)
    state.apply(exp(0, 0, "base", 3.20, operator="baseline", parents=()))
    state.apply(exp(1, 1, "base", 3.12, operator="baseline", parents=()))
    state.apply(exp(2, 1, "child", 3.17))
    hof = state.hall_of_fame()
    assert [(m.commit, round(m.val_bpb, 3)) for m in hof] == [("base", 3.16), ("child", 3.17)]
    assert state.champion().commit == "base"
    # one number per commit everywhere: each island's member of it reads every run of the commit
    assert state.islands[0].champion().val_bpb == state.islands[1].champion().val_bpb == 3.16


def test_disk_full_is_recognised_in_every_form_it_reaches_the_engine():
    import errno

    from evolve.disk import DiskFull, is_disk_full

    assert is_disk_full(DiskFull("the disk of runs/x is full"))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("island 0 failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert is_disk_full(RuntimeError("git commit-tree: fatal: No space left on device"))  # a git command's stderr
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_a_sequential_confirmation_runs_again_until_the_paired_gain_clears_the_margin_either_way():
    from evolve.selection import undecided

    parent = [1.0, 0.99]
    # two shared seeds: the margin is paired_sigmas * sigma / sqrt(2) = 0.0212 on their mean gain
    two = [(10000, 0.975, 0.99), (20000, 0.97, 0.99)]                 # mean gain 0.0175: short of it
    assert decide_runs([0.98, 0.975, 0.97], parent + [0.99, 0.99], two, 0.01, 1.0, 20.0, 3.0)[0] == "discard"
    assert "sequential" in undecided([0.98, 0.975, 0.97], parent + [0.99, 0.99], two, 0.01, 1.0, 20.0, 3.0, 4)
    assert undecided([0.98, 0.975, 0.97], parent + [0.99, 0.99], two, 0.01, 1.0, 20.0, 3.0, 3) == ""   # at the cap
    wide = [(10000, 0.96, 0.99), (20000, 0.965, 0.99)]                # mean gain 0.0275: kept, no more runs
    assert decide_runs([0.98, 0.96, 0.965], parent + [0.99, 0.99], wide, 0.01, 1.0, 20.0, 3.0) == ("keep", "")
    assert undecided([0.98, 0.96, 0.965], parent + [0.99, 0.99], wide, 0.01, 1.0, 20.0, 3.0, 4) == ""
    lost = [(10000, 0.995, 0.99)]                                     # no paired gain: discarded at once
    assert undecided([0.97, 0.995], parent + [0.99], lost, 0.01, 1.0, 20.0, 3.0, 4) == ""
    assert undecided([0.98], parent, [], 0.01, 1.0, 20.0, 3.0, 4) == ""   # no pair yet: rerun_reason decides


def test_sigma_is_widened_by_student_t_while_its_degrees_of_freedom_are_few():
    from evolve.noise import judging_sigma, t975

    assert t975(1) == 12.706 and t975(3) == 3.182 and t975(30) == 2.042
    assert 1.98 < t975(60) < 2.01 and 1.96 < t975(10_000) < 1.961
    assert judging_sigma(0.01, 3) == pytest.approx(0.01 * 3.182 / 1.959964)
    assert judging_sigma(0.01, 3, widen=False) == 0.01 and judging_sigma(0.01, 0) == 0.01
    assert judging_sigma(0.01, 1000) == pytest.approx(0.01, rel=0.002)


def test_a_futility_bound_ends_the_sequential_test_of_a_paired_gain_too_small_to_become_a_keep():
    from evolve.config import ConfigError, validate
    from evolve.selection import undecided
    from tests.test_environment import _config

    parent = [1.0, 0.99, 0.99, 0.99]
    child = [0.97, 0.986, 0.986]            # its mean still clears noise_k against the parent's four runs
    small = [(10000, 0.986, 0.99), (20000, 0.986, 0.99)]     # mean paired gain 0.004
    # without a bound (continue_sigmas 0) any positive paired gain runs on, up to max_runs
    assert "sequential" in undecided(child, parent, small, 0.01, 1.0, 20.0, 3.0, 6)
    # with continue_sigmas 1: a gain at or below 1 * sigma / sqrt(2) = 0.0071 is decided now (a discard)
    assert undecided(child, parent, small, 0.01, 1.0, 20.0, 3.0, 6, continue_sigmas=1.0) == ""
    assert decide_runs(child, parent, small, 0.01, 1.0, 20.0, 3.0)[0] == "discard"
    closer = [(10000, 0.975, 0.99), (20000, 0.975, 0.99)]    # 0.015: beyond the bound, short of 0.0212
    assert "sequential" in undecided([0.97, 0.975, 0.975], parent, closer, 0.01, 1.0, 20.0, 3.0, 6,
                                     continue_sigmas=1.0)
    # the bound is judged in the unshared sigma, like the margin: with half the noise cancelled by the
    # shared seed, 0.004 is beyond 1 * 0.005 / sqrt(2)
    assert "sequential" in undecided(child, parent, small, 0.01, 1.0, 20.0, 3.0, 6, unshared=0.005,
                                     continue_sigmas=1.0)

    validate(_config("selection.continue_sigmas=1"), 2)
    validate(_config("selection.paired_sigmas=0"), 2)      # no margin, so no sequential test to bound
    with pytest.raises(ConfigError, match=r"selection.continue_sigmas=3.0 .*below selection.paired_sigmas=3"):
        validate(_config("selection.continue_sigmas=3"), 2)
