"""What the LLM did in a run, from its records alone (pure): islands compared by research focus,
and the LLM funnel per operator and per island."""
from __future__ import annotations

from dataclasses import dataclass

from ..records import KEEP, LLMSummary, OperatorFailure, OperatorFallback
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


@dataclass(frozen=True)
class FunnelRow:
    """What became of one operator's (or one island's) LLM proposals."""

    name: str
    requested: int          # proposals started (each is one conversation with the model)
    parsed: int             # gave a candidate (an applied, compiling edit), duplicates included
    trained: int            # measured by a fitness run (not refused by the island's guards)
    kept: int
    failed: int             # gave no candidate, were dropped or cancelled (operator failures)
    stand_ins: int          # offline candidates trained while a proposal was not ready
    seconds: float
    tokens: int             # prompt + completion
    usd: float
    fell_back: int = 0      # drawn but never requested: a crossover with nothing to combine (OperatorFallback)


def _is_llm(operator: str) -> bool:
    return operator.startswith("llm_")


def _funnel_row(name: str, experiments: list, failures: list, stand_ins: int, summaries: list = (),
                fallbacks: list = ()) -> FunnelRow:
    costs = [e.cost for e in experiments] + [f.cost for f in failures] + [s.cost for s in summaries]
    duplicates = sum("duplicate" in f.reason for f in failures)
    return FunnelRow(
        name=name, requested=len(experiments) + len(failures) + len(summaries),
        parsed=len(experiments) + duplicates + sum(not s.reason for s in summaries),
        trained=sum(e.outcome != "rejected" for e in experiments), kept=sum(e.status == KEEP for e in experiments),
        failed=len(failures) - duplicates + sum(bool(s.reason) for s in summaries), stand_ins=stand_ins,
        seconds=sum(c.get("seconds", 0.0) for c in costs),
        tokens=int(sum(c.get("prompt_tokens", 0) + c.get("completion_tokens", 0) for c in costs)),
        usd=sum(c.get("usd", 0.0) for c in costs), fell_back=len(fallbacks))


def funnel_rows(state: RunState) -> tuple[list[FunnelRow], list[FunnelRow]]:
    """(per operator, per island) funnels of the run's LLM work; both empty when no LLM was used.
    The per-operator list ends with `llm_summary` (lessons.md summaries) when there were any."""
    experiments = [e for e in state.experiments if _is_llm(e.operator)]
    failures = [f for f in state.events if isinstance(f, OperatorFailure) and _is_llm(f.operator)]
    summaries = [s for s in state.events if isinstance(s, LLMSummary)]
    fallbacks = [f for f in state.events if isinstance(f, OperatorFallback) and _is_llm(f.operator)]
    stand_ins = [e for e in state.experiments if e.stand_in_for]
    if not experiments and not failures and not summaries and not fallbacks:
        return [], []
    operators = sorted({e.operator for e in experiments} | {f.operator for f in failures} |
                       {f.operator for f in fallbacks})
    by_operator = [_funnel_row(op, [e for e in experiments if e.operator == op],
                               [f for f in failures if f.operator == op],
                               sum(e.stand_in_for == op for e in stand_ins),
                               fallbacks=[f for f in fallbacks if f.operator == op]) for op in operators]
    if summaries:
        by_operator.append(_funnel_row("llm_summary", [], [], 0, summaries))
    by_island = [_funnel_row(f"island {isl.index}", [e for e in experiments if e.island == isl.index],
                             [f for f in failures if f.island == isl.index],
                             sum(e.island == isl.index for e in stand_ins),
                             fallbacks=[f for f in fallbacks if f.island == isl.index]) for isl in state.islands]
    return by_operator, by_island
