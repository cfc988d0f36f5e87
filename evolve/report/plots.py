"""The report's figures, one PNG each, drawn with matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..curves import CurveBook  # noqa: E402
from ..records import CRASH, DISCARD, KEEP  # noqa: E402
from .data import RunData, distinct_names  # noqa: E402
from .graph import layered_layout, lineage  # noqa: E402
from .stats import champion_history, champion_rows, island_x, outcome_rates, reach_best, running_best  # noqa: E402

STATUS_COLORS = {KEEP: "#2ca02c", DISCARD: "#b0b0b0", CRASH: "#d62728"}


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
    """Written whole or not at all: a browser watching the report (--serve) never gets half a PNG."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    os.replace(tmp, path)
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
    _running_best_axes(ax_t, ax_n, unit, "experiments finished (seq)")
    fig.suptitle(f"{run.name}: best val_bpb found so far, per island ({len(df)} experiments)")
    return _save(fig, path)


def _running_best_axes(ax_t, ax_n, unit: str, count_label: str) -> None:
    """Labels, grid and legend shared by the running-best plots (wall time | experiment count)."""
    ax_t.set_xlabel(f"wall time since the run started ({unit})")
    ax_n.set_xlabel(count_label)
    for ax in (ax_t, ax_n):
        ax.set_ylabel("best kept val_bpb (lower is better)")
        ax.grid(True, alpha=0.25)
    if ax_n.get_legend_handles_labels()[0]:
        ax_n.legend(loc="upper right", fontsize=9)


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
    note = ", pruned to kept commits and their ancestors" if pruned else ""
    ax.set_title(f"lineage: {len(nodes)} commits by generation depth (left to right){note}", fontsize=10)
    return _save(fig, path)


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
    labels = distinct_names(a, b)
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
    _running_best_axes(ax_t, ax_n, unit, "evaluations (experiments finished)")
    fig.suptitle(f"{labels[0]} vs {labels[1]}: running best (★ = where each run reached its best)")
    return _save(fig, path)



def plot_curves(run: RunData, path: Path) -> Path:
    """The run champion's training curve against its parent's and the baselines' (loss against the
    fraction of the budget, every run of each; curves.jsonl)."""
    book = CurveBook(run.run_dir)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    champion = run.state.champion()
    base = run.manifest.get("base_commit", "")
    exp = next((e for e in run.state.experiments if champion and e.commit == champion.commit and not e.is_baseline), None)
    parent = (exp.parent or exp.parents[0]) if exp is not None and exp.parents else None
    drawn = False
    for commit, label, color, width in ((base, "baseline (base commit)", "#777777", 1.0),
                                        (parent, "champion's parent", "#1f77b4", 1.2),
                                        (champion.commit if champion else None, "champion", "#d62728", 1.8)):
        if not commit or (commit == base and label != "baseline (base commit)"):
            continue
        for i, points in enumerate(book.of(commit).values()):
            ax.plot([p[1] for p in points], [p[2] for p in points], color=color, lw=width, alpha=0.8,
                    label=label if i == 0 else None)
            drawn = True
    if not drawn:
        _empty(ax, "no training curves recorded (the task prints no step log the curve pattern reads)")
    else:
        ax.set_xlabel("fraction of the budget")
        ax.set_ylabel("training loss (as printed)")
        losses = [p[2] for runs in book.curves.values() for pts in runs.values() for p in pts if p[1] >= 0.2]
        if losses:
            lo, hi = np.percentile(losses, [1, 90])
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)
