"""Temperaments (issue 14): the ladder, Metropolis acceptance of a worse child, replica exchange,
heads apart from champions, and how they are recorded and replayed."""
from __future__ import annotations

import math
import random

import pytest
from omegaconf import OmegaConf

from evolve.config import Config, ConfigError, validate
from evolve.epochs import Epochs, plan_exchanges
from evolve.journal import events_row, results_row
from evolve.proposer import Proposal
from evolve.records import DISCARD, EXPLORE, KEEP, Exchange, Experiment, NoiseFloor, Reset, from_json, to_json
from evolve.state import RunState
from evolve.tempering import exchange_pairs, exchange_probability, ladder, metropolis_probability
from evolve.trial import Rules, Trial, tempered
from island.actor import Job, Measurement
from island.fitness import FitnessResult, Status
from operators.candidate import Candidate

SIGMA = 0.01
RULES = Rules(noise_k=1.0, confirm_sigmas=0.0, implausible_sigmas=0.0, max_runs=1)


def exp(seq, island, commit, val, status=KEEP, parents=("p" * 40,), operator="perturb"):
    return Experiment(seq=seq, island=island, island_seq=0, commit=commit, parents=parents, operator=operator,
                      description=f"change {seq}", outcome="ok", status=status, val_bpb=val, parent_bpb=None,
                      seed=0, wall_s=1.0, parent=parents[0] if parents else "")


def baselines(state: RunState, value: float = 2.0) -> None:
    for k in range(state.n_islands):
        state.apply(exp(k, k, "b" * 40, value, operator="baseline", parents=()))
    state.apply(NoiseFloor(sigma=SIGMA, baselines=(value,) * state.n_islands))


def trial_of(parent: str, child_value: float, status: Status = Status.OK, epoch: int = 0) -> Trial:
    proposal = Proposal(Candidate("x = 1\n", "x 0 -> 1", (parent,), "perturb"), parent_bpb=2.0, parent=parent,
                        epoch=epoch)
    trial = Trial(Job("island-1/1", 1, parent, "x = 1\n", 7), proposal)
    result = FitnessResult(status=status, val_bpb=child_value if status is Status.OK else None, metrics={},
                           wall_s=1.0, reason="", log_path="", log_tail="", returncode=0)
    trial.file(Measurement(job=trial.job, result=result, started=0.0, finished=1.0))
    return trial


def test_the_ladder_is_greedy_on_island_0_and_geometric_up_to_t_max():
    assert ladder(4, 0.0) == (0.0, 0.0, 0.0, 0.0)
    t = ladder(4, 64.0)
    assert t[0] == 0.0 and t[-1] == pytest.approx(64.0)
    assert t[1] == pytest.approx(4.0) and t[2] == pytest.approx(16.0)     # ratio 4 each step
    assert ladder(2, 10.0) == (0.0, 10.0)
    assert ladder(1, 10.0) == (0.0,)


def test_metropolis_takes_every_gain_and_a_loss_with_probability_exp_minus_delta_over_t():
    assert metropolis_probability(-3.0, 5.0) == 1.0
    assert metropolis_probability(10.0, 5.0) == pytest.approx(math.exp(-2.0))
    assert metropolis_probability(10.0, 0.0) == 0.0       # a greedy island never steps back
    # the standard exchange rule; a greedy cold island swaps exactly when the hot state is better
    assert exchange_probability(200.0, 190.0, 0.0, 10.0) == 1.0
    assert exchange_probability(190.0, 200.0, 0.0, 10.0) == 0.0
    assert exchange_probability(190.0, 200.0, 5.0, 10.0) == pytest.approx(math.exp(-10 * (1 / 5 - 1 / 10)))


def test_exchange_pairs_alternate_and_skip_retired_islands():
    assert exchange_pairs(4, 1) == [(0, 1), (2, 3)]
    assert exchange_pairs(4, 2) == [(1, 2)]
    assert exchange_pairs(2, 2) == [(0, 1)]
    assert exchange_pairs(4, 1, frozenset({1})) == [(0, 2)]


