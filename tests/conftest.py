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
