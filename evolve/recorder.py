"""Turns a finished trial into a recorded experiment: its commit, journal record, ref, and the island branches."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import git

from island.fitness import FitnessResult

from . import disk
from .curves import CurveBook
from .journal import Journal
from .lab import Lab, Trailers
from .records import Experiment, Record
from .state import RunState
from .trial import Trial, Verdict


class Recorder:
    """Writes in the order that makes a killed run resumable: journal first, then git."""

    def __init__(self, run_dir: Path, lab: Lab, journal: Journal, state: RunState, base_commit: str,
                 base_sha256: str, min_free_mb: float, curves: CurveBook):
        self.run_dir = run_dir
        self.lab = lab
        self.journal = journal
        self.state = state
        self.base_commit = base_commit
        self.base_sha256 = base_sha256
        self.min_free_mb = min_free_mb
        self.curves = curves
        self.branch_heads: dict[int, str | None] = {}
        self.head_refs: dict[int, str | None] = {}   # each island's exploring head as its ref holds it

    def append(self, record: Record) -> None:
        self.journal.append(record)
        self.state.apply(record)

    def reconcile(self) -> None:
        """Makes git agree with the journal: one ref per recorded experiment, branches at champions."""
        refs = self.lab.experiment_refs()
        for exp in self.state.experiments:
            if refs.get(exp.seq) != exp.commit:
                self.lab.keep_reachable(exp.seq, exp.commit)
        for seq in set(refs) - {e.seq for e in self.state.experiments}:
            self.lab.delete_experiment_ref(seq)
        self.branch_heads = {k: self.lab.branch_head(k) for k in range(self.state.n_islands)}
        self.head_refs = {k: self.lab.head_of(k) for k in range(self.state.n_islands)}
        self.sync_branches()

    def sync_branches(self) -> None:
        """Each island's branch points at its champion (the base commit while it has none); a hot
        island's exploring head, when it has one, is refs/evolve/<run>/head/island-<k>."""
        for island in self.state.islands:
            champion = island.champion()
            commit = champion.commit if champion else self.base_commit
            if self.branch_heads.get(island.index) != commit:
                self.lab.set_branch(island.index, commit)
                self.branch_heads[island.index] = commit
            if self.head_refs.get(island.index) != island.head:   # a hot island's exploring head
                self.lab.set_head(island.index, island.head)
                self.head_refs[island.index] = island.head

    def heads(self) -> dict[int, str]:
        """The commit each island's checkout is left at when the run stops."""
        return {k: self.branch_heads.get(k) or self.base_commit for k in range(self.state.n_islands)}

    def record(self, trial: Trial, verdict: Verdict) -> Experiment:
        try:
            return self._record(trial, verdict)
        except (OSError, git.GitCommandError) as e:
            if disk.is_disk_full(e):
                disk.ensure_free(self.run_dir, self.min_free_mb, f"recording experiment {self.state.next_seq} failed")
            raise

    def _record(self, trial: Trial, verdict: Verdict) -> Experiment:
        runs = trial.runs
        first = runs[0]
        last = max(runs + trial.parent_runs, key=lambda r: r.finished)
        job, proposal, result = first.job, trial.proposal, first.result
        seq = self.state.next_seq
        if proposal is None:
            commit, parents, operator = job.parent, (), "baseline"
            description, cost, sha = f"baseline (seed {job.seed})", {}, self.base_sha256
        else:
            cand = proposal.candidate
            parents, operator, description, cost = cand.parents, cand.operator, cand.description, asdict(cand.cost)
            trailers = Trailers(island=job.island, seq=seq, operator=operator, parents=parents,
                                val_bpb=verdict.val_bpb, status=verdict.status, outcome=result.status.value)
            commit = self.lab.commit_candidate(parents, cand.source, description, trailers)
            sha = proposal.source_sha256
        exp = Experiment(
            seq=seq, island=job.island, island_seq=self.state.islands[job.island].experiments, commit=commit,
            parents=parents, operator=operator, description=description, outcome=result.status.value,
            status=verdict.status, val_bpb=verdict.val_bpb, parent_bpb=verdict.parent_bpb,
            seed=job.seed, wall_s=sum(r.result.wall_s for r in runs + trial.parent_runs), reason=verdict.reason,
            log=self._relative_log(result), started=first.started, finished=last.finished,
            metrics=dict(result.metrics), cost=cost, source_sha256=sha,
            reruns=tuple((r.job.seed, r.result.val_bpb, r.result.status.value, self._relative_log(r.result))
                         for r in runs[1:]),
            rerun_reason=trial.rerun_reason, first_bpb=result.val_bpb if len(runs) > 1 else None,
            parent_reruns=tuple((r.job.seed, r.result.val_bpb, r.result.status.value, self._relative_log(r.result))
                                for r in trial.parent_runs),
            parent=proposal.parent if proposal else "", outlier=verdict.outlier, parent_n=verdict.parent_n,
            stopped_at=result.stopped_at, focus=proposal.focus if proposal else "",
            transcript=proposal.transcript if proposal else "", stand_in_for=proposal.stand_in_for if proposal else "")
        for r in runs:
            self.curves.add(commit, r.job.seed, r.result.curve, seq, r.result.stopped_at)
        for r in trial.parent_runs:
            self.curves.add(proposal.parent, r.job.seed, r.result.curve, seq)
        self.append(exp)
        self.lab.keep_reachable(seq, commit)
        return exp

    def _relative_log(self, result: FitnessResult) -> str:
        return os.path.relpath(result.log_path, self.run_dir) if result.log_path else ""