def test_a_hot_island_takes_a_worse_child_of_its_head_as_explore_with_the_metropolis_probability():
    parent = "h" * 40
    base = trial_of(parent, 2.05)                      # 5 sigma worse than its parent (2.0)
    verdict = base.verdict(SIGMA, RULES, 0, [2.0])
    assert verdict.status == DISCARD
    # draws below exp(-5/10) = 0.61 take it, above do not; a greedy island never does, nor draws
    taken = tempered(base, verdict, 10.0, SIGMA, 0, parent, lambda: 0.6)
    assert taken.status == EXPLORE and taken.reason.startswith("explore: +5.0 sigma")
    assert tempered(base, verdict, 10.0, SIGMA, 0, parent, lambda: 0.62).status == DISCARD
    assert tempered(base, verdict, 0.0, SIGMA, 0, parent, lambda: pytest.fail("greedy islands draw nothing")) \
        == verdict
    # not a child of the head (a replica exchange moved it), stale (a reset), or crashed: stays as it was
    assert tempered(base, verdict, 10.0, SIGMA, 0, "o" * 40, lambda: 0.0).status == DISCARD
    stale = trial_of(parent, 2.05, epoch=0)
    assert tempered(stale, stale.verdict(SIGMA, RULES, 1, [2.0]), 10.0, SIGMA, 1, parent, lambda: 0.0).status \
        == DISCARD
    crashed = trial_of(parent, 0.0, status=Status.CRASH)
    v = crashed.verdict(SIGMA, RULES, 0, [2.0])
    assert tempered(crashed, v, 10.0, SIGMA, 0, parent, lambda: 0.0) == v
    # a kept child stays a keep
    kept = trial_of(parent, 1.9)
    assert tempered(kept, kept.verdict(SIGMA, RULES, 0, [2.0]), 10.0, SIGMA, 0, parent, lambda: 0.0).status == KEEP


def test_the_head_moves_apart_from_the_champion_and_replays_identically():
    records = []
    state = RunState(2, 4)
    baselines(state)
    b = "b" * 40
    records += [exp(2, 1, "w" * 40, 2.03, EXPLORE, parents=(b,))]     # a worse child becomes island 1's head
    records += [exp(3, 1, "v" * 40, 2.02, KEEP, parents=("w" * 40,))]  # a keep of the head: the head walks on
    records += [exp(4, 1, "u" * 40, 2.01, KEEP, parents=(b,))]         # a keep of another parent: head stays
    for r in records:
        state.apply(r)
    island = state.islands[1]
    assert island.head == "v" * 40 and island.explores == 1 and island.keeps == 3
    assert island.champion().commit == b                               # the champion is still the best ever
    assert "w" * 40 not in island.population                           # an explored child is no member
    assert state.head_member(1).val_bpb == pytest.approx(2.02)
    assert state.islands[0].head is None
    # the journal alone rebuilds the same heads
    replayed = RunState.replay(2, 4, [from_json(to_json(r)) for r in
                                      [*(e for e in state.experiments[:2]), state.events[0], *records]])
    assert [i.head for i in replayed.islands] == [i.head for i in state.islands]
    # a reset clears the head
    state.apply(Reset(round=1, resets=((1, 0, b, 2.0),), after_seq=4))
    assert state.islands[1].head is None


def test_results_tsv_writes_explore_as_discard_with_the_prefix():
    row = results_row(exp(5, 1, "e" * 40, 2.03, EXPLORE)).rstrip("\n").split("\t")
    assert row[3] == DISCARD and row[4] == "explore: change 5"


