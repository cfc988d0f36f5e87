"""One candidate's runs: when it runs again next to its parent, and its verdict (pure: no Ray, git or I/O)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import fmean
from typing import TYPE_CHECKING, Callable

from island.actor import Job, Measurement
from island.fitness import Status

if TYPE_CHECKING:   # only the type: trial.py stays free of git (proposer.py reads the lab)
    from .proposer import Proposal
from .records import DISCARD, EXPLORE, KEEP, NOT_ADMITTED
from .selection import NOT_REPRODUCIBLE, decide, decide_runs, rerun_reason, undecided
from .tempering import in_sigmas, metropolis_probability

RERUN_SEED_STRIDE = 10_000   # paired re-runs use fresh seeds that are multiples of this (Scheduler.fresh_seed)


@dataclass(frozen=True)
class Rules:
    """The selection knobs a verdict reads (selection.* in the config)."""

    noise_k: float
    confirm_sigmas: float
    implausible_sigmas: float
    max_runs: int
    paired_sigmas: float = 0.0
    continue_sigmas: float = 0.0

    @classmethod
    def from_config(cls, selection) -> "Rules":
        return cls(selection.noise_k, selection.confirm_sigmas, selection.implausible_sigmas,
                   1 + selection.confirm_runs, selection.paired_sigmas, selection.continue_sigmas)


@dataclass(frozen=True)
class Verdict:
    status: str                    # keep / discard / crash
    val_bpb: float | None          # the mean of the candidate's successful runs
    reason: str
    parent_bpb: float | None = None   # the mean of every run of the parent it was judged against
    outlier: bool = False          # its runs disagree beyond selection.implausible_sigmas: a fault, not noise
    parent_n: int = 0              # how many runs of the parent parent_bpb is the mean of


class Trial:
    """A baseline (no proposal) or a candidate, from its first run to its verdict. A close call
    runs again together with its parent, both on the same fresh seed (paired)."""

    is_promotion = False     # evolve/promotion.py's PromotionTrial: two long runs, no verdict
    is_remeasure = False     # evolve/remeasure.py's RemeasureTrial: one more run of the champion, no verdict

    def __init__(self, job: Job, proposal: Proposal | None):
        self.job = job                              # the run in progress
        self.proposal = proposal
        self.attempts = 1                           # submissions of the current run (an island that died re-runs it)
        self.runs: list[Measurement] = []           # the candidate's finished runs, the first one first
        self.parent_runs: list[Measurement] = []    # its parent's paired re-runs
        self.pending: list[Job] = []                # runs due before the verdict, after the current one
        self.rerun_reason = ""
        self.confirming = True                      # False once the run stops: no more runs for it

    @property
    def island(self) -> int:
        return self.job.island

    @property
    def label(self) -> str:
        return self.proposal.candidate.description if self.proposal else "baseline"

    def file(self, m: Measurement) -> None:
        """Files a finished run: the candidate's, or its parent's paired re-run."""
        is_parent_run = self.proposal is not None and m.job.source is None
        (self.parent_runs if is_parent_run else self.runs).append(m)

    def stale(self, island_epoch: int) -> bool:
        """Whether the island's population changed (a reset, or migrants that added a member)
        after this candidate's parents were drawn: it is then recorded but never admitted."""
        return self.proposal is not None and self.proposal.epoch != island_epoch

    def child_values(self) -> list[float]:
        return [r.result.val_bpb for r in self.runs if r.result.status is Status.OK]

    def parent_values(self, recorded: list[float]) -> list[float]:
        """Every run of the parent: those recorded in the run, then this trial's paired re-runs."""
        return recorded + [r.result.val_bpb for r in self.parent_runs if r.result.status is Status.OK]

    def next_run(self, sigma: float, rules: Rules, job_id: Callable[[int], str], island_epoch: int,
                 parent_recorded: list[float], fresh_seed: Callable[[], int], unshared: float | None = None) -> bool:
        """Whether another run is due before the verdict; then self.job is that run. A would-be keep
        too close to the noise (or implausibly far beyond it) runs again, then its parent, both with
        the same new seed. A stale candidate is never re-run (it cannot be admitted anyway)."""
        if self.proposal is None or self.stale(island_epoch) or self._failed_run() is not None:
            self.pending = []      # nothing a further run could change
            return False
        if self.pending:
            self.job, self.pending = self.pending[0], self.pending[1:]
            self.attempts = 1
            return True
        if self.parent_runs:     # re-run next to its parent already: a sequential test, up to max_runs
            why = self._sequential_reason(sigma, rules, parent_recorded, unshared)
        else:
            why = rerun_reason(self.child_values(), self.parent_values(parent_recorded), sigma, rules.noise_k,
                               rules.confirm_sigmas, rules.implausible_sigmas, rules.max_runs)
        if not why:
            return False
        if not self.confirming:
            self.rerun_reason = why
            return False
        first = self.runs[0].job
        seed = fresh_seed()   # one the parent has never run with, so its paired run is new information
        # Confirmation runs always run to the end: they exist to measure, not to screen.
        self.job = replace(first, job_id=job_id(self.island), seed=seed, early_stop=None)
        self.pending = [replace(first, job_id=job_id(self.island), parent=self.proposal.parent, source=None, seed=seed,
                                early_stop=None)]
        self.rerun_reason = why
        self.attempts = 1
        return True

    def pairs(self) -> list[tuple[int, float, float]]:
        """(seed, child, parent) for every fresh seed both the candidate and its parent ran with."""
        by_seed = {r.job.seed: r.result.val_bpb for r in self.parent_runs if r.result.status is Status.OK}
        return [(r.job.seed, r.result.val_bpb, by_seed[r.job.seed]) for r in self.runs
                if r.job.seed in by_seed and r.result.status is Status.OK]

    def stop_confirming(self) -> None:
        """The run is stopping: no further run starts, and a candidate whose verdict needed one is
        not kept (an unconfirmed close call is exactly what confirmation exists to refuse)."""
        self.confirming = False
        self.pending = []

    def _failed_run(self) -> Measurement | None:
        """A re-run (the candidate's or its parent's) that did not finish."""
        return next((r for r in self.runs[1:] + self.parent_runs if r.result.status is not Status.OK), None)

    def verdict(self, sigma: float, rules: Rules, island_epoch: int, parent_recorded: list[float],
                unshared: float | None = None, epoch_cause: str = "was reset") -> Verdict:
        """keep / discard / crash from every run of the candidate and of its parent; a would-be keep
        of a stale candidate is a discard that says why, and so is a stale candidate whose sequential
        test was still running (its paired gain short of the margin but not yet a loser): both are
        not admitted, so that readmission() can queue them to train again."""
        verdict = self._verdict(sigma, rules, parent_recorded, unshared)
        if not self.stale(island_epoch):
            return verdict
        if verdict.status == KEEP:
            what = "a would-be keep"
        elif verdict.status == DISCARD and self._still_undecided(sigma, rules, parent_recorded, unshared):
            what = f"its confirmation was still running ({len(self.pairs())} paired seed(s))"
        else:
            return verdict
        return replace(verdict, status=DISCARD, reason=(
            f"{NOT_ADMITTED} island {self.island} {epoch_cause} while it ran "
            f"(epoch {self.proposal.epoch} -> {island_epoch}); {what}"))

    def _still_undecided(self, sigma: float, rules: Rules, parent_recorded: list[float],
                         unshared: float | None) -> bool:
        """Whether the candidate's sequential test would have run again had its island not changed."""
        return (self.confirming and bool(self.parent_runs) and self._failed_run() is None
                and bool(self._sequential_reason(sigma, rules, parent_recorded, unshared)))

    def _sequential_reason(self, sigma: float, rules: Rules, parent_recorded: list[float],
                           unshared: float | None) -> str:
        """selection.undecided on this trial's runs: why its sequential test runs again ("" = decided)."""
        return undecided(self.child_values(), self.parent_values(parent_recorded), self.pairs(), sigma,
                         rules.noise_k, rules.implausible_sigmas, rules.paired_sigmas, rules.max_runs, unshared,
                         rules.continue_sigmas)

    def _verdict(self, sigma: float, rules: Rules, parent_recorded: list[float], unshared: float | None) -> Verdict:
        first = self.runs[0].result
        if not self.confirming and self.rerun_reason and not self.parent_runs:
            child = self.child_values()
            return Verdict(DISCARD, fmean(child) if child else None,
                           f"not confirmed: the run stopped before its confirmation run ({self.rerun_reason})")
        child = self.child_values()
        parent = self.parent_values(parent_recorded) if self.proposal else None
        parent_bpb = fmean(parent) if parent else None
        parent_n = len(parent) if parent else 0
        value = fmean(child) if child else None
        if len(self.runs) == 1 and not self.parent_runs:
            return Verdict(decide(first.status.value, child, parent, sigma, rules.noise_k), value, first.reason,
                           parent_bpb, parent_n=parent_n)
        failed = self._failed_run()
        if failed is not None:
            whose = "its parent's" if failed in self.parent_runs else "its"
            return Verdict(DISCARD, value, f"{whose} re-run with seed {failed.job.seed}: "
                                           f"{failed.result.status.value}: {failed.result.reason}", parent_bpb,
                           parent_n=parent_n)
        status, reason = decide_runs(child, parent, self.pairs(), sigma, rules.noise_k, rules.implausible_sigmas,
                                     rules.paired_sigmas, unshared)
        return Verdict(status, value, reason, parent_bpb, outlier=reason.startswith(NOT_REPRODUCIBLE),
                       parent_n=parent_n)


