"""One candidate's runs: when it runs again with a new seed, and its verdict (pure: no Ray, git or I/O)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import fmean
from typing import Callable

from island.actor import Job, Measurement
from island.fitness import Status

from .proposer import Proposal
from .records import DISCARD, KEEP
from .selection import decide, decide_runs, rerun_reason

RERUN_SEED_STRIDE = 10_000   # confirmation run i of a candidate uses its first seed + i * stride


@dataclass(frozen=True)
class Rules:
    """The selection knobs a verdict reads (selection.* in the config)."""

    noise_k: float
    confirm_sigmas: float
    implausible_sigmas: float
    max_runs: int

    @classmethod
    def from_config(cls, selection) -> "Rules":
        return cls(selection.noise_k, selection.confirm_sigmas, selection.implausible_sigmas,
                   1 + selection.confirm_runs)


@dataclass(frozen=True)
class Verdict:
    status: str               # keep / discard / crash
    val_bpb: float | None     # the mean of the successful runs
    reason: str


class Trial:
    """A baseline (no proposal) or a candidate, from its first run to its verdict."""

    def __init__(self, job: Job, proposal: Proposal | None):
        self.job = job                              # the run in progress
        self.proposal = proposal
        self.attempts = 1                           # submissions of the current run (an island that died re-runs it)
        self.earlier: list[Measurement] = []        # finished runs of this candidate
        self.rerun_reason = ""

    @property
    def island(self) -> int:
        return self.job.island

    @property
    def label(self) -> str:
        return self.proposal.candidate.description if self.proposal else "baseline"

    def stale(self, island_epoch: int) -> bool:
        """Whether the island's population changed from outside (reset, migrants) after this
        candidate's parents were drawn: it is then recorded but never admitted."""
        return self.proposal is not None and self.proposal.epoch != island_epoch

    def confirm(self, last: Measurement, sigma: float, rules: Rules, job_id: Callable[[int], str],
                island_epoch: int) -> bool:
        """Whether `last` leaves the verdict open (a would-be keep too close to the noise floor, or
        implausibly large, to trust one run): then self.job becomes its next run, with a new seed.
        A stale candidate is never re-run (it cannot be admitted anyway)."""
        if self.proposal is None or self.stale(island_epoch):
            return False
        runs = self.earlier + [last]
        if any(r.result.status is not Status.OK for r in runs):
            return False
        why = rerun_reason([r.result.val_bpb for r in runs], self.proposal.parent_bpb, sigma,
                           rules.noise_k, rules.confirm_sigmas, rules.implausible_sigmas, rules.max_runs)
        if not why:
            return False
        self.earlier.append(last)
        self.rerun_reason = why
        self.job = replace(self.job, job_id=job_id(self.island),
                           seed=runs[0].job.seed + RERUN_SEED_STRIDE * len(self.earlier))
        self.attempts = 1
        return True

    def verdict(self, last: Measurement, sigma: float, rules: Rules, island_epoch: int) -> Verdict:
        """keep / discard / crash from every run of the candidate, `last` included; a would-be
        keep of a stale candidate is a discard that says why."""
        verdict = self._verdict(last, sigma, rules)
        if verdict.status == KEEP and self.stale(island_epoch):
            return Verdict(DISCARD, verdict.val_bpb, f"not admitted: island {self.island} was reset or received "
                                                     f"migrants while it ran (epoch {self.proposal.epoch} -> "
                                                     f"{island_epoch}); a would-be keep")
        return verdict

    def _verdict(self, last: Measurement, sigma: float, rules: Rules) -> Verdict:
        runs = self.earlier + [last]
        first = runs[0].result
        parent_bpb = self.proposal.parent_bpb if self.proposal else None
        if len(runs) == 1:
            return Verdict(decide(first.status.value, first.val_bpb, parent_bpb, sigma, rules.noise_k),
                           first.val_bpb, first.reason)
        values = [r.result.val_bpb for r in runs if r.result.status is Status.OK]
        failed = next((r for r in runs[1:] if r.result.status is not Status.OK), None)
        if failed is not None:
            return Verdict(DISCARD, fmean(values), f"re-run with seed {failed.job.seed}: "
                                                   f"{failed.result.status.value}: {failed.result.reason}")
        status, reason = decide_runs(values, parent_bpb, sigma, rules.noise_k, rules.implausible_sigmas)
        return Verdict(status, fmean(values), reason)
