"""Guards around a fitness run: the candidate may change train.py and nothing else.

The worktree is a git checkout (usually a linked worktree) whose HEAD is the parent commit and
whose train.py holds the candidate, uncommitted. ``workdir`` is the task directory, which may be
the worktree root or a folder inside it; paths are matched relative to the repository root.

    pre_run_check(workdir, pin)   -> reason | None    before running: nothing but train.py differs
                                                     from HEAD, prepare.py matches the pin, train.py
                                                     compiles
    post_run_check(workdir, pin)  -> reason | None    after running: prepare.py still matches the pin
                                                     (restored from HEAD when it does not)
    clean_worktree(workdir)                           back to a pristine checkout of HEAD
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import git

TRAIN = "train.py"
PREPARE = "prepare.py"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _repo(workdir: str | os.PathLike) -> git.Repo:
    return git.Repo(workdir, search_parent_directories=True)


def _rel_to_root(repo: git.Repo, workdir: str | os.PathLike, name: str) -> str:
    root = Path(repo.working_tree_dir).resolve()
    rel = (Path(workdir).resolve() / name).relative_to(root)
    return rel.as_posix()


def _changed_paths(repo: git.Repo) -> list[tuple[str, str]]:
    """(XY status, path) for every change against HEAD, untracked files included, ignored ones not."""
    out = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none")
    fields = out.split("\0")
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if not entry:
            continue
        xy, path = entry[:2], entry[3:]
        entries.append((xy, path))
        if xy[0] in "RC":  # a rename/copy is followed by its source path
            if i < len(fields):
                entries.append((xy, fields[i]))
            i += 1
    return entries


def _compile_error(path: Path) -> str | None:
    try:
        source = path.read_bytes()
    except OSError as e:
        return f"train.py cannot be read: {e.strerror or e}"
    try:
        compile(source, "train.py", "exec", dont_inherit=True)
    except SyntaxError as e:
        # Not e.text: for compiled bytes CPython fills it by reading "train.py" from the cwd.
        lines = source.decode("utf-8", errors="replace").splitlines()
        text = lines[e.lineno - 1].strip() if e.lineno and 0 < e.lineno <= len(lines) else ""
        where = f" (line {e.lineno})" if e.lineno else ""
        return f"train.py does not compile: {e.msg}{where}" + (f": {text}" if text else "")
    except ValueError as e:  # e.g. null bytes
        return f"train.py does not compile: {e}"
    return None


def _prepare_problem(workdir: Path, pinned_prepare_sha256: str) -> str | None:
    prepare = workdir / PREPARE
    if not prepare.is_file():
        return "prepare.py is missing"
    if file_sha256(prepare) != pinned_prepare_sha256:
        return "prepare.py does not match its pinned sha256"
    return None


def pre_run_check(workdir: str | os.PathLike, pinned_prepare_sha256: str) -> str | None:
    """A reason to refuse running the candidate in ``workdir``, or None when it may run."""
    workdir = Path(workdir)
    train = workdir / TRAIN
    if train.is_symlink():
        return "train.py is a symbolic link"
    if not train.is_file():
        return "train.py is missing"
    problem = _prepare_problem(workdir, pinned_prepare_sha256)
    if problem:
        return problem
    try:
        repo = _repo(workdir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return f"{workdir} is not a git checkout"
    with repo:
        train_rel = _rel_to_root(repo, workdir, TRAIN)
        others = sorted({p for xy, p in _changed_paths(repo) if p != train_rel or "D" in xy})
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        return f"only train.py may change, but so did: {shown}"
    return _compile_error(train)


def post_run_check(workdir: str | os.PathLike, pinned_prepare_sha256: str) -> str | None:
    """After a run: None when prepare.py is intact; else restore it from HEAD and say what happened."""
    workdir = Path(workdir)
    prepare = workdir / PREPARE
    if not prepare.exists():
        reason = "prepare.py deleted during the run"
    elif not prepare.is_file() or file_sha256(prepare) != pinned_prepare_sha256:
        reason = "prepare.py modified during the run"
    else:
        return None
    try:
        with _repo(workdir) as repo:
            if prepare.is_dir() and not prepare.is_symlink():
                import shutil

                shutil.rmtree(prepare)
            elif prepare.is_symlink() or prepare.exists():
                prepare.unlink()
            repo.git.checkout("HEAD", "--", _rel_to_root(repo, workdir, PREPARE))
    except (git.GitCommandError, OSError) as e:
        return f"{reason}; restoring it from HEAD failed: {e}"
    if not prepare.is_file() or file_sha256(prepare) != pinned_prepare_sha256:
        return f"{reason}; the copy in HEAD does not match the pin either"
    return reason


def clean_worktree(workdir: str | os.PathLike) -> None:
    """Reset the whole checkout containing ``workdir`` to HEAD: tracked files restored (train.py
    included), index reset, untracked and ignored files removed."""
    with _repo(workdir) as repo:
        repo.git.reset("--hard", "--quiet", "HEAD")
        repo.git.clean("-ffdxq")


def reset_checkout(workdir: str | os.PathLike, commit: str) -> None:
    """A pristine checkout of ``commit`` (detached): what the run left is discarded first."""
    clean_worktree(workdir)
    with _repo(workdir) as repo:
        repo.git.checkout("--detach", "--force", "--quiet", commit)
