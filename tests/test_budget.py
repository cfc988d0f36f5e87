"""The time budget is enforced (island/budget.py): rebinding it, training past it, or training in
phases the clock does not count makes a run over-budget. Island-level cases run a real train.py
in a real git checkout through island.actor.Island (without Ray)."""
from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import git
import pytest

from evolve.budget import baseline_uncounted, max_uncounted_s
from evolve.records import Experiment
from evolve.journal import results_row
from evolve.selection import decide
from island.actor import Island, IslandSettings, Job
from island.budget import budget_rebinding, over_budget, uncounted_limit
from island.fitness import Status

PREPARE = textwrap.dedent('''\
    """A cheap task with the anchor's habits: the budget lives here and train.py imports it."""
    import os

    TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "300"))


    def evaluate_bpb(model, tokenizer, batch_size):
        return 1.0 + model / 100.0
    ''')

# Trains (busy-waits) for TIME_BUDGET counted seconds after `{before}` uncounted seconds of
# "warm-up"; prints the anchor's padded summary with the time it counted.
TRAIN = textwrap.dedent('''\
    import time
    from prepare import TIME_BUDGET, evaluate_bpb

    WARMUP_S = {before}
    time.sleep(WARMUP_S)                       # not counted, like the anchor's first 11 steps
    {extra}
    t0 = time.time()
    steps = 0
    while time.time() - t0 < TIME_BUDGET:
        steps += 1
    training = time.time() - t0
    val_bpb = evaluate_bpb(steps % 7, None, 8)
    print("---")
    print(f"val_bpb:          {{val_bpb:.6f}}")
    print(f"training_seconds: {{training:.1f}}")
    ''')


def train(before: float = 0.0, extra: str = "") -> str:
    return TRAIN.format(before=before, extra=extra)


@pytest.fixture
def island(make_git_repo, tmp_path):
    """An Island on a checkout of the cheap task, budget 0.3 s, tolerance 5% + 0.2 s."""
    root = make_git_repo({"prepare.py": PREPARE, "train.py": train()}, name="task")

    def make(**settings) -> tuple[Island, str]:
        values = dict(budget_s=0.3, grace_s=20, pinned_prepare_sha256=hashlib.sha256(PREPARE.encode()).hexdigest(),
                      log_dir=str(tmp_path / "logs"), pid_dir=str(tmp_path / "pids"), num_threads=1,
                      budget_tolerance=0.05, budget_tolerance_s=0.2, cache_dir=str(tmp_path / "cache"))
        values.update(settings)
        return Island(0, str(root), "", IslandSettings(**values)), git.Repo(root).head.commit.hexsha

    return make


def job(parent: str, source: str | None, n: int = 0, **kw) -> Job:
    return Job(job_id=f"island-0/{n:04d}", island=0, parent=parent, source=source, seed=n, **kw)


REBINDINGS = {
    "double it": "TIME_BUDGET = 2 * TIME_BUDGET",
    "augmented": "TIME_BUDGET += 60",
    "tuple": "WARM, TIME_BUDGET = 0, 600",
    "starred": "*_, TIME_BUDGET = [1, 2, 600]",
    "walrus": "if (TIME_BUDGET := 600): pass",
    "for target": "for TIME_BUDGET in (600,): pass",
    "with target": "import contextlib\nwith contextlib.nullcontext(600) as TIME_BUDGET: pass",
    "global in a function": "def longer():\n    global TIME_BUDGET\n    TIME_BUDGET = 600\nlonger()",
    "a parameter": "def loop(TIME_BUDGET=600): return TIME_BUDGET",
    "module attribute": "import prepare\nprepare.TIME_BUDGET = 600",
    "setattr on the module": "import prepare as p\nsetattr(p, 'TIME_BUDGET', 600)",
    "globals()": "globals()['TIME_BUDGET'] = 600",
    "re-imported": "from os import cpu_count as TIME_BUDGET",
    "deleted": "del TIME_BUDGET",
}


@pytest.mark.parametrize("case", list(REBINDINGS))
def test_rebinding_the_imported_budget_is_found(case):
    reason = budget_rebinding(train(extra=REBINDINGS[case]))
    assert reason and ("TIME_BUDGET" in reason or "prepare" in reason), reason
    assert "line" in reason


def test_reading_the_budget_or_keeping_an_own_one_is_not_rebinding():
    assert budget_rebinding(train()) is None
    assert budget_rebinding(train(extra="HALF = TIME_BUDGET / 2\nprint(TIME_BUDGET)")) is None
    assert budget_rebinding("TIME_BUDGET = 600\n") is None           # no import: the clock check judges it
    assert budget_rebinding("from prepare import *\nprint(TIME_BUDGET)\n") is None
    assert "rebinds TIME_BUDGET" in budget_rebinding("from prepare import *\nTIME_BUDGET = 600\n")
    assert "B (prepare's TIME_BUDGET)" in budget_rebinding("from prepare import TIME_BUDGET as B\nB *= 2\n")
    assert budget_rebinding("def broken(:\n") is None                # the compile guard reports that
    for shipped in ("evolve/task/train.py", "tests/anchor/cpu/train.py", "tests/anchor/upstream/train.py"):
        assert budget_rebinding((Path(__file__).resolve().parents[1] / shipped).read_text()) is None, shipped


