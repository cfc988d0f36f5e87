"""Guards: only train.py may change, prepare.py stays pinned, the worktree ends pristine."""

from __future__ import annotations

import hashlib
import textwrap

import git
import pytest

from island.fitness import Status, run_fitness
from island.guards import clean_worktree, file_sha256, post_run_check, pre_run_check

PREPARE = "# evaluator: never edited\nimport math\n\ndef evaluate(x):\n    return math.log(x)\n"
TRAIN = "x = 1\nprint('---')\nprint('val_bpb: 1.5')\n"


@pytest.fixture
def repo(make_git_repo):
    root = make_git_repo({"train.py": TRAIN, "prepare.py": PREPARE, ".gitignore": "*.log\ncache/\n"})
    return root, file_sha256(root / "prepare.py")


def test_file_sha256(tmp_path):
    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()


def test_a_changed_train_py_passes(repo):
    root, pin = repo
    assert pre_run_check(root, pin) is None  # unchanged (a baseline run) is fine too
    (root / "train.py").write_text(TRAIN + "y = 2\n")
    assert pre_run_check(root, pin) is None
    (root / "run.log").write_text("ignored files do not count")
    (root / "cache").mkdir()
    (root / "cache" / "data.bin").write_bytes(b"\0")
    assert pre_run_check(root, pin) is None


def test_a_changed_prepare_py_is_rejected(repo):
    root, pin = repo
    (root / "prepare.py").write_text(PREPARE.replace("math.log(x)", "0.0"))
    reason = pre_run_check(root, pin)
    assert reason and "prepare.py" in reason
    # even when the pin itself is what changed (a different evaluator), the run is refused
    (root / "prepare.py").write_text(PREPARE)
    assert "pinned sha256" in pre_run_check(root, "0" * 64)


def test_extra_files_are_rejected(repo):
    root, pin = repo
    (root / "train.py").write_text(TRAIN + "y = 2\n")
    (root / "helpers").mkdir()
    (root / "helpers" / "fast.py").write_text("pass\n")
    reason = pre_run_check(root, pin)
    assert reason and "helpers/fast.py" in reason
    (root / "helpers" / "fast.py").unlink()
    (root / ".gitignore").write_text("*\n")  # editing the ignore rules is a change too
    assert ".gitignore" in pre_run_check(root, pin)


def test_a_syntax_error_is_rejected_with_its_line(repo):
    root, pin = repo
    (root / "train.py").write_text("x = 1\ndef f(:\n    pass\n")
    reason = pre_run_check(root, pin)
    assert reason.startswith("train.py does not compile") and "line 2" in reason and "def f(:" in reason


def test_a_missing_train_py_is_rejected(repo):
    root, pin = repo
    (root / "train.py").unlink()
    assert "train.py" in pre_run_check(root, pin)


def _run(root, body: str, tmp_path):
    (root / "train.py").write_text(textwrap.dedent(body) + "print('---'); print('val_bpb: 1.0')\n")
    return run_fitness(root, budget_s=5, grace_s=5, log_path=tmp_path / "run.log")


def test_a_run_that_edits_prepare_py_is_caught_and_undone(repo, tmp_path):
    root, pin = repo
    original = (root / "prepare.py").read_bytes()
    assert pre_run_check(root, pin) is None
    r = _run(root, """
        with open("prepare.py", "a") as f:
            f.write("\\ndef evaluate(x):\\n    return 0.0\\n")
    """, tmp_path)
    assert r.status is Status.OK  # the run itself looked fine ...
    assert post_run_check(root, pin) == "prepare.py modified during the run"  # ... the guard is not fooled
    assert (root / "prepare.py").read_bytes() == original
    assert post_run_check(root, pin) is None


def test_a_run_that_deletes_prepare_py_is_caught_and_undone(repo, tmp_path):
    root, pin = repo
    original = (root / "prepare.py").read_bytes()
    r = _run(root, "import os\nos.remove('prepare.py')\n", tmp_path)
    assert r.status is Status.OK
    assert post_run_check(root, pin) == "prepare.py deleted during the run"
    assert (root / "prepare.py").read_bytes() == original


def test_a_run_that_replaces_prepare_py_by_a_directory_is_undone(repo, tmp_path):
    root, pin = repo
    _run(root, "import os\nos.remove('prepare.py')\nos.mkdir('prepare.py')\n", tmp_path)
    assert post_run_check(root, pin) == "prepare.py modified during the run"
    assert file_sha256(root / "prepare.py") == pin


def test_clean_worktree_restores_a_pristine_checkout(repo):
    root, pin = repo
    (root / "train.py").write_text("changed\n")
    (root / "prepare.py").write_text("changed\n")
    (root / "new.txt").write_text("untracked")
    (root / "out.log").write_text("ignored")
    (root / "cache").mkdir()
    (root / "cache" / "x").write_text("ignored dir")
    r = git.Repo(root)
    r.index.add(["new.txt"])  # even staged changes go
    clean_worktree(root)
    assert (root / "train.py").read_text() == TRAIN
    assert file_sha256(root / "prepare.py") == pin
    assert sorted(p.name for p in root.iterdir()) == [".git", ".gitignore", "prepare.py", "train.py"]
    assert not r.is_dirty(untracked_files=True)


def test_guards_work_in_a_linked_worktree_with_the_task_in_a_subfolder(make_git_repo, tmp_path):
    """The island's layout: a linked worktree (.git is a file) whose task lives in a folder."""
    main = make_git_repo({"task/train.py": TRAIN, "task/prepare.py": PREPARE, "README.md": "lab\n"}, name="lab")
    wt = tmp_path / "wt"
    with git.Repo(main) as lab:
        lab.git.worktree("add", "--detach", str(wt), "HEAD")
    task = wt / "task"
    pin = file_sha256(task / "prepare.py")
    (task / "train.py").write_text(TRAIN + "z = 3\n")
    assert pre_run_check(task, pin) is None
    (wt / "README.md").write_text("changed\n")
    assert "README.md" in pre_run_check(task, pin)
    (wt / "README.md").write_text("lab\n")
    (task / "prepare.py").unlink()
    assert post_run_check(task, pin) == "prepare.py deleted during the run"
    assert file_sha256(task / "prepare.py") == pin
    (task / "stray.py").write_text("x")
    clean_worktree(task)
    assert not (task / "stray.py").exists() and (task / "train.py").read_text() == TRAIN
    assert not git.Repo(main).is_dirty(untracked_files=True)