def test_replica_exchange_swaps_states_down_the_ladder_and_is_recorded():
    cfg = OmegaConf.structured(Config)
    cfg.islands = 3
    OmegaConf.update(cfg, "selection.t_max", 100.0)
    OmegaConf.update(cfg, "exchange.interval", 1)
    OmegaConf.update(cfg, "migration.interval", 0)
    OmegaConf.update(cfg, "reset.interval", 0)
    state = RunState(3, 4)
    baselines(state)
    temps = ladder(3, 100.0)
    state.apply(exp(3, 1, "g" * 40, 1.5, KEEP, parents=("b" * 40,)))   # island 1 finds something much better
    events = [e for e in Epochs(cfg, random.Random(0), baseline_total=3).after(state, 1, frozenset())
              if isinstance(e, Exchange)]
    assert len(events) == 1
    ex = events[0]
    assert (ex.cold, ex.hot, ex.accepted, ex.probability) == (0, 1, True, 1.0)
    assert ex.temperatures == temps[:2]
    state.apply(ex)
    assert state.islands[0].champion().commit == "g" * 40 and state.islands[0].head is None   # greedy: a member
    assert state.islands[1].head == "b" * 40        # the hot island walks on from the greedy one's champion
    assert "swapped" in events_row(ex) and from_json(to_json(ex)) == ex
    assert plan_exchanges(state, 1, temps, random.Random(0)) == []      # round 1 done; round 2 due after the next
    state.apply(exp(4, 2, "c" * 40, 1.9, KEEP, parents=("b" * 40,)))
    second = plan_exchanges(state, 1, temps, random.Random(0))
    assert [(e.round, e.cold, e.hot) for e in second] == [(2, 1, 2)]


def test_the_new_knobs_are_checked():
    cfg = OmegaConf.structured(Config)
    cfg.islands = 2
    for key, value in (("selection.t_max", 0.5), ("exchange.interval", -1), ("operators.perturb.hot_scale", 0.0),
                       ("selection.descend_window", -1), ("selection.descend_sigmas", 0.0)):
        bad = cfg.copy()
        OmegaConf.update(bad, key, value)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(bad, 2)


def test_a_hot_islands_prompt_says_it_explores_and_a_greedy_ones_does_not():
    from operators.candidate import ProposalContext
    from operators.prompts import noise_text

    hot = noise_text(ProposalContext(island=2, sigma=0.002, noise_k=1.0, temperature=10.0))
    assert "EXPLORES" in hot and "bold change that may regress" in hot and "0.020000" in hot
    assert "EXPLORES" not in noise_text(ProposalContext(island=0, sigma=0.002, noise_k=1.0))


def test_a_tempered_run_records_explores_and_exchanges_and_resumes_to_the_same_heads(tmp_path, landscape):
    """End to end (real Hydra, Ray, git, fitness subprocesses): hot islands step back (explore, a
    discard with the prefix in results.tsv), neighbours swap, each hot island's head has its ref,
    and a resumed run rebuilds the same heads from the journal and goes on."""
    import git

    from tests.test_engine import assert_records_agree_with_git, read_tsv, run_evolve

    run_dir = tmp_path / "hot"
    # The landscape's steps are hundreds of sigma, so at t_max=1000 island 1 (T=32) almost never
    # explores and island 2 takes a worse child with p ~ 0.7: a CI run whose island 2 drew few
    # children recorded no explore at all. At 1e6 both hot islands take nearly every worse child.
    common = ("+islands=3", "task=custom", f"task.dir={landscape}", "task.budget_s=0.1", "task.grace_s=20",
              "selection.t_max=1e6", "exchange.interval=2", "migration.interval=0", "reset.interval=0",
              "selection.descend_window=0",
              "selection.confirm_sigmas=0", "selection.implausible_sigmas=0", f"run.dir={run_dir}")
    first = run_evolve(*common, "run.max_experiments=14")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "temperature ladder" in first.stdout
    second = run_evolve(*common, "run.max_experiments=24")           # resume: replay, then 10 more
    assert second.returncode == 0, second.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 3)
    assert len(state.experiments) == 24
    explores = [e for e in state.experiments if e.status == EXPLORE]
    assert explores and all(e.island > 0 for e in explores)           # island 0 is greedy
    assert all(e.val_bpb > e.parent_bpb for e in explores if e.reason.startswith("explore: +"))
    rows = {r["commit"]: r for k in range(3) for r in read_tsv(run_dir / "islands" / str(k) / "results.tsv")}
    for e in explores:
        assert rows[e.commit[:7]]["status"] == "discard" and rows[e.commit[:7]]["description"].startswith("explore: ")
    assert any(isinstance(e, Exchange) for e in state.events)
    assert {"exchange"} <= {r["kind"] for r in read_tsv(run_dir / "events.tsv")}
    repo = git.Repo(run_dir / "lab")
    for isl in state.islands:
        ref = f"refs/evolve/{run_dir.name}/head/island-{isl.index}"
        held = repo.git.for_each_ref("--format=%(objectname)", ref).strip() or None
        assert held == isl.head, f"island {isl.index}: ref {held} != head {isl.head}"
    assert state.islands[0].head is None and any(isl.head for isl in state.islands[1:])


