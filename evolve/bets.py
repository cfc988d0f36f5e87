"""Multi-step bets of an exploring island (issue 14): an LLM on a hot island may open a bet, a named
direction with N experiments of credit, by starting its one-line description with `[bet NAME N]`.
While the bet is open the island's lineage is exempt from the keep rule (a worse child of the head
is still taken as the head, status explore); when the credit is spent the bet is closed against the
best it reached: kept (that commit joins the population, so it becomes the champion) if it beat the
island's champion as it stood when the bet opened, else abandoned (the island goes back to drawing
parents from its population). Pure functions; the journal holds `bet` records (records.Bet).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .records import CRASH, DISCARD, EXPLORE, KEEP, NOT_ADMITTED, Bet, Experiment
from .trial import Trial, Verdict

BET_MARK = re.compile(r"^\s*\[bet\s+([A-Za-z0-9_.\-]{1,40})\s+(\d{1,3})\]\s*", re.IGNORECASE)


@dataclass
class OpenBet:
    name: str
    credit: int                   # experiments the bet may spend, the opening one included
    spent: int
    best_commit: str
    best_bpb: float
    champion_bpb: float           # the island's champion when the bet opened: what it must beat
    opened_after: int


def parse_bet(description: str) -> tuple[str, int] | None:
    """(name, credit) when a description opens a bet, else None."""
    match = BET_MARK.match(description or "")
    return (match.group(1), int(match.group(2))) if match else None


def exempt(status: str, outcome_ok: bool, outlier: bool, stale: bool) -> bool:
    """Whether a child in an open bet's lineage is taken as the head although the keep rule discarded it."""
    return status == DISCARD and outcome_ok and not outlier and not stale


def bet_verdict(trial: Trial, verdict: Verdict, open_bet: OpenBet | None, head: str | None, temperature: float,
                max_credit: int, island_epoch: int) -> Verdict:
    """A child that opens a bet, or one in an open bet's lineage (a child of the head), is taken as
    the head although the keep rule discarded it (status explore); anything else is unchanged."""
    if trial.proposal is None or temperature <= 0 or max_credit <= 0 or not trial.runs:
        return verdict
    parents = trial.proposal.candidate.parents
    opening = open_bet is None and parse_bet(trial.proposal.candidate.description) is not None
    in_lineage = open_bet is not None and head is not None and head in parents
    ok = trial.runs[0].result.status.value == "ok" and verdict.val_bpb is not None
    if not (opening or in_lineage) or not exempt(verdict.status, ok, verdict.outlier, trial.stale(island_epoch)):
        return verdict
    if opening:
        name, credit = parse_bet(trial.proposal.candidate.description)
        why = f"bet {name} opens ({max(1, min(credit, max_credit))} experiments): exempt from the keep rule"
    else:
        why = f"bet {open_bet.name} ({open_bet.spent + 1} of {open_bet.credit}): exempt from the keep rule"
    return replace(verdict, status=EXPLORE, reason=f"{why}; {verdict.reason}" if verdict.reason else why)


def plan_open(exp: Experiment, bet: OpenBet | None, temperature: float, max_credit: int,
              champion_bpb: float | None) -> Bet | None:
    """A bet opened by the experiment just recorded: a hot island without an open bet, a description
    with the mark, and the child taken as the head (keep or explore)."""
    wanted = parse_bet(exp.description)
    if (wanted is None or bet is not None or temperature <= 0 or max_credit <= 0 or exp.status not in (KEEP, EXPLORE)
            or exp.val_bpb is None):
        return None
    name, credit = wanted
    credit = max(1, min(credit, max_credit))
    return Bet(island=exp.island, name=name, action="open", credit=credit, after_seq=exp.seq,
               best_commit=exp.commit, best_bpb=exp.val_bpb,
               champion_bpb=champion_bpb if champion_bpb is not None else exp.val_bpb)


def plan_close(island: int, bet: OpenBet | None, after_seq: int) -> Bet | None:
    """Due once an open bet has spent its credit."""
    if bet is None or bet.spent < bet.credit:
        return None
    kept = bet.best_bpb < bet.champion_bpb
    return Bet(island=island, name=bet.name, action="close", credit=bet.credit, after_seq=after_seq,
               best_commit=bet.best_commit, best_bpb=bet.best_bpb, champion_bpb=bet.champion_bpb,
               outcome="kept" if kept else "abandoned")


def spend(bet: OpenBet, exp: Experiment) -> OpenBet:
    """The bet after one more experiment of its lineage."""
    # a row that may never be admitted (stale, or runs that disagree beyond belief) spends credit but is never the best
    admissible = exp.status != CRASH and not exp.outlier and not exp.reason.startswith(NOT_ADMITTED)
    better = admissible and exp.val_bpb is not None and exp.val_bpb < bet.best_bpb
    return replace(bet, spent=bet.spent + 1, best_commit=exp.commit if better else bet.best_commit,
                   best_bpb=exp.val_bpb if better else bet.best_bpb)


def story(bets: list[Bet], open_bet: OpenBet | None) -> tuple[str, ...]:
    """The island's bets in words, for its next prompts."""
    lines = []
    for b in bets:
        if b.action == "close":
            lines.append(f"bet {b.name} ({b.credit} experiments) closed: {b.outcome} - best {b.best_bpb:.6f} "
                         f"against the champion's {b.champion_bpb:.6f}")
    if open_bet is not None:
        lines.append(f"bet {open_bet.name} is OPEN: {open_bet.spent} of {open_bet.credit} experiments spent, best so "
                     f"far {open_bet.best_bpb:.6f}, must beat {open_bet.champion_bpb:.6f} by the end; the next ones "
                     f"build on its head and are exempt from the keep rule")
    return tuple(lines)
