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
    """The default task's data cache (tokenizer + tokens), built once per test session by two
    concurrent `python prepare.py` (the second must wait on the first's lock, not build again)."""
    import os
    import subprocess
    import sys

    cache = tmp_path_factory.mktemp("evolve-cache")
    task = Path(__file__).resolve().parents[1] / "evolve" / "task"
    env = {**os.environ, "EVOLVE_CACHE_DIR": str(cache)}
    procs = [subprocess.Popen([sys.executable, "prepare.py"], cwd=task, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "cache: " in out
    assert sum(err.count("building") for _, err in outs) == 1
    return cache


@pytest.fixture
def landscape(tmp_path) -> Path:
    """A private copy of tests/tasks/landscape: a train.py that scores its constants instantly."""
    import shutil

    task = tmp_path / "task"
    shutil.copytree(Path(__file__).resolve().parent / "tasks" / "landscape", task)
    return task