def test_a_bet_opens_spends_its_credit_on_its_lineage_and_closes_against_the_champion():
    from evolve.bets import parse_bet
    from evolve.records import Bet

    assert parse_bet("[bet deeper 3] double the depth") == ("deeper", 3)
    assert parse_bet("double the depth [bet deeper 3]") is None
    cfg = OmegaConf.structured(Config)
    cfg.islands = 2
    OmegaConf.update(cfg, "selection.t_max", 10.0)
    OmegaConf.update(cfg, "selection.bet_max_credit", 3)
    epochs = Epochs(cfg, random.Random(0), baseline_total=2)
    state = RunState(2, 4)
    baselines(state)                      # champion 2.0 on both islands
    b = "b" * 40

    def record(e):
        state.apply(e)
        for event in epochs.bets(state, e.island):
            state.apply(event)

    opener = Experiment(seq=2, island=1, island_seq=1, commit="o" * 40, parents=(b,), operator="llm_mutation",
                        description="[bet deeper 5] double the depth", outcome="ok", status=EXPLORE, val_bpb=2.2,
                        parent_bpb=2.0, seed=0, wall_s=1.0, parent=b)
    record(opener)
    bet = state.islands[1].bet
    assert (bet.name, bet.credit, bet.spent, bet.champion_bpb) == ("deeper", 3, 1, 2.0)   # credit capped at 3
    assert state.islands[1].head == "o" * 40
    record(exp(3, 1, "p" * 40, 2.1, EXPLORE, parents=("o" * 40,)))
    record(exp(4, 0, "q" * 40, 1.99, KEEP, parents=(b,)))            # another island's experiment spends nothing
    assert state.islands[1].bet.spent == 2
    record(exp(5, 1, "r" * 40, 1.95, EXPLORE, parents=("p" * 40,)))  # third of three: best 1.95 < 2.0
    closed = [e for e in state.events if isinstance(e, Bet) and e.action == "close"]
    assert len(closed) == 1 and closed[0].outcome == "kept" and closed[0].best_commit == "r" * 40
    assert state.islands[1].bet is None and state.islands[1].champion().commit == "r" * 40
    assert "closed: kept" in events_row(closed[0]) or "kept" in events_row(closed[0])
    # the journal alone rebuilds it
    replayed = RunState.replay(2, 4, [from_json(to_json(r)) for r in
                                      sorted(state.experiments + state.events,
                                             key=lambda r: (getattr(r, "seq", None) if isinstance(r, Experiment)
                                                            else r.after_seq if hasattr(r, "after_seq") else -1,
                                                            not isinstance(r, Experiment)))])
    assert replayed.islands[1].champion().commit == "r" * 40 and replayed.islands[1].head == state.islands[1].head
    # a bet that does not beat the champion is abandoned: parents come from the population again
    record(Experiment(seq=6, island=1, island_seq=4, commit="s" * 40, parents=("r" * 40,), operator="llm_mutation",
                      description="[bet wide 1] widen", outcome="ok", status=EXPLORE, val_bpb=2.5, parent_bpb=1.95,
                      seed=0, wall_s=1.0, parent="r" * 40))
    last = [e for e in state.events if isinstance(e, Bet)][-1]
    assert (last.name, last.action, last.outcome) == ("wide", "close", "abandoned")
    assert state.islands[1].head is None


