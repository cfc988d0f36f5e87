"""The lineage report of a run: what each island found, where migrants and resets happened, and
which changes survived.

    python -m evolve.report RUN_DIR               # RUN_DIR/report/index.html and its PNGs
    python -m evolve.report RUN_DIR --rescore     # first re-score the champions on the held-out split
    python -m evolve.report A B                   # A/report/compare-<B's name>.html: both runs on one axis
    python -m evolve.report RUN_DIR --out DIR     # write somewhere else

    evolve.report.load(RUN_DIR) -> pandas.DataFrame, one row per experiment (as experiments.tsv)

One concept per module, each usable alone: reading a run (`data`: `read_run`, `load`), numbers
derived from it (`stats`), the lineage graph (`graph`), the figures (`plots`: matplotlib's Agg
backend, one PNG each), the HTML (`page`: static, the PNGs beside it, no script, nothing fetched),
writing a report folder (`build`) and the command line (`__main__`). Reading never writes: a run
that is still going is reported as far as its journal's complete lines go.
"""
from __future__ import annotations

from .build import build_comparison, build_report, rescore_missing
from .data import COLUMNS, RunData, load, read_run
from .graph import layered_layout, lineage
from .page import NOT_RESCORED
from .stats import champion_commits, reach_best

__all__ = ["COLUMNS", "NOT_RESCORED", "RunData", "build_comparison", "build_report", "champion_commits",
           "layered_layout", "lineage", "load", "main", "reach_best", "read_run", "rescore_missing"]


def __getattr__(name: str):
    # The CLI lives in __main__.py; importing it here eagerly would make `python -m evolve.report` warn
    # that the module was imported before it ran.
    if name == "main":
        from .__main__ import main
        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
