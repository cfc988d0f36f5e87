"""Why a run stops (the first reason wins, a hard one overrides a soft one) and its exit code."""
from __future__ import annotations

import enum
import signal
import time
from contextlib import contextmanager
from typing import Iterator


class StopReason(enum.Enum):
    # (what the user is told, the exit code a scheduler sees)
    LIMIT = ("reached run.max_experiments", 0)
    DEADLINE = ("reached run.hours", 0)
    SPEND_CAP = ("the LLM spend reached llm.max_cost_usd", 0)
    INTERRUPTED = ("interrupted (Ctrl-C)", 130)   # 128 + SIGINT, what a shell reports
    TERMINATED = ("stopped by SIGTERM", 143)      # 128 + SIGTERM: a preempted job did not finish
    DISK_FULL = ("the run dir's disk is full", 1)
    BASELINES_FAILED = ("the unmodified train.py failed on every island", 1)
    ALL_RETIRED = ("every island is retired", 1)

    @property
    def text(self) -> str:
        return self.value[0]

    @property
    def exit_code(self) -> int:
        return self.value[1]

    @property
    def is_hard(self) -> bool:
        """A stop the user or the machine forced (it overrides a limit reached meanwhile)."""
        return self in (StopReason.INTERRUPTED, StopReason.TERMINATED, StopReason.DISK_FULL)


class Stop:
    """The run's stop request: set by whichever part sees a reason; read by the loop."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.detail = ""
        self.deadline: float | None = None
        self.stopping = False     # the graceful stop has begun: a further SIGTERM must not interrupt it

    def request(self, reason: StopReason, detail: str = "") -> None:
        if self.reason is None or (reason.is_hard and not self.reason.is_hard):
            self.reason, self.detail = reason, detail

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def set_deadline(self, hours: float, used_s: float = 0.0) -> None:
        """run.hours over all starts of the run: `used_s` went to earlier starts (0 hours = none)."""
        self.deadline = time.time() + hours * 3600 - used_s if hours > 0 else None

    def check_deadline(self) -> None:
        if self.deadline is not None and time.time() >= self.deadline:
            self.request(StopReason.DEADLINE)

    @property
    def exit_code(self) -> int:
        return self.reason.exit_code if self.reason else 0

    @contextmanager
    def sigterm_as_interrupt(self) -> Iterator[None]:
        """SIGTERM (a scheduler's preemption) stops the run as gracefully as Ctrl-C does, for the
        whole run: it interrupts whatever runs (start-up, the loop) until the graceful stop has
        begun (`stopping`); from then on it is only recorded, so the stop runs to its end, and the
        exit code says 143 either way."""
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum, frame) -> None:
        self.request(StopReason.TERMINATED)
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt
