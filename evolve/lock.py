"""One process per run dir: an exclusive lock held for the life of the run, naming its holder."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = "lock"


class RunInUse(RuntimeError):
    """Another process holds the run dir; the message says who (pid, host, since)."""


class RunLock:
    """flock(2) on <run_dir>/lock: released by the kernel when the process dies, however it dies."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        """Takes the lock or raises RunInUse at once (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunInUse(f"{self.path.parent} is in use by {holder}; wait for it to finish, stop it "
                           "(Ctrl-C or kill -TERM, then resume with the same command), or choose another "
                           "run.dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)     # closing the descriptor drops the lock
            self.fd = None

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError):
            return "another process"
