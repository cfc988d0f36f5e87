"""A node-local clone: the checkout of an island whose node may not see the driver's file system.

The lab repository stays with the driver. An island on another node keeps its own clone in a
node-local directory and receives the commits it needs as git bundles (bytes, carried by Ray's
object store inside the Job); it never reads or writes the run directory. The candidate's
train.py arrives as text and the driver makes the commit, so records and branches are the same
as on one node.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import git


class NodeClone:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").exists():
            git.Repo.init(self.root).close()

    def receive(self, bundle: bytes, commit: str) -> None:
        """Fetches `commit` and its history from `bundle` (whose prerequisites this clone has)."""
        fd, path = tempfile.mkstemp(suffix=".bundle", dir=self.root / ".git")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bundle)
            with git.Repo(self.root) as repo:
                # One ref per commit received keeps all of them reachable, so git gc never drops one.
                repo.git.fetch("--quiet", path, f"+refs/*:refs/received/{commit}/*")
        finally:
            os.unlink(path)

    def ensure_head(self, commit: str) -> None:
        """A fresh clone has no HEAD yet; check out `commit` so that resets have one to go back to."""
        with git.Repo(self.root) as repo:
            if not repo.head.is_valid():
                repo.git.checkout("--detach", "--force", "--quiet", commit)