def test_a_row_that_may_never_be_admitted_spends_a_bets_credit_but_is_never_its_best():
    from dataclasses import replace

    from evolve.bets import OpenBet, spend

    bet = OpenBet("deeper", 3, 1, "o" * 40, 2.2, 2.0, 2)
    stale = replace(exp(3, 1, "s" * 40, 1.5, DISCARD, parents=("o" * 40,)),
                    reason="not admitted: island 1 received migrants from island 0 while it ran (epoch 0 -> 1)")
    outlier = replace(exp(4, 1, "u" * 40, 1.4, KEEP, parents=("o" * 40,)), outlier=True)
    after = spend(spend(bet, stale), outlier)
    assert after.spent == 3 and (after.best_commit, after.best_bpb) == ("o" * 40, 2.2)
    assert spend(bet, exp(5, 1, "t" * 40, 2.1, EXPLORE, parents=("o" * 40,))).best_commit == "t" * 40


def test_an_llm_bet_end_to_end_with_the_scripted_server(tmp_path):
    """python -m evolve llm=local against tests/llm_server.py: the hot island's model is told it
    explores and how to bet, opens a bet, its lineage is exempt while the credit lasts, the bet is
    closed and its story reaches the island's next prompts; the greedy island never bets."""
    import os
    import shutil
    import subprocess
    import sys

    from evolve.records import Bet
    from tests.llm_server import Reply, ScriptedLLM
    from tests.test_engine import LANDSCAPE, ROOT, assert_records_agree_with_git, read_tsv
    from tests.test_engine_llm import ONLY_LLM_MUTATION, whole_file

    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "bets"
    lrs = ["0.003", "0.0025", "0.002", "0.0015", "0.001", "0.0008", "0.0006", "0.0005", "0.0004", "0.0003"]
    with ScriptedLLM() as server:
        server.script(*[Reply(whole_file(f"[bet step{i} 2] learning rate {lr}", lr)) for i, lr in enumerate(lrs)])
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "+islands=2", "task=custom", f"task.dir={task}", "task.budget_s=0.1",
             "run.max_experiments=10", f"run.dir={run_dir}", "llm=local", f"llm.api_base={server.api_base}",
             "llm.model=openai/test-model", "llm.num_retries=0", "llm.timeout_s=20", "llm.prefetch=false",
             "selection.t_max=10", "selection.bet_max_credit=2", "migration.interval=0", "reset.interval=0",
             "selection.descend_window=0",
             "selection.confirm_sigmas=0", "selection.implausible_sigmas=0", *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"})
        prompts = server.prompts()
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    bets = [e for e in state.events if isinstance(e, Bet)]
    assert bets and all(b.island == 1 for b in bets), bets          # island 0 is greedy: it never bets
    opened = [b for b in bets if b.action == "open"]
    closed = [b for b in bets if b.action == "close"]
    assert opened and closed and closed[0].name == opened[0].name and closed[0].outcome in ("kept", "abandoned")
    # while a bet was open, its lineage was never discarded
    mine = [e for e in state.experiments if e.island == 1 and not e.is_baseline]
    first = next(i for i, e in enumerate(mine) if e.seq == opened[0].after_seq)
    assert all(e.status in ("explore", "keep") for e in mine[first:first + 2])
    assert any(e.reason.startswith("bet ") for e in mine)
    # the hot island's prompts say it explores, how to bet, and (after the opening) the bet's story
    hot = [p for p in prompts if "EXPLORES" in p]
    assert hot and all("[bet NAME N]" in p for p in hot)
    assert any(f"bet {opened[0].name} is OPEN" in p for p in hot)
    assert not any("EXPLORES" in p for p in prompts if p not in hot)
    assert "bet" in {r["kind"] for r in read_tsv(run_dir / "events.tsv")}


