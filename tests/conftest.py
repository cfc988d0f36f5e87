"""Shared fixtures (keep them generic)."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

TEST_ACTOR = git.Actor("evolve-tests", "tests@example.invalid")


@pytest.fixture
def make_git_repo(tmp_path):
    """Factory: ``make_git_repo({"train.py": src, "prepare.py": src, ...}, name="repo")`` -> Path.

    Writes the files into a fresh git repository under tmp_path and commits them once.
    """

    def make(files: dict[str, str | bytes], name: str = "repo") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True)
        repo = git.Repo.init(root)
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        repo.git.add("--", *files)  # not repo.index.add: that one chdirs the whole process meanwhile
        repo.index.commit("initial", author=TEST_ACTOR, committer=TEST_ACTOR)
        repo.close()
        return root

    return make


@pytest.fixture(scope="session")
def task_cache(tmp_path_factory) -> Path:
    """The default task's data cache (tokenizer + tokens), built once per test session."""
    import os
    import subprocess
    import sys

    cache = tmp_path_factory.mktemp("evolve-cache")
    task = Path(__file__).resolve().parents[1] / "evolve" / "task"
    done = subprocess.run([sys.executable, "prepare.py"], cwd=task, env={**os.environ, "EVOLVE_CACHE_DIR": str(cache)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return cache
