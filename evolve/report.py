"""The lineage report of a run: what each island found, where migrants and resets happened, and
which changes survived.

    python -m evolve.report RUN_DIR               # RUN_DIR/report/index.html and its PNGs
    python -m evolve.report RUN_DIR --rescore     # first re-score the champions on the held-out split
    python -m evolve.report A B                   # A/report/compare-<B's name>.html: both runs on one axis
    python -m evolve.report RUN_DIR --out DIR     # write somewhere else

    evolve.report.load(RUN_DIR) -> pandas.DataFrame, one row per experiment (as experiments.tsv)

Three layers, each usable alone: reading a run (`read_run`, `load`), plotting it (`plot_*`,
matplotlib's Agg backend, one PNG per figure) and the page (`render_*`: static HTML with the PNGs
beside it, no script, nothing fetched). Reading never writes: a run that is still going is
reported as far as its journal's complete lines go.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from .records import CRASH, DISCARD, KEEP, Experiment, Migration, NoiseFloor, OperatorFailure, Reset, from_json  # noqa: E402
from .rescore import complete_lines, config_value, read_rescores, rescore, run_config  # noqa: E402
from .state import RunState  # noqa: E402

COLUMNS = ("seq", "island", "island_seq", "commit", "parents", "operator", "status", "outcome", "val_bpb",
           "parent_bpb", "delta", "delta_sigma", "seed", "wall_s", "training_seconds", "peak_vram_mb",
           "cost_usd", "tokens", "started", "finished", "elapsed_s", "description", "reason", "log")
HALL_OF_FAME = 10
NOT_RESCORED = "not rescored — run with --rescore"
MAX_DIFF_LINES = 400
# The lineage plot keeps every commit up to this many; past it, only kept commits and their ancestors.
MAX_TREE_NODES = 250
STATUS_COLORS = {KEEP: "#2ca02c", DISCARD: "#b0b0b0", CRASH: "#d62728"}


# =====================================================================================================
# Reading a run
# =====================================================================================================
@dataclass
class RunData:
    run_dir: Path
    name: str
    manifest: dict
    config: DictConfig
    records: list                       # every complete journal record, in order
    experiments: pd.DataFrame           # one row per experiment, COLUMNS
    state: RunState                     # populations and champions after the last complete record
    sigma: float | None
    torn: bool                          # the journal ended in a line still being written
    rescores: dict[str, dict] = field(default_factory=dict)

    @property
    def n_islands(self) -> int:
        return int(self.manifest["islands"])

    @property
    def start(self) -> float:
        return float(self.manifest["created"])

    @property
    def events(self) -> list:
        """NoiseFloor, Migration, Reset and OperatorFailure records, in journal order."""
        return [r for r in self.records if not isinstance(r, Experiment)]

    @property
    def migrations(self) -> list[Migration]:
        return [e for e in self.events if isinstance(e, Migration)]

    @property
    def resets(self) -> list[Reset]:
        return [e for e in self.events if isinstance(e, Reset)]

    @property
    def max_experiments(self) -> int | None:
        value = config_value(self.config, "run.max_experiments")
        return int(value) if value is not None else None

    def running(self) -> bool:
        """A torn journal line is a write in progress; a fitness run holds a pid file while it lasts
        (a killed engine leaves its pid files behind, hence the check that the process is alive)."""
        return self.torn or any(_alive(p) for p in (self.run_dir / "pids").glob("*.pid"))


def _alive(pidfile: Path) -> bool:
    try:
        pid = json.loads(pidfile.read_text())["supervisor_pid"]
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_journal(run_dir: Path) -> tuple[list, bool]:
    """The journal's complete records and whether its last line was incomplete (left out, not truncated:
    evolve.journal.Journal.load truncates, which only the run itself may do)."""
    lines, torn = complete_lines(Path(run_dir) / "journal.jsonl")
    return [from_json(line) for line in lines], torn


def read_run(run_dir: str | os.PathLike) -> RunData:
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "run.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no run.json)")
    manifest = json.loads((run_dir / "run.json").read_text())
    config = run_config(run_dir)
    records, torn = read_journal(run_dir)
    state = new_state(manifest, config)
    for record in records:
        state.apply(record)
    sigma = next((r.sigma for r in records if isinstance(r, NoiseFloor)), None)
    experiments = [r for r in records if isinstance(r, Experiment)]
    return RunData(run_dir=run_dir, name=manifest.get("run_name", run_dir.name), manifest=manifest, config=config,
                   records=records, experiments=experiments_frame(experiments, sigma, float(manifest["created"])),
                   state=state, sigma=sigma, torn=torn, rescores=read_rescores(run_dir))


def new_state(manifest: dict, config: DictConfig) -> RunState:
    return RunState(int(manifest["islands"]), int(config_value(config, "selection.population_size", 4)))


def experiments_frame(experiments: list[Experiment], sigma: float | None, start: float) -> pd.DataFrame:
    rows = []
    for e in experiments:
        delta = None if e.val_bpb is None or e.parent_bpb is None else e.val_bpb - e.parent_bpb
        rows.append({
            "seq": e.seq, "island": e.island, "island_seq": e.island_seq, "commit": e.commit,
            "parents": tuple(e.parents), "operator": e.operator, "status": e.status, "outcome": e.outcome,
            "val_bpb": _nan(e.val_bpb), "parent_bpb": _nan(e.parent_bpb), "delta": _nan(delta),
            "delta_sigma": delta / sigma if delta is not None and sigma else math.nan,
            "seed": e.seed, "wall_s": e.wall_s, "training_seconds": _nan(e.metrics.get("training_seconds")),
            "peak_vram_mb": _nan(e.metrics.get("peak_vram_mb")), "cost_usd": e.cost.get("usd", 0.0),
            "tokens": int(e.cost.get("prompt_tokens", 0) + e.cost.get("completion_tokens", 0)),
            "started": e.started, "finished": e.finished, "elapsed_s": e.finished - start,
            "description": e.description, "reason": e.reason, "log": e.log,
        })
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("val_bpb", "parent_bpb", "delta", "delta_sigma", "wall_s", "training_seconds", "peak_vram_mb",
                "cost_usd", "started", "finished", "elapsed_s"):
        frame[col] = frame[col].astype(float)
    return frame


def load(run_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per experiment, in seq order; the rows of experiments.tsv with full commit hashes,
    parents as a tuple, delta in units of the noise floor (delta_sigma) and timing columns."""
    return read_run(run_dir).experiments