def test_descending_holds_while_the_run_best_gains_enough_over_the_window():
    from evolve.tempering import descending, run_best

    state = RunState(2, 4)
    baselines(state)                                   # 2 baselines at 2.0; sigma 0.01
    b = "b" * 40
    assert descending(state.experiments, SIGMA, 4, 2.0)             # nothing judged yet: descend first
    assert not descending(state.experiments, SIGMA, 0, 2.0)         # window 0: never (the plain ladder)
    assert not descending(state.experiments, None, 4, 2.0)          # no noise floor yet
    values = [1.95, 2.1, 1.94, 2.2, 2.3, 2.2, 1.93, 2.4]
    for i, v in enumerate(values):
        state.apply(exp(2 + i, i % 2, f"{i:040d}", v, KEEP if v < 2.0 else DISCARD, parents=(b,)))
    assert run_best(state.experiments) == pytest.approx(1.93)
    assert run_best(state.experiments, 4) == pytest.approx(1.95)
    # over the last 4 experiments the best went 1.94 -> 1.93: 1 sigma, less than 2
    assert not descending(state.experiments, SIGMA, 4, 2.0)
    assert descending(state.experiments, SIGMA, 4, 0.5)
    # over seq 2..5 (the first 6 experiments) the best went 2.0 -> 1.94
    assert descending(state.experiments, SIGMA, 4, 2.0, upto=6)      # 2.0 -> 1.94 over seq 2..5
    assert descending(state.experiments, SIGMA, 8, 2.0)              # 2.0 -> 1.93 over the whole run


def test_a_stall_restarts_the_hot_islands_from_the_unmodified_train_py_once():
    from evolve.epochs import plan_restart

    state = RunState(3, 4)
    baselines(state)
    b, temps = "b" * 40, ladder(3, 100.0)
    events = []

    def record(e):       # what Epochs.after does with selection.descend_window=1 (x 3 islands)
        state.apply(e)
        event = plan_restart(state, temps, 3, 2.0)
        if event is not None:
            state.apply(event)
            events.append(event)

    record(exp(3, 2, "g" * 40, 1.5, KEEP, parents=(b,)))       # hot island 2 finds the champion while descending
    record(exp(4, 0, "h" * 40, 1.45, KEEP, parents=("g" * 40,)))
    record(exp(5, 1, "i" * 40, 1.44, KEEP, parents=("h" * 40,)))
    assert not [e for e in events if isinstance(e, Reset)]      # 1.5 -> 1.44 over 3: still descending
    record(exp(6, 0, "j" * 40, 1.60, DISCARD, parents=("i" * 40,)))
    record(exp(7, 1, "k" * 40, 1.60, DISCARD, parents=("i" * 40,)))
    restarts = [e for e in events if isinstance(e, Reset)]
    assert len(restarts) == 1 and restarts[0].restart and restarts[0].round == 0
    # island 0 holds none of the champion i (island 1 found it): it takes it; the hot islands restart
    assert restarts[0].resets == ((0, 1, "i" * 40, 1.44), (1, -1, b, 2.0), (2, -1, b, 2.0))
    assert state.islands[0].champion().commit == "i" * 40
    assert [m.commit for m in state.islands[1].population.members] == [b] and state.islands[2].head == b
    assert state.islands[0].head is None                                     # the greedy island has none
    assert state.champion().commit == "i" * 40 and state.reset_rounds == 0      # nothing lost, no reset round used
    assert "restart (descent stalled)" in events_row(restarts[0]) and from_json(to_json(restarts[0])) == restarts[0]
    record(exp(8, 2, "l" * 40, 1.70, DISCARD, parents=(b,)))
    assert len([e for e in events if isinstance(e, Reset)]) == 1            # once per stall
    assert plan_restart(state, temps, 0, 2.0) is None                         # off
    assert plan_restart(state, ladder(3, 0.0), 3, 2.0) is None                # no ladder: nothing to restart


