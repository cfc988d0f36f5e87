"""Reading what a fitness run printed: the summary block, the failure class, the log tail.

train.py prints a line that is exactly ``---`` and then ``key: value`` lines (autoresearch's
format); the step log before it uses carriage returns. Everything here works on text, so it is
equally usable on a log file written by anything else.
"""

from __future__ import annotations

import enum
import math
import os
import re
import signal


class Status(str, enum.Enum):
    OK = "ok"
    CRASH = "crash"
    TIMEOUT = "timeout"
    OOM = "oom"
    NAN = "nan"
    REJECTED = "rejected"  # produced by the guards, never by a run
    # The printed val_bpb is not what the task's evaluator returned (island/metric.py).
    METRIC_MISMATCH = "metric-mismatch"
    # The run took more time than its budget allows, or rebinds the budget (island/budget.py).
    # Recorded like every failed run: status crash in results.tsv (val_bpb 0.000000), with
    # outcome over-budget in experiments.tsv and the journal; its printed val_bpb is kept in the
    # metrics but scores nothing, since it was bought with extra time.
    OVER_BUDGET = "over-budget"
    # Stopped before the end of its budget because its training curve was clearly worse than its
    # parent's (island/curve.py, early_stop.* in the config): no score; results.tsv says discard.
    EARLY_STOPPED = "early-stopped"

    def __str__(self) -> str:  # "ok", not "Status.OK"
        return self.value


OOM_PATTERNS: tuple[str, ...] = (
    "CUDA out of memory",
    "OutOfMemoryError",
    "MemoryError",
    "std::bad_alloc",
    "out of memory",  # HIP/MPS/XLA/cuBLAS spellings ("CUBLAS_STATUS_ALLOC_FAILED" aside)
    "CUBLAS_STATUS_ALLOC_FAILED",
    "can't allocate memory",  # torch's DefaultCPUAllocator
    "Cannot allocate memory",  # ENOMEM from the OS (fork, mmap) under a memory limit
)

MAX_REASON = 300


def collapse_cr(line: str) -> str:
    """A line as a terminal would finally show it: the text after its last carriage return."""
    line = line.rstrip("\r")
    cut = line.rfind("\r")
    return line[cut + 1 :] if cut >= 0 else line


def log_lines(text: str) -> list[str]:
    return [collapse_cr(line) for line in text.split("\n")]


def parse_summary(text: str) -> dict[str, float]:
    """``key: value`` pairs after the last line that is exactly ``---``; non-numeric values skipped.

    Values like ``nan`` and ``inf`` are kept (as floats): the classifier needs to see them.
    """
    lines = log_lines(text)
    anchor = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "---":
            anchor = i
            break
    if anchor is None:
        return {}
    out: dict[str, float] = {}
    for line in lines[anchor + 1 :]:
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        if not key or " " in key:
            continue
        try:
            out[key] = float(value.strip())
        except ValueError:
            continue
    return out


def log_tail(text: str, max_lines: int = 50, max_chars: int = 4096) -> str:
    """The last lines of a log with progress lines collapsed, at most ``max_chars`` characters."""
    lines = log_lines(text)
    while lines and not lines[-1].strip():
        lines.pop()
    tail = "\n".join(lines[-max_lines:])
    if len(tail) > max_chars:
        tail = tail[-max_chars:]
        nl = tail.find("\n")
        if 0 <= nl < 200:
            tail = tail[nl + 1 :]
    return tail


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failure)\b.*")


def last_exception(text: str) -> str | None:
    """The final exception line of the last traceback in ``text`` (``ValueError: boom``)."""
    lines = log_lines(text)
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last)"):
            start = i
            break
    if start is not None:
        for line in lines[start + 1 :]:
            if line.strip() and not line[0].isspace() and not line.startswith(("Traceback", "During handling")):
                return line.strip()
    for line in reversed(lines):
        if _EXC_LINE.match(line.strip()):
            return line.strip()
    return None


def _last_nonempty(text: str) -> str | None:
    """The last non-empty line, preferring the run's own output to the supervisor's notes."""
    fallback = None
    for line in reversed(log_lines(text)):
        s = line.strip()
        if s and not s.startswith("[supervise]"):
            return s
        if s and fallback is None:
            fallback = s
    return fallback


def _short(s: str) -> str:
    s = " ".join(s.split())
    return s if len(s) <= MAX_REASON else s[: MAX_REASON - 3] + "..."


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def classify(returncode: int | None, log_text: str, timed_out: bool, *,
             limit_s: float | None = None) -> tuple[Status, str]:
    """(status, one-line reason) of a finished run.

    Order: timeout (the deadline killed it) > nan (a ``FAIL`` line, or val_bpb nan/inf) > ok (exit 0
    and a finite val_bpb) > oom (memory messages, or SIGKILL that was not ours) > crash.
    ``returncode`` is negative for a signal, as in subprocess.
    """
    summary = parse_summary(log_text)
    val = summary.get("val_bpb")
    if timed_out:
        limit = f" of {limit_s:g} s" if limit_s is not None else ""
        note = f" (a summary had been printed, val_bpb {val:g})" if val is not None else ""
        return Status.TIMEOUT, _short(f"killed at the deadline{limit}{note}")

    lines = log_lines(log_text)
    if any(line.strip() == "FAIL" for line in lines):
        return Status.NAN, "training diverged (FAIL: loss NaN or exploding)"
    if val is not None and not math.isfinite(val):
        return Status.NAN, f"val_bpb is {val}"

    if returncode == 0 and val is not None:
        return Status.OK, f"val_bpb {val:.6f}"

    for line in reversed(lines):
        if any(p in line for p in OOM_PATTERNS):
            return Status.OOM, _short(line.strip())
    if returncode is not None and returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return Status.OOM, "killed by SIGKILL (not by the deadline: likely the kernel's OOM killer)"

    if returncode is None:
        return Status.CRASH, _short(f"no exit status ({_last_nonempty(log_text) or 'empty log'})")
    if returncode == 0:
        return Status.CRASH, "no val_bpb in summary"
    if returncode < 0:
        exc = last_exception(log_text)
        what = f"killed by {_signal_name(-returncode)}"
        return Status.CRASH, _short(f"{what}: {exc}" if exc else what)
    exc = last_exception(log_text) or _last_nonempty(log_text) or "no output"
    return Status.CRASH, _short(f"{exc} (exit {returncode})")


def read_log(path: str | os.PathLike, max_bytes: int = 4 << 20) -> str:
    """The log as text, at most its last ``max_bytes`` bytes (the summary and errors are at the end)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")