def _nan(value) -> float:
    return math.nan if value is None else float(value)


# ---- numbers derived from the records ------------------------------------------------------------------
def running_best(frame: pd.DataFrame) -> pd.DataFrame:
    """The kept experiments of `frame` with the running minimum of their val_bpb (column `best`)."""
    kept = frame[(frame["status"] == KEEP) & frame["val_bpb"].notna()].copy()
    kept["best"] = kept["val_bpb"].cummin()
    return kept


def reach_best(frame: pd.DataFrame) -> tuple[float, int | None, float | None]:
    """(best kept val_bpb, evaluations until it was first reached, seconds until then)."""
    kept = running_best(frame)
    if kept.empty:
        return math.nan, None, None
    first = kept.loc[kept["val_bpb"].idxmin()]
    return float(first["val_bpb"]), int(first["seq"]) + 1, float(first["elapsed_s"])


def best_after(frame: pd.DataFrame, evaluations: int) -> float:
    kept = running_best(frame[frame["seq"] < evaluations])
    return float(kept["best"].iloc[-1]) if not kept.empty else math.nan


def island_x(frame: pd.DataFrame, island: int, after_seq: int) -> float:
    """Where an event after global experiment `after_seq` falls on island k's own axis (island_seq):
    between the island's last experiment before it and its first one after."""
    mine = frame[frame["island"] == island]
    return float((mine["seq"] <= after_seq).sum()) - 0.5


def champion_history(run: RunData) -> dict[int, list[tuple[float, float]]]:
    """Each island's champion val_bpb (the best of its population) after every record that changed it,
    as (x on the island's own axis, val_bpb), by replaying the journal: an island's best also moves
    when a better migrant arrives or a reset reseeds it, not only when it keeps its own child."""
    state = new_state(run.manifest, run.config)
    done = [0] * run.n_islands          # experiments of each island so far
    history: dict[int, list[tuple[float, float]]] = {k: [] for k in range(run.n_islands)}
    for record in run.records:
        state.apply(record)
        if isinstance(record, Experiment):
            done[record.island] += 1
            touched = {record.island: float(record.island_seq)}
        elif isinstance(record, Migration):
            touched = {k: done[k] - 0.5 for k in record.targets}
        elif isinstance(record, Reset):
            touched = {k: done[k] - 0.5 for k, *_ in record.resets}
        else:
            continue
        for k, x in touched.items():
            champ = state.islands[k].champion()
            if champ is not None and (not history[k] or history[k][-1][1] != champ.val_bpb):
                history[k].append((x, champ.val_bpb))
    return history


def champion_rows(run: RunData) -> list[dict]:
    """Each island's champion and the hall of fame, one row per distinct commit, best first."""
    roles: dict[str, list[str]] = defaultdict(list)
    members = {}
    for isl in run.state.islands:
        champ = isl.champion()
        if champ is not None:
            roles[champ.commit].append(f"champion of island {isl.index}")
            members[champ.commit] = champ
    for rank, m in enumerate(run.state.hall_of_fame(HALL_OF_FAME), 1):
        roles[m.commit].append(f"hall of fame #{rank}")
        members.setdefault(m.commit, m)
    rows = []
    for commit, m in members.items():
        # Measured on several islands (the base commit, with one seed each): the mean of every measurement.
        measured = run.experiments.loc[run.experiments["commit"] == commit, "val_bpb"].dropna()
        val, n = (float(measured.mean()), len(measured)) if len(measured) else (m.val_bpb, len(m.observations))
        rows.append({"commit": commit, "roles": roles[commit], "val_bpb": val, "observations": n,
                     "origin_island": m.origin_island, "description": describe(run, commit),
                     "rescore": run.rescores.get(commit), "seq": m.seq})
    return sorted(rows, key=lambda r: (r["val_bpb"], r["seq"]))


def describe(run: RunData, commit: str) -> str:
    rows = run.experiments[run.experiments["commit"] == commit]
    if rows.empty:
        return ""
    if rows["operator"].iloc[0] == "baseline":
        return "baseline (train.py as given)"
    return str(rows["description"].iloc[0])