def test_over_budget_rules():
    assert over_budget({"training_seconds": 300.1}, 326.0, 300) is None
    assert over_budget({"training_seconds": 320.0}, 346.0, 300) is None         # 300 * 1.05 + 5 = 320
    reason = over_budget({"training_seconds": 320.2}, 346.0, 300)
    assert reason == "trained 320.2 s, budget 300 s (allowed up to 320.0 s: +5% +5 s)"
    assert over_budget({}, 9999.0, 300) is None                                   # nothing to judge by
    assert over_budget({"training_seconds": 300.0}, 400.0, 300, max_uncounted_s=100.0) is None
    reason = over_budget({"training_seconds": 300.0}, 400.5, 300, max_uncounted_s=100.0)
    assert reason.startswith("100.5 s of the run were not counted as training")
    assert uncounted_limit([25.8, 30.0]) == 30.0 * 2 + 30.0
    assert uncounted_limit([], 1.0, 30.0) is None


def test_the_islands_baselines_set_the_uncounted_limit():
    def exp(seq, island, wall, training=None, operator="baseline", outcome="ok"):
        metrics = {} if training is None else {"training_seconds": training}
        return Experiment(seq=seq, island=island, island_seq=0, commit="c" * 40, parents=(), operator=operator,
                          description="", outcome=outcome, status="keep", val_bpb=1.0, parent_bpb=None,
                          seed=seq, wall_s=wall, metrics=metrics)

    runs = [exp(0, 0, 330.0, 300.0), exp(1, 1, 340.0, 300.0), exp(2, 1, 360.0, 300.0),
            exp(3, 0, 900.0, 300.0, operator="perturb"), exp(4, 2, 20.0, None, outcome="crash")]
    assert baseline_uncounted(runs, 0) == [30.0]
    assert baseline_uncounted(runs, 1) == [40.0, 60.0]
    assert baseline_uncounted(runs, 2) == [30.0, 40.0, 60.0]      # its baseline crashed: the run's
    assert max_uncounted_s(runs, 1) == 60.0 * 2 + 30.0
    assert max_uncounted_s(runs, 0, margin=0.5, margin_s=10.0) == 55.0
    assert max_uncounted_s([], 0) is None


def test_honest_run_passes_and_a_rebinding_candidate_never_runs(island):
    isl, head = island()
    honest = isl.evaluate(job(head, train(), 1)).result
    assert honest.status is Status.OK, honest
    m = isl.evaluate(job(head, train(extra="TIME_BUDGET = 2 * TIME_BUDGET"), 2))
    r = m.result
    assert r.status is Status.OVER_BUDGET and r.status == "over-budget", r
    assert r.reason.startswith("train.py rebinds TIME_BUDGET, the budget it imports from prepare.py (line 6)")
    assert r.val_bpb is None and r.wall_s == 0.0
    assert Path(r.log_path).read_text().startswith("over-budget, not run: ")
    # recorded like any failed run: crash in results.tsv, outcome over-budget elsewhere
    assert decide(r.status.value, r.val_bpb, 1.0, 0.0, 1.0) == "crash"


def test_training_past_the_budget_is_over_budget(island):
    isl, head = island()
    # its own budget under another name: no rebinding, but the clock it reports gives it away
    longer = train().replace("while time.time() - t0 < TIME_BUDGET:", "while time.time() - t0 < 4 * TIME_BUDGET:")
    r = isl.evaluate(job(head, longer, 1)).result
    assert r.status is Status.OVER_BUDGET, r
    assert r.reason.startswith("trained 1.2 s, budget 0.3 s (allowed up to 0.5 s")
    assert r.val_bpb is None and r.metrics["val_bpb"] > 0 and "val_bpb:" in r.log_tail


def test_uncounted_training_is_over_budget_against_the_islands_limit(island):
    isl, head = island()
    hidden = train(before=2.5)   # 2.5 s of work before the clock starts
    assert isl.evaluate(job(head, hidden, 1)).result.status is Status.OK     # no limit known yet
    r = isl.evaluate(job(head, hidden, 2, max_uncounted_s=1.5)).result
    assert r.status is Status.OVER_BUDGET, r
    assert "not counted as training" in r.reason and "allows 1.5 s" in r.reason


def test_an_unmodified_train_py_over_budget_says_what_to_fix(island):
    isl, head = island(budget_s=0.05, budget_tolerance=0.0, budget_tolerance_s=0.0)
    slow = train().replace("while time.time() - t0 < TIME_BUDGET:", "while time.time() - t0 < 1.0:")
    repo = git.Repo(isl.checkout)
    (isl.checkout / "train.py").write_text(slow)
    repo.git.commit("-am", "own budget of 1 s", author="t <t@example.invalid>")
    r = isl.evaluate(job(repo.head.commit.hexsha, None, 1)).result
    assert r.status is Status.OVER_BUDGET, r
    assert "unmodified train.py: set task.budget_s to the budget its prepare.py uses" in r.reason


def test_enforce_budget_off_lets_it_run(island):
    isl, head = island(enforce_budget=False)
    r = isl.evaluate(job(head, train(extra="TIME_BUDGET = 2 * TIME_BUDGET"), 1)).result
    assert r.status is Status.OK and r.metrics["training_seconds"] == pytest.approx(0.6, abs=0.15), r


def test_over_budget_rows_are_crashes_in_results_tsv():
    exp = Experiment(seq=3, island=0, island_seq=3, commit="abcdef1234", parents=("p",), operator="llm_mutation",
                     description="TIME_BUDGET = 2 * TIME_BUDGET", outcome="over-budget",
                     status=decide("over-budget", None, 1.0, 0.001, 1.0), val_bpb=None, parent_bpb=1.0, seed=0,
                     wall_s=0.0, metrics={"val_bpb": 0.9})
    assert results_row(exp) == "abcdef1\t0.000000\t0.0\tcrash\tTIME_BUDGET = 2 * TIME_BUDGET\n"
