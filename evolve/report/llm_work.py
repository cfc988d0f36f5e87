"""What the LLM did in a run, from its records alone (pure): islands compared by research focus,
and the LLM funnel per operator and per island."""
from __future__ import annotations

from dataclasses import dataclass

from ..records import KEEP
from ..state import RunState


@dataclass(frozen=True)
class FocusRow:
    focus: str
    islands: tuple[int, ...]
    experiments: int        # experiments whose prompt carried this focus
    kept: int
    best_gain_sigma: float | None   # the largest gain of a kept one, in noise sigmas
    best_val_bpb: float | None      # the best champion among these islands


def island_focus(state: RunState, island: int) -> str:
    """The focus the island's latest LLM prompt carried ("" for none)."""
    return next((e.focus for e in reversed(state.experiments) if e.island == island and e.focus), "")


def focus_rows(state: RunState) -> list[FocusRow]:
    """One row per distinct focus (islands without one as "(no focus)"), in island order; empty when
    no experiment carried a focus."""
    if not any(e.focus for e in state.experiments):
        return []
    groups: dict[str, list[int]] = {}
    for isl in state.islands:
        groups.setdefault(island_focus(state, isl.index), []).append(isl.index)
    rows = []
    for focus, islands in groups.items():
        mine = [e for e in state.experiments if e.island in islands and not e.is_baseline and e.focus == focus]
        kept = [e for e in mine if e.status == KEEP]
        gains = [(e.parent_bpb - e.val_bpb) / state.sigma for e in kept
                 if state.sigma and e.val_bpb is not None and e.parent_bpb is not None]
        champions = [c.val_bpb for c in (state.islands[k].champion() for k in islands) if c is not None]
        rows.append(FocusRow(focus or "(no focus)", tuple(islands), len(mine), len(kept),
                             max(gains) if gains else None, min(champions) if champions else None))
    return rows
