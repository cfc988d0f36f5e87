"""Early stop from training curves (issue #16): the curve reader on real log shapes, the rule, the
curve book, a real fitness subprocess cut early, and whole runs through `python -m evolve`."""
from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from evolve.curves import CurveBook
from evolve.journal import results_row
from evolve.records import Experiment
from island.curve import CurveReader, EarlyStop, on_grid, read_curve, thin
from island.fitness import Status, run_fitness
from tests.test_engine import read_tsv, run_evolve

ROOT = Path(__file__).resolve().parents[1]
CURVES_TASK = ROOT / "tests" / "tasks" / "curves"
ANCHOR_TRAIN = ROOT / "tests" / "anchor" / "upstream" / "train.py"


# ---- reading curves -------------------------------------------------------------------------------
def test_reader_reads_our_log_and_the_anchors_format_as_printed():
    ours = "device: cpu\n\rstep 00001 (  0.0%) | loss 10.3811 | lrm 1.00\rstep 00002 ( 12.5%) | loss 9.9000 | lrm"
    reader = CurveReader()
    assert reader.feed(ours) == [(1, 0.0, 10.3811)]          # step 2's line is still being written
    assert reader.feed(" 1.00 | dt 5ms   \n") == [(2, 0.125, 9.9)]
    # the anchor's own print statement (tests/anchor/upstream/train.py), with its `loss:` and `,` in tok/sec
    line = next(l for l in ANCHOR_TRAIN.read_text().splitlines() if 'print(f"\\rstep' in l)
    assert "loss: {debiased_smooth_loss:.6f}" in line
    anchor = ("\rstep 00012 (4.0%) | loss: 3.456789 | lrm: 1.00 | dt: 312ms | tok/sec: 1,048,576 | mfu: 39.8% | "
              "epoch: 1 | remaining: 288s    \rstep 00013 (4.3%) | loss: 3.401234 | lrm: 1.00 | dt: 310ms | "
              "tok/sec: 1,050,000 | mfu: 39.9% | epoch: 1 | remaining: 287s    ")
    assert read_curve(anchor) == [(12, 0.04, 3.456789), (13, 0.043, 3.401234)]


def test_custom_pattern_and_a_bad_one_names_the_key(tmp_path: Path):
    text = "it=10 frac=0.25 train_loss=2.5\nit=20 frac=0.50 train_loss=2.0\n"
    pattern = r"it=(?P<step>\d+) frac=(?P<fraction>[0-9.]+) train_loss=(?P<loss>[0-9.]+)"
    assert read_curve(text, pattern) == [(10, 0.25, 2.5), (20, 0.5, 2.0)]
    bad = run_evolve("+islands=2", f"run.dir={tmp_path / 'run'}", "llm=none", "task.curve_pattern='step (\\d+)'")
    assert bad.returncode == 2
    assert "task.curve_pattern" in bad.stderr and "(?P<loss>" in bad.stderr
    assert not (tmp_path / "run" / "run.json").exists()


def test_thin_keeps_the_last_point_and_rounds():
    points = [(i, i / 1000, 3.0 + 1 / (i + 1)) for i in range(1000)]
    kept = thin(points, 50)
    assert len(kept) == 50 and kept[-1][0] == 999 and kept[0][0] == 0


# ---- the rule ---------------------------------------------------------------------------------------
def _curve(final: float, upto: float = 1.0, n: int = 100) -> list[tuple[int, float, float]]:
    return [(i, i / n, final + 2 * (1 - i / n)) for i in range(1, int(round(upto * n)) + 1)]


def _rule(k: float = 3.0, min_fraction: float = 0.3, noise: float = 0.01) -> EarlyStop:
    ref = on_grid(_curve(1.0))
    return EarlyStop(reference=tuple(ref.items()), noise=tuple((g, noise) for g in ref), k=k, min_fraction=min_fraction)


def test_rule_stops_a_clear_loser_only_after_min_fraction():
    rule = _rule()
    loser = _curve(1.1)            # 10 noise sd worse everywhere
    assert rule.check(loser[:25]) is None                   # 25% of the budget: too early to judge
    why = rule.check(loser[:31])
    assert why and why.startswith("at 30% of the budget") and "10.0 noise sd worse" in why
    assert rule.check(_curve(1.02)) is None                 # 2 sd worse: within k=3
    assert rule.check(_curve(0.9)) is None                  # better: never stopped
    assert _rule(k=12).check(loser) is None


# ---- the curve book -----------------------------------------------------------------------------------
def test_curve_book_builds_the_rule_from_parent_and_baselines_and_survives_reload(tmp_path: Path):
    book = CurveBook(tmp_path)
    assert book.early_stop_rule("base", "base", 3, 0.3, None) is None        # no curves yet
    book.add("base", 1, _curve(1.00), seq=0)
    assert book.early_stop_rule("base", "base", 3, 0.3, None) is None        # one baseline: no spread
    book.add("base", 2, _curve(1.02), seq=1)
    book.add("child", 3, _curve(1.5, upto=0.4), seq=2, stopped_at=0.4)      # a stopped curve: never a reference
    assert book.early_stop_rule("child", "base", 3, 0.3, None) is None
    rule = book.early_stop_rule("base", "base", 3, 0.3, None)
    reference, noise = dict(rule.reference), dict(rule.noise)
    assert reference[0.5] == pytest.approx(2.01, abs=1e-6)                  # the mean of both baselines at 50%
    assert noise[0.5] == pytest.approx(0.02 / 2 ** 0.5 * (1 + 1 / 2) ** 0.5, rel=1e-6)
    with open(tmp_path / "curves.jsonl", "a") as f:
        f.write('{"commit": "cut by a ki')                                    # a torn last line
    again = CurveBook(tmp_path)
    assert dict(again.early_stop_rule("base", "base", 3, 0.3, None).noise) == noise
    assert again.stopped == {("child", 3): 0.4} and again.seqs[("child", 3)] == 2


