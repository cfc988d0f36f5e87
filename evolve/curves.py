"""Every run's training curve, kept in the run dir, and the early-stop rule built from them.

curves.jsonl holds one line per fitness run that printed a step log: the commit it ran, its seed,
the experiment's seq, where an early stop cut it (or null) and its points (step, fraction of the
budget, loss), thinned to at most island.curve.MAX_POINTS. It is a side file: the journal stays
the source of truth, a line whose commit no experiment names is ignored, and the same (commit,
seed) written twice (a run re-measured after a kill) keeps the last line.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import fmean

from island.curve import GRID_STEP, EarlyStop, Point, grid, on_grid

CURVES_FILE = "curves.jsonl"
# A curve counts as a reference only if it reached this fraction of the budget.
COMPLETE_FRACTION = 1.0 - GRID_STEP
# The baselines' spread at a grid point is pooled over the grid points this close to it, so that
# two or three baselines give a usable noise estimate.
NOISE_WINDOW = 0.1


class CurveBook:
    def __init__(self, run_dir: Path | None):
        """The book of run_dir's curves.jsonl; None: an empty book in memory only."""
        self.path = Path(run_dir) / CURVES_FILE if run_dir is not None else None
        self.curves: dict[str, dict[int, list[Point]]] = {}   # commit -> seed -> points
        self.stopped: dict[tuple[str, int], float] = {}        # (commit, seed) -> where an early stop cut it
        self.seqs: dict[tuple[str, int], int] = {}             # (commit, seed) -> the experiment's seq
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                data = json.loads(line)
                self._keep(data["commit"], int(data["seed"]), [tuple(p) for p in data["points"]],
                           data.get("stopped_at"), data.get("seq"))
            except (ValueError, KeyError, TypeError):
                continue   # a line cut by a kill: the curve is lost, nothing else

    def _keep(self, commit: str, seed: int, points: list, stopped_at: float | None, seq: int | None) -> None:
        self.curves.setdefault(commit, {})[seed] = [(int(s), float(f), float(v)) for s, f, v in points]
        key = (commit, seed)
        self.stopped.pop(key, None)
        if stopped_at is not None:
            self.stopped[key] = float(stopped_at)
        if seq is not None:
            self.seqs[key] = int(seq)

    def before(self, seq: int) -> "CurveBook":
        """The book as it was before experiment ``seq`` was recorded (in memory; for replays)."""
        book = CurveBook(None)
        for commit, runs in self.curves.items():
            for seed, points in runs.items():
                at = self.seqs.get((commit, seed))
                if at is not None and at < seq:
                    book._keep(commit, seed, points, self.stopped.get((commit, seed)), at)
        return book

    def add(self, commit: str, seed: int, points, seq: int, stopped_at: float | None = None) -> None:
        """Appends one run's curve (nothing for a run that printed none)."""
        if not points:
            return
        points = [list(p) for p in points]
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps({"commit": commit, "seed": seed, "seq": seq, "stopped_at": stopped_at,
                                    "points": points}, separators=(",", ":")) + "\n")
        self._keep(commit, seed, points, stopped_at, seq)

    def of(self, commit: str, complete: bool = False) -> dict[int, list[Point]]:
        """seed -> points of every run of ``commit``; with complete, only runs that reached the end."""
        runs = self.curves.get(commit, {})
        if not complete:
            return dict(runs)
        return {seed: pts for seed, pts in runs.items()
                if (commit, seed) not in self.stopped and pts and pts[-1][1] >= COMPLETE_FRACTION - 1e-9}

    def mean_on_grid(self, commit: str) -> dict[float, float]:
        """The mean of a commit's complete curves at each grid point all of them reach."""
        grids = [on_grid(pts) for pts in self.of(commit, complete=True).values()]
        if not grids:
            return {}
        shared = set.intersection(*(set(g) for g in grids))
        return {g: fmean(c[g] for c in grids) for g in sorted(shared)}

    def spread_on_grid(self, commit: str) -> dict[float, float]:
        """The run-to-run standard deviation of a commit's complete curves (different seeds) at each
        grid point, its variance pooled over the grid points within NOISE_WINDOW; needs 2+ runs."""
        grids = [on_grid(pts) for pts in self.of(commit, complete=True).values()]
        if len(grids) < 2:
            return {}
        variance: dict[float, tuple[float, int]] = {}   # g -> (sum of squares about the mean, dof)
        for g in grid():
            values = [c[g] for c in grids if g in c]
            if len(values) >= 2:
                mean = fmean(values)
                variance[g] = (sum((v - mean) ** 2 for v in values), len(values) - 1)
        out = {}
        for g in variance:
            near = [variance[h] for h in variance if abs(h - g) <= NOISE_WINDOW + 1e-9]
            ss, dof = sum(v for v, _ in near), sum(d for _, d in near)
            if dof and ss > 0:
                out[g] = math.sqrt(ss / dof)
        return out

    def early_stop_rule(self, parent: str, base_commit: str, k: float, min_fraction: float,
                        pattern: str | None) -> EarlyStop | None:
        """The rule a child of ``parent`` runs under: its parent's mean curve as the reference, and as
        the noise the baselines' spread scaled to a child-minus-parent-mean difference. None while
        the parent has no complete curve or fewer than two baselines have one."""
        reference = self.mean_on_grid(parent)
        spread = self.spread_on_grid(base_commit)
        if not reference or not spread:
            return None
        n_parent = len(self.of(parent, complete=True))
        scale = math.sqrt(1 + 1 / n_parent)
        shared = sorted(set(reference) & set(spread))
        if not shared:
            return None
        return EarlyStop(reference=tuple((g, reference[g]) for g in shared),
                         noise=tuple((g, spread[g] * scale) for g in shared),
                         k=k, min_fraction=min_fraction, pattern=pattern)
