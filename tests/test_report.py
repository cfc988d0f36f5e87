"""The lineage report on real runs: `python -m evolve` on the landscape task, then `python -m evolve.report`.

Two runs are made once for the module, side by side: an islands run on a copy of the landscape task
whose prepare.py also prints `test_bpb:` under EVOLVE_HELDOUT=1 (the held-out contract), and a
ratchet run on the plain landscape task (no held-out support).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evolve import report
from evolve.journal import complete_lines
from evolve.rescore import NO_TEST_BPB, parse_test_bpb, read_rescores

ROOT = Path(__file__).resolve().parents[1]
LANDSCAPE = ROOT / "tests" / "tasks" / "landscape"
HELDOUT = '''

# For tests/test_report.py: the held-out contract. With EVOLVE_HELDOUT=1, also print test_bpb.
_evaluate_val = evaluate


def evaluate(params: dict, seed: int) -> float:
    val = _evaluate_val(params, seed)
    if os.environ.get("EVOLVE_HELDOUT") == "1":
        print(f"test_bpb: {val + 0.01:.6f}")
    return val
'''
COMMON = ("task=custom", "task.budget_s=0.05", "task.grace_s=20", "llm=none", "run.live=false")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report")
    heldout, plain = base / "heldout-task", base / "plain-task"
    shutil.copytree(LANDSCAPE, heldout)
    shutil.copytree(LANDSCAPE, plain)
    with open(heldout / "prepare.py", "a") as f:
        f.write(HELDOUT)
    dirs = {"islands": base / "islands", "ratchet": base / "ratchet"}
    commands = {
        "islands": ["+islands=2", f"task.dir={heldout}", "run.max_experiments=30", "migration.interval=3",
                    "reset.interval=5", "operators.weights.crossover=0.5", f"run.dir={dirs['islands']}"],
        "ratchet": ["islands=1", "selection=ratchet", f"task.dir={plain}", "run.max_experiments=20",
                    f"run.dir={dirs['ratchet']}"],
    }
    procs = {name: subprocess.Popen([sys.executable, "-m", "evolve", *COMMON, *args], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name, args in commands.items()}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name} run failed:\n{out[-4000:]}"
    return dirs


@pytest.fixture(scope="module")
def built(runs) -> Path:
    """The islands run's report, made by the CLI with --rescore."""
    done = subprocess.run([sys.executable, "-m", "evolve.report", str(runs["islands"]), "--rescore"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return runs["islands"] / "report" / "index.html"


def assert_real_png(path: Path, min_size=(500, 250)) -> None:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1], (path, im.size)
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert len(colors) > 50, f"{path} looks blank ({len(colors)} colours)"


def test_report_of_a_real_run(built):
    out = built.parent
    text = built.read_text()
    pngs = {"progress.png", "staircase.png", "lineage.png", "rates.png"}
    assert pngs <= {p.name for p in out.glob("*.png")}
    for name in pngs:
        assert f'src="{name}"' in text
        assert_real_png(out / name)
    # self-contained: nothing fetched from anywhere, no script
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "finished: 30 experiments" in text
    # kept changes with their diffs, collapsible and escaped
    assert text.count("<details>") >= 2
    assert '<span class="add">+' in text and '<span class="del">-' in text
    run = report.read_run(built.parents[1])
    sigma_deltas = run.experiments["delta_sigma"].dropna()
    kept = run.experiments[(run.experiments["status"] == "keep") & (run.experiments["operator"] != "baseline")]
    first = kept.iloc[0]
    assert len(sigma_deltas) > 0 and f"{-first['delta_sigma']:+.1f} [" in text     # its gain in sigma, an interval
    assert f"{first['runs']} / {first['parent_runs']}" in text                      # and the runs behind it
    assert "gain in σ (95%)" in text and f"({run.state.sigma_dof} degrees of freedom" in text


def test_lineage_shows_crossover_and_cross_island_links(runs):
    run = report.read_run(runs["islands"])
    nodes, edges, pruned = report.lineage(run)
    assert not pruned and len(nodes) == run.experiments["commit"].nunique()
    crossovers = run.experiments[run.experiments["operator"] == "crossover"]
    assert not crossovers.empty
    for row in crossovers.itertuples():
        assert {(p, row.commit) for p in row.parents} <= {(p, c) for p, c, _ in edges}
    assert any(cross for _, _, cross in edges), "migrants and resets make parents from another island"
    assert run.migrations and run.resets
    pos = report.layered_layout(nodes)
    assert set(pos) == set(nodes)
    assert all(pos[c][0] > pos[p][0] for p, c, _ in edges)


def test_load_matches_experiments_tsv(runs):
    for run_dir in runs.values():
        df = report.load(run_dir)
        tsv = pd.read_csv(run_dir / "experiments.tsv", sep="\t", dtype=str, keep_default_na=False)
        assert len(df) == len(tsv) > 0
        assert set(report.COLUMNS) <= set(df.columns)
        assert list(df["seq"]) == [int(s) for s in tsv["seq"]]
        for got, want in zip(df.itertuples(), tsv.itertuples()):
            assert (got.island, got.island_seq, got.seed) == (int(want.island), int(want.island_seq), int(want.seed))
            assert got.commit.startswith(want.commit)
            assert " ".join(p[:12] for p in got.parents) == want.parents
            assert (got.operator, got.status, got.outcome) == (want.operator, want.status, want.outcome)
            assert (got.description, got.reason, got.log) == (want.description, want.reason, want.log)
            for col in ("val_bpb", "parent_bpb", "delta"):
                value = getattr(want, col)
                assert (math.isnan(getattr(got, col)) if value == "" else
                        abs(getattr(got, col) - float(value)) < 1e-6), (col, got, want)
            assert abs(got.cost_usd - float(want.cost_usd)) < 1e-4 and got.tokens == int(want.tokens)
            assert abs(got.wall_s - float(want.wall_s)) < 0.051
            assert got.started <= got.finished
        sigma = [json.loads(line)["sigma"] for line in complete_lines(run_dir / "journal.jsonl")[0]
                 if json.loads(line)["kind"] in ("sigma", "noise")][-1]   # the latest estimate
        if sigma > 0:
            expected = df["delta"] / sigma
            assert ((df["delta_sigma"] - expected).abs().dropna() < 1e-9).all()
        else:
            assert df["delta_sigma"].isna().all()


def test_results_tsv_reads_as_autoresearch_analysis_does(runs):
    """The anchor's analysis.ipynb: read_csv(sep="\\t"), to_numeric, status upper-cased, kept rows."""
    for run_dir in runs.values():
        frame = report.load(run_dir)
        for path in sorted((run_dir / "islands").glob("*/results.tsv")):
            df = pd.read_csv(path, sep="\t")
            assert list(df.columns) == ["commit", "val_bpb", "memory_gb", "status", "description"]
            df["val_bpb"] = pd.to_numeric(df["val_bpb"], errors="coerce")
            df["memory_gb"] = pd.to_numeric(df["memory_gb"], errors="coerce")
            assert set(df["status"]) <= {"keep", "discard", "crash"}
            assert (df["commit"].astype(str).str.len() == 7).all()
            df["status"] = df["status"].str.strip().str.upper()
            kept = df[df["status"] == "KEEP"]
            mine = frame[frame["island"] == int(path.parent.name)]
            assert len(df) == len(mine) and len(kept) == (mine["status"] == "keep").sum()
            assert list(df["commit"]) == [c[:7] for c in mine["commit"]]
            assert df["val_bpb"].notna().all()
            best = kept["val_bpb"].min()
            assert abs(best - mine.loc[mine["status"] == "keep", "val_bpb"].min()) < 1e-6


def test_rescore_on_the_held_out_split(built, runs):
    run_dir = runs["islands"]
    run = report.read_run(run_dir)
    champions = report.champion_commits(run)
    assert champions and set(champions) <= set(run.rescores)
    for commit in champions:
        r = run.rescores[commit]
        assert r["seed"] == 0 and r["outcome"] == "ok" and r["reason"] == ""
        assert abs(r["test_bpb"] - (r["val_bpb"] + 0.01)) < 2e-6
        assert (run_dir / r["log"]).exists()
    text = built.read_text()
    assert f"{run.rescores[champions[0]]['test_bpb']:.6f}" in text and report.NOT_RESCORED not in text
    lab = git.Repo(run_dir / "lab")
    assert [w for w in lab.git.worktree("list").splitlines() if "evolve-rescore" in w] == []
    # once per commit: a second --rescore runs nothing
    lines = len(complete_lines(run_dir / "rescore.jsonl")[0])
    assert report.main([str(run_dir), "--rescore"]) == 0
    assert len(complete_lines(run_dir / "rescore.jsonl")[0]) == lines


def test_task_without_held_out_support(runs, tmp_path):
    run_dir = runs["ratchet"]
    index = report.build_report(run_dir, tmp_path / "before")
    assert report.NOT_RESCORED in index.read_text()
    assert report.main([str(run_dir), "--rescore", "--out", str(tmp_path / "after")]) == 0
    records = read_rescores(run_dir)
    assert records and all(r["test_bpb"] is None and r["reason"] == NO_TEST_BPB for r in records.values())
    assert all(r["val_bpb"] is not None for r in records.values())
    text = (tmp_path / "after" / "index.html").read_text()
    assert NO_TEST_BPB in text and report.NOT_RESCORED not in text


def test_compare_islands_with_ratchet(runs, tmp_path):
    a, b = runs["islands"], runs["ratchet"]
    assert report.main([str(a), str(b)]) == 0
    page = a / "report" / "compare-ratchet.html"
    assert page.exists()
    assert_real_png(a / "report" / "compare-ratchet.png")
    text = page.read_text()
    for run_dir in (a, b):
        df = report.load(run_dir)
        best, evals, _ = report.reach_best(df)
        assert f"{best:.6f}" in text and f"<td class=\"num\">{evals}</td>" in text
        assert df.loc[df["seq"] == evals - 1, "val_bpb"].iloc[0] == best
    assert "evaluations to reach the best" in text and "best after 20 evaluations" in text
    out = tmp_path / "elsewhere"
    assert report.main([str(a), str(b), "--out", str(out)]) == 0
    assert (out / "compare-ratchet.html").exists() and (out / "compare-ratchet.png").exists()


def test_a_run_still_writing_its_journal(runs, tmp_path):
    """A torn last line (a write in progress) is left out and left alone, never truncated."""
    copy = tmp_path / "running"
    shutil.copytree(runs["islands"], copy, ignore=shutil.ignore_patterns("worktrees", "report"))
    journal = copy / "journal.jsonl"
    last = journal.read_bytes().splitlines()[-1]
    with open(journal, "ab") as f:
        f.write(last[: len(last) // 2])
    before = journal.read_bytes()
    df = report.load(copy)
    assert len(df) == len(report.load(runs["islands"]))
    index = report.build_report(copy)
    assert journal.read_bytes() == before
    text = index.read_text()
    assert "running: 30 of 30 experiments so far" in text and "still being written" in text
    for name in ("progress.png", "staircase.png", "lineage.png", "rates.png"):
        assert_real_png(copy / "report" / name)


def test_an_empty_run_still_renders(runs, tmp_path):
    """A run that has written its manifest but no experiment yet."""
    copy = tmp_path / "fresh"
    copy.mkdir()
    for name in ("run.json", ".hydra"):
        src = runs["islands"] / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / name)
    (copy / "journal.jsonl").write_text('{"kind": "experi')
    index = report.build_report(copy)
    assert "0 experiments" in index.read_text()
    assert report.load(copy).empty


def test_reading_helpers(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c"')
    assert complete_lines(path) == (['{"a": 1}', '{"b": 2}'], True)
    assert path.read_bytes().endswith(b'{"c"')
    path.write_bytes(b'{"a": 1}\n')
    assert complete_lines(path) == (['{"a": 1}'], False)
    assert complete_lines(tmp_path / "missing") == ([], False)
    assert parse_test_bpb("step 1\rstep 2\ntest_bpb: 1.25\n---\nval_bpb: 1.2\n") == 1.25
    assert parse_test_bpb("---\nval_bpb: 1.2\n") is None


# ---- the page in a real browser -------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium")


def screenshot(page: Path, png: Path, profile: Path) -> Image.Image:
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1400,2000",
                    page.resolve().as_uri()], capture_output=True, timeout=60, check=True)
    return Image.open(png).convert("RGB")


def plot_pixels(im: Image.Image) -> tuple[int, int]:
    """(distinct colours, strongly coloured pixels) where the first plot sits: below the title block,
    above the island table. Text is grey; only a rendered plot brings saturated colours."""
    band = np.asarray(im.crop((0, 220, im.width, 800)), dtype=np.int32).reshape(-1, 3)
    saturated = int(((band.max(axis=1) - band.min(axis=1)) > 80).sum())
    return len(np.unique(band, axis=0)), saturated


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (CI installs it: .ci/run)")
def test_page_renders_in_headless_chromium(built, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; in CI, .ci/run installs it with apt-get")
    shot = screenshot(built, tmp_path / "page.png", tmp_path / "profile")
    assert shot.size == (1400, 2000)
    colors, saturated = plot_pixels(shot)
    print(f"screenshot: {colors} colours, {saturated} saturated pixels where the first plot is")
    assert colors > 1000 and saturated > 1500, (colors, saturated)
    # the same page without its PNGs shows no plot there: the check above really sees the images
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(built, bare / "index.html")
    colors, saturated = plot_pixels(screenshot(bare / "index.html", tmp_path / "bare.png", tmp_path / "profile"))
    print(f"without the PNGs: {colors} colours, {saturated} saturated pixels")
    assert saturated < 500, (colors, saturated)