def git_diff(run: RunData, parent: str, commit: str) -> str:
    """`git diff parent commit -- train.py` in the lab repository."""
    path = f"{run.manifest.get('prefix', '')}train.py"
    done = subprocess.run(["git", "-C", run.manifest["lab_dir"], "diff", parent, commit, "--", path],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"(no diff: {done.stderr.strip() or 'git failed'})"
    lines = done.stdout.splitlines()
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return "\n".join(lines)


# ---- the lineage graph -----------------------------------------------------------------------------------
@dataclass
class Node:
    commit: str
    island: int | None         # None: the commit every island starts from (or one outside the journal)
    seq: int
    operator: str
    status: str
    val_bpb: float
    parents: tuple[str, ...]
    depth: int = 0


def lineage(run: RunData) -> tuple[dict[str, Node], list[tuple[str, str, bool]], bool]:
    """Commits as nodes (first measurement of each), parent edges (parent, child, crosses islands),
    and whether the graph was pruned to kept commits and their ancestors."""
    nodes: dict[str, Node] = {}
    for row in run.experiments.itertuples(index=False):
        if row.commit in nodes:
            continue
        for p in row.parents:
            if p not in nodes:  # a parent the journal never measured (e.g. an older commit of a user repo)
                nodes[p] = Node(p, None, -1, "outside", KEEP, math.nan, ())
        island = None if row.operator == "baseline" else int(row.island)
        depth = 1 + max((nodes[p].depth for p in row.parents), default=-1)
        nodes[row.commit] = Node(row.commit, island, int(row.seq), row.operator, row.status, row.val_bpb,
                                 tuple(row.parents), depth)
    pruned = len(nodes) > MAX_TREE_NODES
    if pruned:
        wanted = {c for c, n in nodes.items() if n.status == KEEP}
        stack = list(wanted)
        while stack:
            for p in nodes[stack.pop()].parents:
                if p not in wanted:
                    wanted.add(p)
                    stack.append(p)
        nodes = {c: n for c, n in nodes.items() if c in wanted}
    edges = []
    for n in nodes.values():
        for p in n.parents:
            if p in nodes:
                pi = nodes[p].island
                edges.append((p, n.commit, pi is not None and pi != n.island))
    return nodes, edges, pruned


def layered_layout(nodes: dict[str, Node]) -> dict[str, tuple[float, float]]:
    """x = generation depth; y from the tree of first parents, drawn the classic way: leaves on
    consecutive rows in depth-first order (siblings grouped by island), each inner node centred on its
    children. Second parents (crossover) only add edges."""
    children: dict[str | None, list[Node]] = defaultdict(list)
    for n in nodes.values():
        first = n.parents[0] if n.parents and n.parents[0] in nodes else None
        children[first].append(n)
    for kids in children.values():
        kids.sort(key=lambda n: (-1 if n.island is None else n.island, n.seq))
    pos: dict[str, tuple[float, float]] = {}
    ys: dict[str, float] = {}
    row = 0
    # Post-order walk with an explicit stack: a long ratchet lineage is a very deep tree.
    stack = [(root, False) for root in reversed(children[None])]
    while stack:
        n, expanded = stack.pop()
        kids = children.get(n.commit, [])
        if kids and not expanded:
            stack.append((n, True))
            stack.extend((kid, False) for kid in reversed(kids))
            continue
        if kids:
            y = (ys[kids[0].commit] + ys[kids[-1].commit]) / 2
        else:
            y, row = float(row), row + 1
        ys[n.commit] = y
        pos[n.commit] = (float(n.depth), -y)  # first rows at the top
    return pos


# =====================================================================================================
# Plots (one PNG each)
# =====================================================================================================
def island_colors(n: int) -> list:
    cmap = plt.get_cmap("tab10")
    return [cmap(k % 10) for k in range(n)]


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds < 300:
        return 1.0, "s"
    if seconds < 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _empty(ax, text: str = "no experiments yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")


def _step_to(ax, x, y, x_end, **kw) -> None:
    """A running-best staircase, carried on to x_end (the last experiment of the run)."""
    x, y = list(x), list(y)
    if not x:
        return
    if x_end > x[-1]:
        x, y = x + [x_end], y + [y[-1]]
    ax.step(x, y, where="post", **kw)


def plot_progress(run: RunData, path: Path) -> Path:
    """Every island's running best on one axis, against wall time and against experiment count: the best
    val_bpb each island found itself (what migrants brought in is in the staircase)."""
    df = run.experiments
    colors = island_colors(run.n_islands)
    fig, (ax_t, ax_n) = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    if df.empty:
        _empty(ax_t), _empty(ax_n)
        return _save(fig, path)
    scale, unit = _time_unit(float(df["elapsed_s"].max()))
    t_end, n_end = float(df["elapsed_s"].max()) / scale, int(df["seq"].max())
    for k in range(run.n_islands):
        kept = running_best(df[df["island"] == k])
        if kept.empty:
            continue
        style = dict(color=colors[k], linewidth=1.6, alpha=0.85, label=f"found on island {k}")
        _step_to(ax_t, kept["elapsed_s"] / scale, kept["best"], t_end, **style)
        _step_to(ax_n, kept["seq"], kept["best"], n_end, **style)
        ax_t.plot(kept["elapsed_s"] / scale, kept["val_bpb"], "o", color=colors[k], markersize=3.5)
        ax_n.plot(kept["seq"], kept["val_bpb"], "o", color=colors[k], markersize=3.5)
    overall = running_best(df)
    if not overall.empty:
        style = dict(color="black", linewidth=2.4, linestyle="--", label="run best")
        _step_to(ax_t, overall["elapsed_s"] / scale, overall["best"], t_end, **style)
        _step_to(ax_n, overall["seq"], overall["best"], n_end, **style)
        _zoom(ax_t, overall), _zoom(ax_n, overall)
    ax_t.set_xlabel(f"wall time since the run started ({unit})")
    ax_n.set_xlabel("experiments finished (seq)")
    for ax in (ax_t, ax_n):
        ax.set_ylabel("best kept val_bpb (lower is better)")
        ax.grid(True, alpha=0.25)
    if ax_n.get_legend_handles_labels()[0]:
        ax_n.legend(loc="upper right", fontsize=9)
    fig.suptitle(f"{run.name}: best val_bpb found so far, per island ({len(df)} experiments)")
    return _save(fig, path)


def _zoom(ax, kept: pd.DataFrame) -> None:
    """From just below the best to just above the worst kept value (the baselines)."""
    lo, hi = float(kept["val_bpb"].min()), float(kept["val_bpb"].max())
    pad = (hi - lo) * 0.08 or max(abs(hi) * 1e-3, 1e-4)
    ax.set_ylim(lo - pad, hi + pad)


def plot_staircase(run: RunData, path: Path) -> Path:
    """One panel per island: val_bpb of each experiment in island order, keeps highlighted, the
    island's best (its champion, which migrants and resets move too), and vertical lines where
    migrants left or arrived and where the island was reset."""
    df = run.experiments
    colors = island_colors(run.n_islands)
    history = champion_history(run)
    fig, axes = plt.subplots(run.n_islands, 1, figsize=(13, 2.9 * run.n_islands + 0.9), squeeze=False,
                             constrained_layout=True)
    marks = {"out": dict(color="#1f77b4", linestyle="--", linewidth=1.1),
             "in": dict(color="#9467bd", linestyle=":", linewidth=1.6),
             "reset": dict(color="#d62728", linestyle="-", linewidth=2.0, alpha=0.6)}
    for k, ax in enumerate(axes[:, 0]):
        mine = df[df["island"] == k]
        ax.set_title(f"island {k}: {len(mine)} experiments, {(mine['status'] == KEEP).sum()} keeps",
                     fontsize=10, loc="left")
        ax.grid(True, alpha=0.25)
        ax.set_ylabel("val_bpb")
        if mine.empty:
            _empty(ax)
            continue
        arrivals = [(island_x(df, k, m.after_seq), v, "in") for m in run.migrations if k in m.targets
                    for _, v in m.migrants]
        arrivals += [(island_x(df, k, r.after_seq), v, "reset") for r in run.resets for i, _, _, v in r.resets if i == k]
        ok = mine[mine["val_bpb"].notna()]
        kept = mine[mine["status"] == KEEP]
        known = list(ok["val_bpb"]) + [v for _, v in history[k]] + [v for _, v, _ in arrivals]
        lo = min(known) if known else 0.0
        hi = max(list(kept["val_bpb"].dropna()) + [v for _, v in history[k]] + [v for _, v, _ in arrivals] or [1.0])
        if not ok.empty:
            hi = max(hi, float(ok["val_bpb"].quantile(0.75)))
        pad = (hi - lo) * 0.1 or max(abs(hi) * 1e-3, 1e-4)
        top = hi + pad
        disc = ok[ok["status"] == DISCARD]
        inside, above = disc[disc["val_bpb"] <= top], disc[disc["val_bpb"] > top]
        ax.scatter(inside["island_seq"], inside["val_bpb"], s=16, color=STATUS_COLORS[DISCARD], zorder=2)
        ax.scatter(above["island_seq"], [top] * len(above), s=22, marker="^", color=STATUS_COLORS[DISCARD], zorder=2)
        crashed = mine[mine["status"] == CRASH]
        ax.scatter(crashed["island_seq"], [top] * len(crashed), s=40, marker="x", color=STATUS_COLORS[CRASH], zorder=3)
        ax.scatter(kept["island_seq"], kept["val_bpb"], s=46, color=colors[k], edgecolors="black", linewidths=0.6,
                   zorder=4)
        if history[k]:
            xs, ys = zip(*history[k])
            _step_to(ax, xs, ys, max(float(mine["island_seq"].max()), xs[-1] + 0.3), color=colors[k], linewidth=1.8,
                     alpha=0.8, zorder=3)
        for m in run.migrations:
            if m.source == k:
                ax.axvline(island_x(df, k, m.after_seq), **marks["out"])
        for x, v, kind in arrivals:
            ax.axvline(x, **marks[kind])
            ax.scatter([x], [v], s=90, marker="*", color=marks[kind]["color"], edgecolors="black", linewidths=0.4,
                       zorder=5)
        ax.set_ylim(lo - pad, top + pad)
        ax.set_xlim(-0.8, float(mine["island_seq"].max()) + 0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("experiment # on the island (island_seq)")
    dot = dict(linestyle="", markersize=7)
    legend = {
        "kept": Line2D([], [], marker="o", color="gray", markeredgecolor="black", **dot),
        "discarded": Line2D([], [], marker="o", color=STATUS_COLORS[DISCARD], **dot),
        "discarded, off scale": Line2D([], [], marker="^", color=STATUS_COLORS[DISCARD], **dot),
        "crashed": Line2D([], [], marker="x", color=STATUS_COLORS[CRASH], **dot),
        "island's best (its champion)": Line2D([], [], color="gray", linewidth=1.8),
        "migrants sent": Line2D([], [], **marks["out"]),
        "migrant received (★ its val_bpb)": Line2D([], [], marker="*", markersize=10, **marks["in"]),
        "reset (★ the new seed's val_bpb)": Line2D([], [], marker="*", markersize=10, **marks["reset"]),
    }
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=4, fontsize=9)
    return _save(fig, path)


def plot_lineage(run: RunData, path: Path) -> Path:
    """Commits by generation depth, edges to their parents; colour = island, dashed = the parent
    came from another island (a migrant, a reset, or crossover with another island's member)."""
    nodes, edges, pruned = lineage(run)
    colors = island_colors(run.n_islands)
    color_of = lambda island: "black" if island is None else colors[island]  # noqa: E731
    depth = max((n.depth for n in nodes.values()), default=0)
    firsts = {n.parents[0] for n in nodes.values() if n.parents}
    rows = sum(1 for c in nodes if c not in firsts)  # leaves: one row each
    fig, ax = plt.subplots(figsize=(min(6 + 1.1 * depth, 32), min(3 + 0.3 * rows, 36)), constrained_layout=True)
    ax.set_axis_off()
    if not nodes:
        _empty(ax)
        return _save(fig, path)
    pos = layered_layout(nodes)
    for cross in (False, True):
        segs = [(pos[p], pos[c]) for p, c, x in edges if x == cross]
        cols = [color_of(nodes[c].island) for p, c, x in edges if x == cross]
        ax.add_collection(LineCollection(segs, colors=cols, linewidths=1.5 if cross else 1.1,
                                         linestyles="--" if cross else "-", alpha=0.75 if cross else 0.55, zorder=1))
    size = 70 if len(nodes) < 80 else 40 if len(nodes) < 200 else 22
    for n in nodes.values():
        x, y = pos[n.commit]
        c = color_of(n.island)
        marker = "s" if n.island is None else "D" if "crossover" in n.operator else "o"
        if n.status == KEEP:
            ax.scatter([x], [y], s=size, marker=marker, color=c, edgecolors="black", linewidths=0.6, zorder=3)
        elif n.status == DISCARD:
            ax.scatter([x], [y], s=size * 0.7, marker=marker, facecolors="white", edgecolors=c, linewidths=1.0,
                       zorder=3)
        else:
            ax.scatter([x], [y], s=size, marker="x", color=STATUS_COLORS[CRASH], linewidths=1.5, zorder=3)
    migrants = {c for m in run.migrations for c, _ in m.migrants if c in nodes}
    donated = {c for r in run.resets for _, _, c, _ in r.resets if c in nodes}
    for group, style in ((migrants, dict(edgecolors="#e6a800", linewidths=2.0, s=size * 3.2)),
                         (donated, dict(edgecolors="#d62728", linewidths=1.6, s=size * 5.5))):
        if group:
            ax.scatter([pos[c][0] for c in group], [pos[c][1] for c in group], facecolors="none", zorder=2, **style)
    for row in champion_rows(run):
        if row["commit"] in pos and any(r.startswith("champion") for r in row["roles"]):
            x, y = pos[row["commit"]]
            ax.annotate(f"{row['commit'][:7]}  {row['val_bpb']:.4f}", (x, y), xytext=(7, 5),
                        textcoords="offset points", fontsize=8, fontweight="bold")
    ax.autoscale_view()
    ax.margins(0.06)
    legend = [Line2D([], [], color=colors[k], marker="o", linestyle="-", label=f"island {k}")
              for k in range(run.n_islands)]
    legend += [Line2D([], [], color="black", marker="s", linestyle="", label="base commit"),
               Line2D([], [], color="gray", marker="o", markerfacecolor="white", linestyle="", label="discard"),
               Line2D([], [], color=STATUS_COLORS[CRASH], marker="x", linestyle="", label="crash"),
               Line2D([], [], color="gray", marker="D", linestyle="", label="crossover child"),
               Line2D([], [], color="gray", linestyle="--", label="parent from another island"),
               Line2D([], [], color="#e6a800", marker="o", markerfacecolor="none", linestyle="", markersize=11,
                      label="sent as migrant"),
               Line2D([], [], color="#d62728", marker="o", markerfacecolor="none", linestyle="", markersize=14,
                      label="reseeded an island")]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    note = f", pruned to kept commits and their ancestors" if pruned else ""
    ax.set_title(f"lineage: {len(nodes)} commits by generation depth (left to right){note}", fontsize=10)
    return _save(fig, path)


def outcome_rates(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Counts of keep / discard / crash per value of `by` (island or operator)."""
    counts = frame.groupby([by, "status"]).size().unstack(fill_value=0)
    return counts.reindex(columns=[KEEP, DISCARD, CRASH], fill_value=0)


def plot_rates(run: RunData, path: Path) -> Path:
    df = run.experiments
    fig, axes = plt.subplots(1, 2, figsize=(13, 1.6 + 0.45 * max(run.n_islands, 4)), constrained_layout=True)
    for ax, by, title in ((axes[0], "island", "per island"), (axes[1], "operator", "per operator")):
        ax.set_title(f"keep / discard / crash {title}", fontsize=10)
        if df.empty:
            _empty(ax)
            continue
        counts = outcome_rates(df, by)
        labels = [f"island {i}" if by == "island" else str(i) for i in counts.index]
        totals = counts.sum(axis=1).to_numpy()
        left = np.zeros(len(counts))
        for status in (KEEP, DISCARD, CRASH):
            share = counts[status].to_numpy() / totals
            ax.barh(labels, share, left=left, color=STATUS_COLORS[status], label=status, edgecolor="white")
            for i, (s, c) in enumerate(zip(share, counts[status])):
                if s >= 0.08:
                    ax.text(left[i] + s / 2, i, str(c), ha="center", va="center", fontsize=8)
            left += share
        for i, t in enumerate(totals):
            ax.text(1.01, i, f"n={t}", va="center", fontsize=8)
        ax.set_xlim(0, 1.12)
        ax.invert_yaxis()
        ax.set_xlabel("share of experiments")
    handles = [plt.Rectangle((0, 0), 1, 1, color=STATUS_COLORS[s]) for s in (KEEP, DISCARD, CRASH)]
    fig.legend(handles, [KEEP, DISCARD, CRASH], loc="outside right upper", fontsize=8, frameon=False)
    return _save(fig, path)


def plot_comparison(a: RunData, b: RunData, path: Path) -> Path:
    """Two runs' running bests on the same axes, against experiment count and wall time."""
    fig, (ax_n, ax_t) = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    longest = max([float(r.experiments["elapsed_s"].max()) for r in (a, b) if not r.experiments.empty] or [0.0])
    scale, unit = _time_unit(longest)
    labels = _distinct_names(a, b)
    for run, color, label in ((a, "#1f77b4", labels[0]), (b, "#ff7f0e", labels[1])):
        kept = running_best(run.experiments)
        if kept.empty:
            continue
        style = dict(color=color, linewidth=2.2, label=f"{label} ({len(run.experiments)} experiments)")
        _step_to(ax_n, kept["seq"] + 1, kept["best"], int(run.experiments["seq"].max()) + 1, **style)
        _step_to(ax_t, kept["elapsed_s"] / scale, kept["best"], float(run.experiments["elapsed_s"].max()) / scale,
                 **style)
        best, evals, secs = reach_best(run.experiments)
        ax_n.plot([evals], [best], "*", color=color, markersize=13, markeredgecolor="black")
        ax_t.plot([secs / scale], [best], "*", color=color, markersize=13, markeredgecolor="black")
    ax_n.set_xlabel("evaluations (experiments finished)")
    ax_t.set_xlabel(f"wall time since the run started ({unit})")
    for ax in (ax_n, ax_t):
        ax.set_ylabel("best kept val_bpb (lower is better)")
        ax.grid(True, alpha=0.25)
    if ax_n.get_legend_handles_labels()[0]:
        ax_n.legend(loc="upper right", fontsize=9)
    fig.suptitle(f"{labels[0]} vs {labels[1]}: running best (★ = where each run reached its best)")
    return _save(fig, path)


def _distinct_names(a: RunData, b: RunData) -> tuple[str, str]:
    if a.name != b.name:
        return a.name, b.name
    return str(a.run_dir), str(b.run_dir)


# =====================================================================================================
# The page
# =====================================================================================================
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1320px;
       color: #222; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 13px; line-height: 1.6; }
.status { display: inline-block; padding: 2px 8px; border-radius: 4px; background: #eef; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; }
figure { margin: 12px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; max-width: 1000px; }
details summary { cursor: pointer; color: #1f5fa8; }
pre.diff { background: #fafafa; border: 1px solid #eee; padding: 8px; font-size: 12px; overflow-x: auto;
           max-width: 1100px; }
.add { color: #116611; background: #e9f7e9; display: block; } .del { color: #a01818; background: #fbeaea; display: block; }
.hunk { color: #6a4fa3; display: block; }
.muted { color: #888; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value, spec: str = ".6f", empty: str = "—") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return empty
    return format(value, spec)


def table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_diff(diff: str) -> str:
    out = []
    for line in diff.splitlines():
        cls = ("add" if line.startswith("+") and not line.startswith("+++") else
               "del" if line.startswith("-") and not line.startswith("---") else
               "hunk" if line.startswith("@@") else "")
        out.append(f'<span class="{cls}">{esc(line)}</span>' if cls else esc(line) + "\n")
    return "".join(out)


def figure(src: str, caption: str) -> str:
    return f'<figure><img src="{esc(src)}" alt="{esc(caption[:80])}"><figcaption>{caption}</figcaption></figure>'


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n"
            f'<p class="muted">generated by evolve.report on {time.strftime("%Y-%m-%d %H:%M:%S")}</p></body></html>\n')


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def run_status(run: RunData) -> str:
    n, cap = len(run.experiments), run.max_experiments
    if run.running():
        note = " (the journal's last line is still being written; it is left out)" if run.torn else ""
        return f"running: {n} of {cap} experiments so far{note}"
    if cap is not None and n >= cap:
        return f"finished: {n} experiments"
    floor = next((r for r in run.records if isinstance(r, NoiseFloor)), None)
    if floor is not None and not floor.baselines:
        return f"stopped after {n} experiments: the unmodified train.py failed on every island (see the logs)"
    return f"stopped after {n} of {cap} experiments (interrupted or out of time; the same command resumes it)"


def render_meta(run: RunData) -> str:
    df, cfg = run.experiments, run.config
    last = _when(float(df["finished"].max())) if not df.empty else "—"
    items = [
        f'<span class="status">{esc(run_status(run))}</span>',
        f"run dir <code>{esc(run.run_dir)}</code> · lab <code>{esc(run.manifest['lab_dir'])}</code> · "
        f"branches <code>evolve/{esc(run.name)}/island-&lt;k&gt;</code>",
        f"{run.n_islands} islands · selection <b>{esc(config_value(cfg, 'selection.name', '?'))}</b> "
        f"(noise_k {esc(config_value(cfg, 'selection.noise_k', '?'))}, population "
        f"{esc(config_value(cfg, 'selection.population_size', '?'))}) · migration every "
        f"{esc(config_value(cfg, 'migration.interval', '?'))} · reset every {esc(config_value(cfg, 'reset.interval', '?'))}"
        f" · task {esc(run.manifest.get('preset', '?'))}, budget {esc(config_value(cfg, 'task.budget_s', '?'))} s",
        f"noise floor σ = {fmt(run.sigma)} · started {_when(run.start)} · last experiment finished {last}",
    ]
    return '<div class="meta">' + "<br>".join(items) + "</div>"


def render_islands(run: RunData) -> str:
    df = run.experiments
    rows = []
    for isl in run.state.islands:
        mine = df[df["island"] == isl.index]
        champ = isl.champion()
        keeps = max(isl.keeps - int((mine["operator"] == "baseline").sum()), 0)  # improvements, not baselines
        wall, usd = float(mine["wall_s"].sum()), isl.llm_usd
        rows.append([str(isl.index), str(isl.experiments), str(keeps), str(isl.discards), str(isl.crashes),
                     fmt(champ.val_bpb if champ else None), f"<code>{esc(champ.commit[:7]) if champ else '—'}</code>",
                     str(sum(1 for m in run.migrations if m.source == isl.index)),
                     str(sum(1 for m in run.migrations if isl.index in m.targets)), str(isl.resets),
                     f"{wall:.1f}", fmt(wall / keeps if keeps else None, ".1f"), f"{usd:.2f}",
                     fmt(usd / keeps if keeps else None, ".3f"), str(isl.operator_failures)])
    return table(["island", "experiments", "improvements kept", "discards", "crashes", "best val_bpb", "champion",
                  "migrations sent", "received", "resets", "fitness s", "s / improvement", "LLM $", "$ / improvement",
                  "operator failures"], rows, numeric=set(range(1, 15)) - {6})


def render_champions(run: RunData) -> str:
    rows = []
    for r in champion_rows(run):
        rs = r["rescore"]
        if rs is None:
            test, reval = f'<span class="muted">{esc(NOT_RESCORED)}</span>', "—"
        else:
            test = fmt(rs.get("test_bpb")) if rs.get("test_bpb") is not None else \
                f'<span class="muted">{esc(rs.get("reason") or "no test_bpb")}</span>'
            reval = fmt(rs.get("val_bpb"))
        rows.append([esc("; ".join(r["roles"])), f"<code>{esc(r['commit'][:12])}</code>", str(r["origin_island"]),
                     f"{r['val_bpb']:.6f}" + (f' <span class="muted">(mean of {r["observations"]})</span>'
                                              if r["observations"] > 1 else ""),
                     test, reval, esc(r["description"])])
    if not rows:
        return "<p>No champions yet.</p>"
    return table(["role", "commit", "island", "val_bpb (search)", "test_bpb (held out)", "val_bpb (re-run, seed 0)",
                  "description"], rows, numeric={3, 4, 5})


def render_kept_changes(run: RunData) -> str:
    df = run.experiments
    origin = {row.commit: row.island for row in df.itertuples() if row.operator != "baseline"}
    out = []
    for k in range(run.n_islands):
        kept = df[(df["island"] == k) & (df["status"] == KEEP) & (df["operator"] != "baseline")]
        out.append(f"<h3>island {k}: {len(kept)} kept changes</h3>")
        if kept.empty:
            out.append('<p class="muted">none yet</p>')
            continue
        rows = []
        for row in kept.itertuples():
            parents = []
            for p in row.parents:
                src = origin.get(p)
                note = f' <span class="muted">(island {src})</span>' if src is not None and src != k else ""
                parents.append(f"<code>{esc(p[:7])}</code>{note}")
            diff = git_diff(run, row.parents[0], row.commit) if row.parents else ""
            plus = sum(1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
            minus = sum(1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
            details = (f"<details><summary>train.py +{plus} −{minus}</summary>"
                       f'<pre class="diff">{render_diff(diff)}</pre></details>')
            rows.append([str(row.seq), str(row.island_seq), f"<code>{esc(row.commit[:7])}</code>", esc(row.operator),
                         " ".join(parents), fmt(row.val_bpb), fmt(row.delta, "+.6f"), fmt(row.delta_sigma, "+.1f"),
                         esc(row.description), details])
        out.append(table(["seq", "#", "commit", "operator", "parent(s)", "val_bpb", "Δ vs parent", "Δ / σ",
                          "description", "diff vs first parent"], rows, numeric={0, 1, 5, 6, 7}))
    return "\n".join(out)


def render_events(run: RunData) -> str:
    rows = []
    for e in run.events:
        if isinstance(e, Migration):
            what = (f"island {e.source} → {', '.join(map(str, e.targets))}: "
                    + ", ".join(f"<code>{esc(c[:7])}</code> ({v:.6f})" for c, v in e.migrants))
            rows.append([str(e.after_seq), "migration", what])
        elif isinstance(e, Reset):
            what = "; ".join(f"island {i} ← champion <code>{esc(c[:7])}</code> ({v:.6f}) of island {d}"
                             for i, d, c, v in e.resets)
            rows.append([str(e.after_seq), f"reset (round {e.round})", what])
        elif isinstance(e, OperatorFailure):
            rows.append([str(e.after_seq), "operator failure", esc(f"island {e.island} {e.operator}: {e.reason}")])
        elif isinstance(e, NoiseFloor):
            rows.append(["", "noise floor", esc(f"σ = {e.sigma:.6f} from baselines "
                                                + ", ".join(f"{b:.6f}" for b in e.baselines))])
    if not rows:
        return "<p>No events yet.</p>"
    return table(["after seq", "event", "detail"], rows)


def render_report(run: RunData, plots: dict[str, str]) -> str:
    df = run.experiments
    overall_best, evals, secs = reach_best(df)
    headline = (f"{len(df)} experiments, {int(((df['status'] == KEEP) & (df['operator'] != 'baseline')).sum())} "
                f"improvements kept; best val_bpb {fmt(overall_best)}"
                + (f", first reached after {evals} evaluations" if evals else ""))
    body = [
        f"<h1>evolve report: {esc(run.name)}</h1>", render_meta(run), f"<p><b>{esc(headline)}</b></p>",
        "<h2>Progress</h2>",
        figure(plots["progress"], "The best val_bpb each island has found by its own kept experiments (a staircase "
               "that only goes down), against wall time since the run started on the left and against the run's "
               "experiment count on the right; dots are the kept experiments, the dashed black line is the run's "
               "best over all islands."),
        "<h2>Islands</h2>", render_islands(run),
        "<h2>Staircase per island</h2>",
        figure(plots["staircase"], "Every experiment of each island in the island's own order: coloured dots were "
               "kept, grey ones discarded (triangles at the top are worse than the plotted range), red crosses "
               "crashed. The line is the island's best, i.e. its champion: it also drops when a better migrant "
               "arrives or a reset reseeds the island, which is why a discarded child of a migrant can lie below "
               "the island's own keeps. Vertical lines: migrants sent (blue dashed), migrants received (purple "
               "dotted, ★ at the migrant's val_bpb), the island reset to a survivor's champion (red, ★ at its "
               "val_bpb)."),
        "<h2>Lineage</h2>",
        figure(plots["lineage"], "Every measured commit, placed by generation depth from the base commit (left). "
               "Edges join a child to its parent(s): a crossover child (diamond) has two. Colour is the island that "
               "measured the commit; a dashed edge means the parent came from another island (it arrived as a "
               "migrant or by a reset, or crossover drew it from there). Gold rings: commits sent as migrants; red "
               "rings: champions that reseeded a reset island. Filled = kept, hollow = discarded, × = crashed."),
        "<h2>Keep, discard and crash rates</h2>",
        figure(plots["rates"], "Share of experiments kept, discarded and crashed, per island and per operator "
               "(counts inside the bars, totals on the right). Baselines count as kept."),
        "<h2>Champions</h2>",
        "<p>Each island's champion and the hall of fame. val_bpb is what the search measured (the mean when a "
        "commit was measured more than once); test_bpb is the held-out split the search never saw, filled in by "
        "<code>python -m evolve.report RUN_DIR --rescore</code>.</p>",
        render_champions(run),
        "<h2>Kept changes</h2>",
        f"<p>Every change an island kept, with its gain over its parent in val_bpb and in units of the noise floor "
        f"σ = {fmt(run.sigma)} (a change is kept only when it beats its parent by more than "
        f"noise_k × σ). The diff is <code>git diff parent commit -- train.py</code> in the lab.</p>",
        render_kept_changes(run),
        "<h2>Events</h2>", render_events(run),
    ]
    return page(f"evolve report: {run.name}", "\n".join(body))


def render_comparison(a: RunData, b: RunData, plot: str, links: tuple[str | None, str | None]) -> str:
    names = _distinct_names(a, b)
    n_equal = min(len(a.experiments), len(b.experiments))
    rows = []
    stats = []
    for run in (a, b):
        best, evals, secs = reach_best(run.experiments)
        champ = run.state.champion()
        rs = run.rescores.get(champ.commit) if champ else None
        test = (fmt(rs.get("test_bpb")) if rs and rs.get("test_bpb") is not None else
                esc(rs.get("reason")) if rs else f'<span class="muted">{esc(NOT_RESCORED)}</span>')
        df = run.experiments
        baselines = df[df["operator"] == "baseline"]["val_bpb"].dropna()
        stats.append([esc(config_value(run.config, "selection.name", "?")), str(run.n_islands), str(len(df)),
                      str(int(((df["status"] == KEEP) & (df["operator"] != "baseline")).sum())),
                      str(int((df["status"] == CRASH).sum())), fmt(run.sigma),
                      fmt(float(baselines.mean()) if not baselines.empty else None),
                      fmt(best), str(evals) if evals else "—", fmt(secs, ".0f") if secs is not None else "—",
                      fmt(best_after(df, n_equal)), f"<code>{esc(champ.commit[:7])}</code>" if champ else "—", test])
    labels = ["selection", "islands", "experiments", "improvements kept", "crashes", "noise floor σ",
              "baseline val_bpb (mean)", "best val_bpb", "evaluations to reach the best", "seconds to reach the best",
              f"best after {n_equal} evaluations (equal budget)", "champion", "champion test_bpb"]
    for i, label in enumerate(labels):
        rows.append([esc(label), stats[0][i], stats[1][i]])
    link_html = " · ".join(f'<a href="{esc(link)}">{esc(name)} report</a>' for name, link in zip(names, links) if link)
    body = [f"<h1>evolve comparison: {esc(names[0])} vs {esc(names[1])}</h1>",
            f'<div class="meta">{esc(a.run_dir)} ({esc(run_status(a))})<br>{esc(b.run_dir)} '
            f"({esc(run_status(b))})<br>{link_html}</div>",
            figure(plot, "Each run's best kept val_bpb so far against the number of evaluations (left) and against "
                   "wall time (right); the star marks where the run first reached its final best."),
            "<h2>Summary</h2>", table(["", esc(names[0]), esc(names[1])], rows, numeric={1, 2})]
    return page(f"evolve comparison: {names[0]} vs {names[1]}", "\n".join(body))


# =====================================================================================================
# Building reports
# =====================================================================================================
def champion_commits(run: RunData) -> list[str]:
    return [r["commit"] for r in champion_rows(run)]


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
                       ("rates", plot_rates)):
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
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evolve.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run's directory (run.dir)")
    parser.add_argument("run_dir_b", nargs="?", help="a second run: compare the two side by side")
    parser.add_argument("--rescore", action="store_true",
                        help="first re-score the champions on the held-out test split (seed 0; once per commit)")
    parser.add_argument("--cache-dir", help="EVOLVE_CACHE_DIR for the re-scoring runs (default: the run's task.cache_dir)")
    parser.add_argument("--out", help="where to write (default: RUN_DIR/report)")
    args = parser.parse_args(argv)
    runs = [Path(p) for p in (args.run_dir, args.run_dir_b) if p]
    for run_dir in runs:
        if not (run_dir / "run.json").exists():
            print(f"error: {run_dir} is not a run directory (no run.json)", file=sys.stderr)
            return 2
    if args.rescore:
        for run_dir in runs:
            for r in rescore_missing(run_dir, args.cache_dir):
                shown = fmt(r["test_bpb"]) if r["test_bpb"] is not None else r["reason"]
                print(f"[report] rescored {r['commit'][:7]} in {run_dir}: test_bpb {shown}", flush=True)
    path = build_comparison(*runs, args.out) if len(runs) == 2 else build_report(runs[0], args.out)
    print(f"[report] {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
