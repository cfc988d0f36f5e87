"""Disk space of the run dir: a full disk stops the run cleanly instead of corrupting its records.

The engine checks the free space before it starts an experiment and before it records a failed
one (a crash on a full disk is the disk's fault, not the candidate's), and turns any write that
fails with ENOSPC into DiskFull: the run stops, nothing is half-written, and rerunning the same
command once there is space resumes it.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


class DiskFull(RuntimeError):
    """The run dir's file system is (nearly) full; the message says where and what to do."""


def free_mb(path: Path) -> float:
    """Free megabytes (for an unprivileged user) on the file system holding `path` or its nearest
    existing parent."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**20


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it (a git command's stderr, a Ray task's remote error), is a
    write that found no space."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in _FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "cause", None)
    return False


def message(run_dir: Path, min_free_mb: float, detail: str = "") -> str:
    return (f"the disk of {run_dir} is full ({free_mb(run_dir):.0f} MB free, run.min_free_mb={min_free_mb})"
            f"{': ' + detail if detail else ''}. The run stopped without writing a partial record; free some "
            "space and run the same command again to resume (experiments in flight re-run).")


def ensure_free(run_dir: Path, min_free_mb: float, detail: str = "") -> None:
    """Raises DiskFull when the run dir has less than min_free_mb free (or `detail` says a write
    already failed for want of space)."""
    if detail or free_mb(run_dir) < min_free_mb:
        raise DiskFull(message(run_dir, min_free_mb, detail))
