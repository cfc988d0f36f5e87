"""Numbers derived from a run: running bests, when the best was reached, each island's champion over
time (by replaying the journal), the champions and hall of fame, and keep / discard / crash counts.
"""
from __future__ import annotations

import math
from collections import defaultdict

import pandas as pd

from ..records import CRASH, DISCARD, KEEP, Experiment, Migration, Reset
from .data import RunData, new_state

HALL_OF_FAME = 10


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
        # The commit's one number, as everywhere else: the mean of all its runs (its baselines or its
        # own runs, its paired runs as a parent, its re-measurements as champion), not its rows' means.
        rows.append({"commit": commit, "roles": roles[commit], "val_bpb": m.val_bpb, "observations": len(m.observations),
                     "origin_island": m.origin_island, "description": describe(run, commit),
                     "rescore": run.rescores.get(commit), "seq": m.seq})
    return sorted(rows, key=lambda r: (r["val_bpb"], r["seq"]))


def champion_commits(run: RunData) -> list[str]:
    return [r["commit"] for r in champion_rows(run)]


def describe(run: RunData, commit: str) -> str:
    rows = run.experiments[run.experiments["commit"] == commit]
    if rows.empty:
        return ""
    if rows["operator"].iloc[0] == "baseline":
        return "baseline (train.py as given)"
    return str(rows["description"].iloc[0])


def outcome_rates(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Counts of keep / discard / crash per value of `by` (island or operator)."""
    counts = frame.groupby([by, "status"]).size().unstack(fill_value=0)
    return counts.reindex(columns=[KEEP, DISCARD, CRASH], fill_value=0)
