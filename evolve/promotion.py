"""Promotion: a champion trained at promote.factor times the budget next to the base commit at the
same long budget (paired: one seed), to see whether its gain at the search's budget holds.

Pure: which champion is due (`due_promotion`), the trial of its two runs (`PromotionTrial`) and
the record they make (`promotion_record`). The scheduler starts it on an idle island like any job;
it is counted apart from run.max_experiments.
"""
from __future__ import annotations

from dataclasses import replace
from statistics import fmean

from island.actor import Job, Measurement
from island.fitness import Status

from .records import Promotion
from .state import RunState
from .trial import Trial

# A long run that trained less than this share of its long budget did not get it: the task's
# budget does not follow EVOLVE_BUDGET_S (the anchor's prepare.py fixes TIME_BUDGET = 300).
BUDGET_FOLLOWED = 0.75


def due_promotion(state: RunState, every: int, base_commit: str) -> str | None:
    """The commit to promote now, or None: the best island champion (by the mean of its runs) that
    was never promoted and is not the base, once at least ``every`` experiments were recorded since
    the last promotion (or since the start). Off once the task showed it ignores a longer budget."""
    if every <= 0 or any(p.budget_ignored for p in state.promotions):
        return None
    since = state.promotions[-1].after_seq if state.promotions else -1
    if state.next_seq - 1 - since < every:
        return None
    promoted = {p.commit for p in state.promotions}
    champions = [isl.champion() for isl in state.islands]
    fresh = [m for m in champions if m is not None and m.commit not in promoted and m.commit != base_commit]
    return min(fresh, key=lambda m: m.val_bpb).commit if fresh else None


class PromotionTrial(Trial):
    """The champion's long run, then the base commit's long run with the same seed."""

    is_promotion = True

    def __init__(self, champion_job: Job, base_commit: str):
        super().__init__(champion_job, None)
        self.pending = [replace(champion_job, job_id=champion_job.job_id + "-base", parent=base_commit)]

    @property
    def label(self) -> str:
        return f"promotion of {self.runs[0].job.parent[:7] if self.runs else self.job.parent[:7]} at {self.job.budget_s:g} s"

    def next_promotion_run(self) -> bool:
        """Whether the base's run is still due (then self.job is it)."""
        if not self.pending or self._champion_failed():
            return False
        self.job, self.pending = self.pending[0], []
        self.attempts = 1
        return True

    def _champion_failed(self) -> bool:
        return bool(self.runs) and self.runs[0].result.status is not Status.OK

    def file(self, m: Measurement) -> None:
        self.runs.append(m)


def promotion_record(trial: PromotionTrial, state: RunState, base_commit: str, factor: float) -> Promotion:
    champion = trial.runs[0]
    base = trial.runs[1] if len(trial.runs) > 1 else None
    commit = champion.job.parent
    short_delta = fmean(state.runs_of(commit)) - fmean(state.runs_of(base_commit))
    long_champion = champion.result.val_bpb
    long_base = base.result.val_bpb if base is not None else None
    long_delta = long_champion - long_base if long_champion is not None and long_base is not None else None
    trained = champion.result.metrics.get("training_seconds")
    ignored = trained is not None and trained < BUDGET_FOLLOWED * champion.job.budget_s
    failed = next((r for r in trial.runs if r.result.status is not Status.OK), None)
    reason = (f"{'the base' if failed is not champion else 'the champion'}'s long run: {failed.result.status.value}: "
              f"{failed.result.reason}" if failed else "")
    if ignored:
        reason = (f"the task trained {trained:.0f} s of a {champion.job.budget_s:g} s budget: its budget does not follow "
                  "EVOLVE_BUDGET_S, so promotions are off for this run")
    return Promotion(island=champion.job.island, commit=commit, base=base_commit, seed=champion.job.seed,
                     factor=factor, budget_s=champion.job.budget_s, short_delta=short_delta,
                     champion_bpb=long_champion, base_bpb=long_base, long_delta=long_delta,
                     held=long_delta is not None and long_delta < 0 and not ignored,
                     budget_ignored=ignored, reason=reason,
                     wall_s=sum(r.result.wall_s for r in trial.runs), after_seq=state.next_seq - 1)
