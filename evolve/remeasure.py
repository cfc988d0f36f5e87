"""Re-measuring the champion: the run's best commit runs again, at the search's budget and on a
fresh seed, until it has selection.champion_runs successful runs.

Why: a commit becomes champion because its runs were low. Its first run passed the keep rule's
screen and its confirmation stopped on a good pair, so a champion measured twice flatters itself
by most of a sigma (the winner's curse; docs/benchmarks.md, "The champion's number"). Runs that
did not select it dilute that: the number the run reports for it, the mean of all its runs,
becomes an honest estimate. A re-run that makes it worse than another member hands the title
over, and the new champion is re-measured in turn.

Pure: which commit is due (`due_remeasure`), its trial (`RemeasureTrial`) and the record it makes
(`remeasure_record`). The scheduler starts it on an idle island like any job; it is counted apart
from run.max_experiments, and the run's last champion is re-measured after that limit too.
"""
from __future__ import annotations

from statistics import fmean

from island.actor import Job, Measurement
from island.fitness import Status

from .records import Remeasure
from .state import RunState
from .trial import Trial


def due_remeasure(state: RunState, champion_runs: int, base_commit: str) -> str | None:
    """The run's champion while it has fewer than ``champion_runs`` successful runs and fewer
    re-measurements than that (a champion whose re-runs keep failing is not re-run forever), or
    None. Never the base commit: its runs are the baselines, which nothing selected, so their mean
    is honest already. Nothing is due before generation 0 is complete."""
    if champion_runs <= 1 or state.sigma is None:
        return None
    champion = state.champion()
    if (champion is None or champion.commit == base_commit
            or len(state.runs_of(champion.commit)) >= champion_runs):
        return None
    tried = sum(r.commit == champion.commit for r in state.remeasures)
    return champion.commit if tried < champion_runs else None


class RemeasureTrial(Trial):
    """One more run of the champion, as it is (like a baseline: no source of its own)."""

    is_remeasure = True

    def __init__(self, job: Job):
        super().__init__(job, None)

    @property
    def label(self) -> str:
        return f"champion {self.job.parent[:7]} re-measured (seed {self.job.seed})"

    def file(self, m: Measurement) -> None:
        self.runs.append(m)


def remeasure_record(trial: RemeasureTrial, state: RunState) -> Remeasure:
    run = trial.runs[-1]
    commit = run.job.parent
    ok = run.result.status is Status.OK and run.result.val_bpb is not None
    runs = state.runs_of(commit) + ([run.result.val_bpb] if ok else [])
    return Remeasure(island=run.job.island, commit=commit, seed=run.job.seed,
                     val_bpb=run.result.val_bpb if ok else None, outcome=run.result.status.value,
                     reason="" if ok else run.result.reason[:500], runs=len(runs),
                     mean_bpb=fmean(runs) if runs else None, wall_s=run.result.wall_s,
                     after_seq=state.next_seq - 1)