def test_the_greedy_island_and_every_island_while_descending_build_on_the_run_champion(tmp_path):
    from evolve.proposer import Proposer

    cfg = OmegaConf.structured(Config)
    cfg.islands = 2
    OmegaConf.update(cfg, "selection.descend_window", 2)
    proposer = Proposer(None, cfg, None, random.Random(0), tmp_path, "", ladder(2, 100.0))
    state = RunState(2, 4)
    baselines(state)
    b = "b" * 40
    state.apply(exp(2, 1, "g" * 40, 1.5, KEEP, parents=(b,)))
    assert proposer._draw(state, 0).commit == "g" * 40 and proposer._draw(state, 1).commit == "g" * 40
    for i in range(3, 7):
        state.apply(exp(i, 1, f"{i:040d}", 1.9, DISCARD, parents=("g" * 40,)))
    state.apply(exp(7, 1, "w" * 40, 2.3, EXPLORE, parents=(b,)))   # stalled: island 1 walks its own head
    assert proposer._draw(state, 0).commit == "g" * 40 and proposer._draw(state, 1).commit == "w" * 40
    OmegaConf.update(cfg, "selection.descend_window", 0)            # off: the ladder as before
    plain = Proposer(None, cfg, None, random.Random(0), tmp_path, "", ladder(2, 100.0))
    assert plain._draw(state, 1).commit == "w" * 40
    assert plain._draw(state, 0).commit in {m.commit for m in state.islands[0].population.members}


def test_a_descend_first_run_restarts_its_hot_islands_and_resumes_to_the_same_heads(tmp_path, landscape):
    """End to end: with selection.descend_window the run descends greedily first; once it stalls
    (here at once: a gain of 1000 sigma per window is never seen) the hot islands restart from the
    unmodified train.py (a reset row, restart), their heads have refs, and a resumed run rebuilds
    the same state from the journal."""
    import git

    from tests.test_engine import assert_records_agree_with_git, read_tsv, run_evolve

    run_dir = tmp_path / "descend"
    common = ("+islands=3", "task=custom", f"task.dir={landscape}", "task.budget_s=0.1", "task.grace_s=20",
              "selection.t_max=100", "selection.descend_window=1", "selection.descend_sigmas=1000",
              "migration.interval=0", "reset.interval=0", "selection.confirm_sigmas=0",
              "selection.implausible_sigmas=0", f"run.dir={run_dir}")
    first = run_evolve(*common, "run.max_experiments=12")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_evolve(*common, "run.max_experiments=18")
    assert second.returncode == 0, second.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 3)
    assert len(state.experiments) == 18
    restarts = [e for e in state.events if isinstance(e, Reset) and e.restart]
    assert restarts and {i for i, d, *_ in restarts[0].resets if d < 0} == {1, 2}
    base = state.experiments[0].commit
    assert all(c == base for i, d, c, _ in restarts[0].resets if d < 0)
    assert any("restart (descent stalled)" in r["detail"] for r in read_tsv(run_dir / "events.tsv"))
    # before the restart every child was drawn from the run's champion at T = 0: nothing explored
    assert not [e for e in state.experiments if e.status == EXPLORE and e.seq <= restarts[0].after_seq]
    repo = git.Repo(run_dir / "lab")
    for isl in state.islands:
        ref = f"refs/evolve/{run_dir.name}/head/island-{isl.index}"
        held = repo.git.for_each_ref("--format=%(objectname)", ref).strip() or None
        assert held == isl.head, f"island {isl.index}: ref {held} != head {isl.head}"
    assert state.islands[0].head is None
