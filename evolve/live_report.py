"""The live report: while a run goes on, report/index.html is rebuilt every `report.every` recorded
experiments by a background process, so `python -m evolve.report RUN --serve` can show a night as it
happens.

The engine calls `after_record` once per recorded experiment; it never waits. A refresh is a
separate process (`python -m evolve.report RUN_DIR`, the same command a user runs, at a lower CPU
priority), so the report's plotting never holds the driver's interpreter; at most one is in flight,
and one that would be due while another still runs starts as soon as that one has ended. A failed
refresh is written to `logs/report.log` and said once on the terminal; the run goes on. `finish`,
after the islands stopped, writes the final report (when there is a live report to bring up to
date); a refresh still in flight then is out of date and is stopped, not waited for (reports are
written whole, so nothing half-written is left), which spares the end of every run one report build.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .view import say

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FINAL_TIMEOUT_S = 600.0   # the final report of a very long run; past this it is left to the user's own command


def refresh_due(recorded: int, refreshed_at: int, every: int) -> bool:
    """Whether `recorded` experiments call for a new report, the last one having been started at
    `refreshed_at` recorded experiments (0 before the first; a resumed run refreshes at once)."""
    return every > 0 and recorded - refreshed_at >= every


def report_command(run_dir: Path) -> list[str]:
    """The refresh: the report's own command line, niced where `nice` exists (islands come first)."""
    command = [sys.executable, "-m", "evolve.report", str(run_dir)]
    nice = shutil.which("nice")
    return [nice, "-n", "10", *command] if nice else command


class LiveReport:
    def __init__(self, run_dir: Path, every: int, command: list[str] | None = None):
        self.run_dir = Path(run_dir).resolve()
        self.every = every
        self.command = command or report_command(self.run_dir)
        self.log_path = self.run_dir / "logs" / "report.log"
        self.refreshed_at = 0                   # recorded experiments when the last refresh started
        self.process: subprocess.Popen | None = None
        self.process_started = 0.0
        self.what = ""                          # the refresh in flight (or last started), for the log
        self.failures = 0

    def after_record(self, recorded: int) -> None:
        """Called after each recorded experiment: collects a finished refresh, starts one when due."""
        self._collect(wait=False)
        if self.process is None and refresh_due(recorded, self.refreshed_at, self.every):
            self._start(recorded)

    def finish(self, recorded: int) -> None:
        """At the end of the run (islands stopped), once a live report exists (this start refreshed it, or
        an earlier one did): the final report, instead of any refresh in flight. A run shorter than
        `report.every` gets none, as with report.every=0 (`python -m evolve.report` writes it)."""
        index = self.run_dir / "report" / "index.html"
        if self.every <= 0 or not (self.refreshed_at or index.exists()):
            return
        try:
            self._collect(wait=False)
            if self.process is not None:     # out of date: the final report replaces it
                self._stop()
                self._log(f"{self.what}: superseded by the final report")
            self._start(recorded, final=True)
            self._collect(wait=True)
        except KeyboardInterrupt:
            self._stop()
            say("the final report was not written (interrupted); `python -m evolve.report` writes it", fresh_line=True)
            return
        if index.exists():
            say(f"report: {index}")

    def _start(self, recorded: int, final: bool = False) -> None:
        self.refreshed_at = recorded
        self.what = f"{'final report' if final else 'refresh'} after {recorded} experiments"
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as log:
                log.write(f"{_now()} {self.what}: started\n")
                log.flush()
                self.process = subprocess.Popen(self.command, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:    # a full disk or a missing interpreter: never the run's end
            self._failed(f"{type(e).__name__}: {e}")
            return
        self.process_started = time.time()

    def _collect(self, wait: bool) -> None:
        if self.process is None:
            return
        try:
            code = self.process.wait(timeout=FINAL_TIMEOUT_S) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            self._stop()
            code = "timeout"
        if code is None:
            return
        self.process = None
        seconds = time.time() - self.process_started
        if code == 0:
            self._log(f"{self.what}: ok in {seconds:.1f} s")
        else:
            self._failed(f"timed out after {seconds:.0f} s" if code == "timeout"
                         else f"exit {code} after {seconds:.1f} s")

    def _failed(self, why: str) -> None:
        self.failures += 1
        self._log(f"{self.what}: FAILED ({why})")
        if self.failures == 1:   # said once; every failure is in the log
            say(f"the live report failed ({self.what}: {why}); see {self.log_path}; the run goes on")

    def abandon(self) -> None:
        """The run was cut short: a refresh in flight is killed (reports are written whole, so the
        last complete one stays) and no final report is written; `python -m evolve.report` writes it."""
        self._stop()

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _log(self, line: str) -> None:
        try:
            with open(self.log_path, "a") as log:
                log.write(f"{_now()} {line}\n")
        except OSError:
            pass


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
