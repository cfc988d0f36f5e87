"""Promotion (issue #16 item 3): a champion trained at promote.factor x the budget next to the base
commit, through real runs of `python -m evolve`, and the pure choice of which champion is due."""
from __future__ import annotations

from pathlib import Path

from evolve.journal import Journal
from evolve.population import Member, Population
from evolve.promotion import due_promotion
from evolve.records import Promotion
from evolve.state import RunState
from tests.test_engine import read_tsv, run_evolve


def _state_with_champions(champions: dict[int, tuple[str, float]], experiments: int) -> RunState:
    state = RunState(3, 4)
    for k, (commit, value) in champions.items():
        state.islands[k].population = Population(4)
        state.islands[k].population.add(Member(commit, [value], k, 0))
    state.experiments = [None] * experiments   # only the count matters to due_promotion
    return state


def test_due_promotion_picks_the_best_fresh_champion_and_waits_its_turn():
    state = _state_with_champions({0: ("base", 1.0), 1: ("a", 0.9), 2: ("b", 0.8)}, experiments=9)
    assert due_promotion(state, 10, "base") is None           # 9 experiments: not yet
    state.experiments.append(None)
    assert due_promotion(state, 10, "base") == "b"            # the best, never the base
    state.promotions.append(Promotion(2, "b", "base", 1, 4, 4.0, -0.2, 0.7, 0.9, -0.2, True, False, "", 10.0,
                                      after_seq=9))
    assert due_promotion(state, 10, "base") is None           # 10 more experiments first
    state.experiments.extend([None] * 10)
    assert due_promotion(state, 10, "base") == "a"            # b was promoted already
    assert due_promotion(state, 0, "base") is None            # promote.every=0: never
    state.promotions.append(Promotion(1, "a", "base", 1, 4, 4.0, -0.1, 0.9, 0.9, 0.0, False, True, "", 1.0,
                                      after_seq=19))
    state.islands[0].population.add(Member("c", [0.5], 0, 20))
    state.experiments.extend([None] * 10)
    assert due_promotion(state, 10, "base") is None           # the task ignored the longer budget: off


def test_champions_are_promoted_apart_from_the_experiment_limit(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "run"
    done = run_evolve("+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.1", "task.grace_s=20",
                      "llm=none", "run.max_experiments=16", "promote.every=6", "promote.factor=4", f"run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    records = Journal(run_dir, 2).load()
    experiments = [r for r in records if r.kind == "experiment"]
    promotions = [r for r in records if isinstance(r, Promotion)]
    assert len(experiments) == 16                                # promotions do not count against the limit
    assert 1 <= len(promotions) <= 2, promotions
    base = experiments[0].commit
    state = RunState.replay(2, 4, records)
    for p in promotions:
        assert p.base == base and p.commit != base and p.budget_s == 0.4 and p.factor == 4
        assert p.champion_bpb is not None and p.base_bpb is not None and not p.budget_ignored
        assert p.long_delta == p.champion_bpb - p.base_bpb and p.held == (p.long_delta < 0)
        # the landscape does not depend on the budget, so a real gain holds at 4x
        assert p.short_delta < 0 and p.held
        assert p.commit in state.measurements
    assert len({p.commit for p in promotions}) == len(promotions)
    rows = [e for e in read_tsv(run_dir / "events.tsv") if e["kind"] == "promotion"]
    assert len(rows) == len(promotions) and "held" in rows[0]["detail"] and "at 0.4 s (x4" in rows[0]["detail"]
    # each long run left its log: the champion's and the base's, with the longer budget
    logs = sorted((run_dir / "logs").rglob("*-base.log"))
    assert len(logs) == len(promotions) and "training_seconds: 0.4" in logs[0].read_text()
    assert "promotions: " in done.stdout and "held at the longer budget" in done.stdout


def test_a_task_that_ignores_the_longer_budget_stops_promotions(tmp_path: Path, landscape: Path):
    prepare = landscape / "prepare.py"
    prepare.write_text(prepare.read_text().replace('float(os.environ.get("EVOLVE_BUDGET_S", "0.2"))', "0.1"))
    run_dir = tmp_path / "run"
    done = run_evolve("+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.1", "task.grace_s=20",
                      "llm=none", "run.max_experiments=16", "promote.every=4", f"run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    promotions = [r for r in Journal(run_dir, 2).load() if isinstance(r, Promotion)]
    assert len(promotions) == 1 and promotions[0].budget_ignored and not promotions[0].held
    assert "does not follow EVOLVE_BUDGET_S" in promotions[0].reason