# ---- a real fitness run -------------------------------------------------------------------------------
def test_a_fitness_run_is_cut_early_and_keeps_its_curve(tmp_path: Path):
    task = tmp_path / "task"
    shutil.copytree(CURVES_TASK, task)
    (task / "train.py").write_text((task / "train.py").read_text().replace("WIDTH = 1.0", "WIDTH = 2.0"))
    reference = [(i, f, 1.0 + 2 * (1 - f)) for i, f in ((s, s / 40) for s in range(1, 41))]
    grid = on_grid(reference)
    rule = EarlyStop(reference=tuple(grid.items()), noise=tuple((g, 0.01) for g in grid), k=3, min_fraction=0.3)
    t0 = time.monotonic()
    result = run_fitness(task, budget_s=4, grace_s=10, log_path=tmp_path / "run.log", seed=1,
                         early_stop=rule, sandbox="none", evaluator=None)
    assert result.status is Status.EARLY_STOPPED and result.val_bpb is None
    assert time.monotonic() - t0 < 3.5                       # well before the 4 s budget ended
    cut = re.match(r"at (\d+)% of the budget: loss [0-9.]+ against the parent's [0-9.]+", result.reason)
    assert cut and 30 <= int(cut.group(1)) <= 60, result.reason   # the log is read twice a second (CURVE_POLL_S)
    assert 0.3 <= result.stopped_at < 0.6 and result.curve[-1][1] == result.stopped_at
    # the same file without a rule runs to the end, its whole curve kept
    full = run_fitness(task, budget_s=1, grace_s=10, log_path=tmp_path / "full.log", seed=1, sandbox="none",
                       evaluator=None)
    assert full.ok and full.curve[-1][1] == 1.0 and len(full.curve) == 40


def test_results_tsv_row_of_an_early_stop_is_a_discard_the_notebook_leaves_out(tmp_path: Path):
    exp = Experiment(seq=3, island=0, island_seq=2, commit="abcdef123", parents=("p",), operator="perturb",
                     description="WIDTH 1 -> 2", outcome="early-stopped", status="discard", val_bpb=None,
                     parent_bpb=1.0, seed=1, wall_s=1.0, stopped_at=0.35)
    row = results_row(exp)
    assert row == "abcdef1\t\t0.0\tdiscard\tearly-stopped at 35%: WIDTH 1 -> 2\n"
    path = tmp_path / "results.tsv"
    path.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n" + row)
    df = pd.read_csv(path, sep="\t")
    assert pd.to_numeric(df["val_bpb"], errors="coerce").isna().all()   # as analysis.ipynb reads it


# ---- whole runs -------------------------------------------------------------------------------------
@pytest.fixture
def curves_task(tmp_path) -> Path:
    task = tmp_path / "task"
    shutil.copytree(CURVES_TASK, task)
    return task


def test_islands_stop_losers_early_and_ratchet_never_does(tmp_path: Path, curves_task: Path):
    common = ("task=custom", f"task.dir={curves_task}", "task.budget_s=2", "task.grace_s=20", "llm=none",
              "task.sandbox=none", "task.evaluator=null", "early_stop.enabled=true")
    run_dir = tmp_path / "islands"
    done = run_evolve("+islands=2", f"run.dir={run_dir}", "run.max_experiments=8",
                      "selection.min_baselines=4", *common)   # 4 baselines, 4 candidates
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_tsv(run_dir / "experiments.tsv")
    stopped = [r for r in rows if r["outcome"] == "early-stopped"]
    # the base is the landscape's optimum, so nearly every change is far worse, and shows it early
    assert len(stopped) >= 3, [(r["outcome"], r["description"]) for r in rows]
    assert all(r["outcome"] == "ok" for r in rows if r["operator"] == "baseline")
    full_run_s = min(float(r["wall_s"]) for r in rows if r["operator"] == "baseline")
    assert all(r["status"] == "discard" and r["val_bpb"] == "" and float(r["wall_s"]) < full_run_s for r in stopped)
    assert sum(float(r["wall_s"]) for r in stopped) < 0.8 * full_run_s * len(stopped)
    curves = [json.loads(line) for line in (run_dir / "curves.jsonl").read_text().splitlines()]
    by_seq = {c["seq"]: c for c in curves}
    assert len(curves) == len(rows)                                            # every run's curve is kept
    for r in stopped:
        c = by_seq[int(r["seq"])]
        assert c["stopped_at"] is not None and 0.3 <= c["points"][-1][1] < 1.0
    results = [row for k in (0, 1) for row in read_tsv(run_dir / "islands" / str(k) / "results.tsv")]
    assert sum(row["description"].startswith("early-stopped at ") for row in results) == len(stopped)

    ratchet_dir = tmp_path / "ratchet"
    done = run_evolve("islands=1", "selection=ratchet", f"run.dir={ratchet_dir}", "run.max_experiments=4", *common)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_tsv(ratchet_dir / "experiments.tsv")
    assert len(rows) == 4 and not [r for r in rows if r["outcome"] == "early-stopped"]