def tempered(trial: Trial, verdict: Verdict, temperature: float, sigma: float, island_epoch: int,
             head: str | None, draw: Callable[[], float]) -> Verdict:
    """A hot island's verdict: a discarded child of its head (or, before the island has a head, of
    any parent) becomes its new head, status explore, with the Metropolis probability
    exp(-delta / (T sigma)); `draw` gives a uniform number in [0, 1) and is called only when the
    probability is below 1. Crashes, outliers, stale candidates and children of a parent that is no
    longer the head (a replica exchange moved it) stay discarded; so does everything on a greedy island."""
    if (temperature <= 0 or verdict.status != DISCARD or verdict.outlier or trial.proposal is None
            or verdict.val_bpb is None or verdict.parent_bpb is None or not trial.runs
            or trial.runs[0].result.status is not Status.OK or trial.stale(island_epoch)
            or (head is not None and head not in trial.proposal.candidate.parents)):
        return verdict
    delta = in_sigmas(verdict.val_bpb - verdict.parent_bpb, sigma)
    p = metropolis_probability(delta, temperature)
    if p < 1.0 and not draw() < p:
        return verdict
    why = f"explore: {delta:+.1f} sigma against its parent taken at T={temperature:g} (p={p:.3f})"
    return replace(verdict, status=EXPLORE, reason=f"{why}; {verdict.reason}" if verdict.reason else why)


def readmission(trial: Trial, verdict: Verdict, population, head: str | None, island_epoch: int) -> Proposal | None:
    """A stale would-be keep whose parent (what it is judged against) is still a member of the
    island's population or its exploring head (the usual case after migrants, which only add
    members) is queued to train again, once, as a new experiment of the current epoch: its first
    run was measured while the population changed, so it is not admitted on that run, but the idea
    is not lost either. Its new first run gets a seed as any first run does. None: nothing to re-train."""
    proposal = trial.proposal
    if (proposal is None or verdict.status != DISCARD or not verdict.reason.startswith(NOT_ADMITTED)
            or proposal.readmitted or not still_there(proposal.parent, population, head)):
        return None
    # its LLM cost is already on the first row; the second row costs only its training
    candidate = replace(proposal.candidate, cost=type(proposal.candidate.cost)())
    return replace(proposal, candidate=candidate, epoch=island_epoch, readmitted=True)


def still_there(parent: str, population, head: str | None) -> bool:
    """Whether a candidate's parent can still be built on: a member of the island or its head."""
    return bool(parent) and (parent in population or parent == head)
