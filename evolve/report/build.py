"""Writing a report folder: the run page or the comparison page with their PNGs, and re-scoring the
champions that have no rescore record yet.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..rescore import config_value, rescore
from .data import read_run
from .page import render_comparison, render_report
from .plots import plot_comparison, plot_curves, plot_lineage, plot_progress, plot_rates, plot_staircase
from .stats import champion_commits


def rescore_missing(run_dir: Path, cache_dir: str | None = None) -> list[dict]:
    """Re-scores (seed 0) the champions that have no rescore record yet."""
    run = read_run(run_dir)
    todo = [c for c in champion_commits(run) if c not in run.rescores]
    if not cache_dir:
        cache_dir = config_value(run.config, "task.cache_dir")
    return rescore(run.run_dir, todo, cache_dir=cache_dir) if todo else []


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Writes index.html and its PNGs into `out` (default <run_dir>/report); returns the page's path."""
    run = read_run(run_dir)
    out = Path(out) if out else run.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name, plot in (("progress", plot_progress), ("staircase", plot_staircase), ("lineage", plot_lineage),
                       ("rates", plot_rates), ("curves", plot_curves)):
        plots[name] = plot(run, out / f"{name}.png").name
    index = out / "index.html"
    _write(index, render_report(run, plots))
    return index


def build_comparison(a_dir: str | os.PathLike, b_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    a, b = read_run(a_dir), read_run(b_dir)
    out = Path(out) if out else a.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    stem = "compare-" + re.sub(r"[^A-Za-z0-9._-]+", "-", b.name)
    plot = plot_comparison(a, b, out / f"{stem}.png").name
    links = tuple(os.path.relpath(r.run_dir / "report" / "index.html", out)
                  if (r.run_dir / "report" / "index.html").exists() else None for r in (a, b))
    page_path = out / f"{stem}.html"
    _write(page_path, render_comparison(a, b, plot, links))
    return page_path


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")   # two writers at once (engine, --serve) never clash
    tmp.write_text(text)
    os.replace(tmp, path)
