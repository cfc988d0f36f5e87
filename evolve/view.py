"""What the user sees: a live table per island (rich) or one line per experiment, and a final summary."""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .noise import interval
from .records import Experiment
from .state import RunState


def say(message: str, fresh_line: bool = False) -> None:
    """One line of news from the engine's parts, on stdout, never buffered (fresh_line: after a ^C)."""
    print(f"{chr(10) if fresh_line else ''}[evolve] {message}", flush=True)


def _fmt_bpb(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class LiveView:
    def __init__(self, state: RunState, n_islands: int, max_experiments: int, run_dir: Path, live: bool):
        self.state = state
        self.n = n_islands
        self.max_experiments = max_experiments
        self.run_dir = run_dir
        self.console = Console(soft_wrap=not live)
        self.live = Live(console=self.console, refresh_per_second=2, transient=False) if live else None
        self.running: dict[int, tuple[str, float]] = {}
        self.started_at = time.time()
        self.done_at_start = len(state.experiments)

    def __enter__(self) -> "LiveView":
        mode = "resuming" if self.done_at_start else "starting"
        self.console.print(f"[evolve] {mode} {self.run_dir}: {self.n} islands, "
                           f"{self.done_at_start}/{self.max_experiments} experiments done", markup=False)
        if self.live:
            self.live.start()
            self.refresh()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.refresh()
            self.live.stop()

    def started(self, island: int, description: str) -> None:
        self.running[island] = (description, time.time())

    def idle(self, island: int) -> None:
        """Island's run that is no experiment (a champion's re-measurement) is over."""
        self.running.pop(island, None)

    def finished(self, island: int, exp: Experiment) -> None:
        self.running.pop(island, None)
        if not self.live:
            delta = "" if exp.val_bpb is None or exp.parent_bpb is None else f" ({exp.val_bpb - exp.parent_bpb:+.6f})"
            reason = f" [{exp.outcome}: {exp.reason}]" if exp.outcome != "ok" else ""
            self.console.print(f"[{exp.seq + 1}/{self.max_experiments}] island {exp.island} {exp.status:<7} "
                               f"{_fmt_bpb(exp.val_bpb)}{delta} {exp.operator}: {exp.description}{reason}",
                               highlight=False, markup=False)

    def eta(self) -> str:
        done = len(self.state.experiments) - self.done_at_start
        left = self.max_experiments - len(self.state.experiments)
        if done <= 0:
            return "?"
        return _fmt_duration((time.time() - self.started_at) / done * left)

    def table(self) -> Table:
        t = Table(title=f"{len(self.state.experiments)}/{self.max_experiments} experiments · "
                        f"sigma {_fmt_bpb(self.state.sigma)} ({self.state.sigma_dof} dof) · ETA {self.eta()}")
        for col in ("island", "now", "exp", "keep/discard/crash", "best val_bpb", "champion"):
            t.add_column(col)
        for isl in self.state.islands:
            desc, since = self.running.get(isl.index, ("idle", time.time()))
            champ = isl.champion()
            now = f"{desc[:48]} ({_fmt_duration(time.time() - since)})" if isl.index in self.running else "idle"
            t.add_row(str(isl.index), now, str(isl.experiments), f"{isl.keeps}/{isl.discards}/{isl.crashes}",
                      _fmt_bpb(champ.val_bpb if champ else None), champ.commit[:7] if champ else "-")
        return t

    def refresh(self) -> None:
        if self.live:
            self.live.update(self.table())

    def _with_interval(self, member) -> str:
        """A commit's one number: the mean of all its runs, with its 95% interval and run count."""
        if member is None:
            return "-"
        runs = member.observations   # every run of the commit (RunState keeps members in step)
        lo, hi = interval(runs, self.state.sigma or 0.0)
        return f"{member.val_bpb:.6f} [{lo:.6f}, {hi:.6f}] ({len(runs)} run{'s' if len(runs) > 1 else ''})"

    def print_summary(self, lab, interrupted: bool) -> None:
        s = self.state
        t = Table(title="interrupted" if interrupted else "finished")
        for col in ("island", "experiments", "keeps", "crashes", "best val_bpb (mean of its runs, 95%)", "branch"):
            t.add_column(col)
        for isl in s.islands:
            champ = isl.champion()
            t.add_row(str(isl.index), str(isl.experiments), str(isl.keeps), str(isl.crashes),
                      self._with_interval(champ), lab.branch(isl.index))
        self.console.print(t)
        hof = s.hall_of_fame(5)
        if hof:
            champ = hof[0]
            self.console.print(f"[evolve] {len(s.experiments)} experiments, {s.keeps_total()} keeps; champion "
                               f"{champ.commit[:7]} val_bpb {self._with_interval(champ)} from island "
                               f"{champ.origin_island}; sigma {_fmt_bpb(s.sigma)} ({s.sigma_dof} dof); "
                               f"lab: {lab.repo.working_tree_dir}", highlight=False, markup=False)
            self.console.print("[evolve] hall of fame: " + ", ".join(f"{m.commit[:7]} {m.val_bpb:.6f}" for m in hof),
                               highlight=False, markup=False)
        if s.remeasures:
            self.console.print(f"[evolve] champions re-measured: {len(s.remeasures)} runs of "
                               f"{len({r.commit for r in s.remeasures})} commits (selection.champion_runs), "
                               f"{sum(r.wall_s for r in s.remeasures) / 60:.1f} min of fitness runs outside "
                               "run.max_experiments; see events.tsv", highlight=False, markup=False)
        if s.promotions:
            held = sum(p.held for p in s.promotions)
            self.console.print(f"[evolve] promotions: {len(s.promotions)} ({held} held at the longer budget), "
                               f"{sum(p.wall_s for p in s.promotions) / 60:.1f} min of fitness runs outside "
                               "run.max_experiments; see events.tsv", highlight=False, markup=False)
