"""Git as memory: the lab repository of a run, its island branches, worktrees and refs.

One commit per evaluated candidate, written with plumbing (a private index file, no worktree),
so the driver can record a result without touching any island's checkout. Branch
`evolve/<run>/island-<k>` is the island's champion; every evaluated commit, kept or not, stays
reachable under `refs/evolve/<run>/exp/<seq>`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import git
from gitdb import IStream

IDENTITY = {
    "GIT_AUTHOR_NAME": "evolve", "GIT_AUTHOR_EMAIL": "evolve@localhost",
    "GIT_COMMITTER_NAME": "evolve", "GIT_COMMITTER_EMAIL": "evolve@localhost",
}
TASK_FILES = ("train.py", "prepare.py", "program.md")


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Trailers:
    island: int
    seq: int
    operator: str
    parents: tuple[str, ...]
    val_bpb: float | None
    status: str
    outcome: str

    def render(self) -> str:
        bpb = "none" if self.val_bpb is None else f"{self.val_bpb:.6f}"
        return "\n".join([
            f"Evolve-Island: {self.island}",
            f"Evolve-Seq: {self.seq}",
            f"Evolve-Operator: {self.operator}",
            f"Evolve-Parents: {' '.join(self.parents)}",
            f"Evolve-Val-Bpb: {bpb}",
            f"Evolve-Status: {self.status}",
            f"Evolve-Outcome: {self.outcome}",
        ])


class Lab:
    """A git repository holding the task, with `prefix` the task's folder inside it ('' = root)."""

    def __init__(self, repo_dir: Path, run_name: str, prefix: str = ""):
        self.repo = git.Repo(repo_dir)
        self.run_name = run_name
        self.prefix = prefix

    # ---- creation ---------------------------------------------------------------------------
    @staticmethod
    def create_from_files(lab_dir: Path, task_dir: Path, run_name: str) -> "Lab":
        """A fresh repository in the run dir holding a copy of a task that is not under git."""
        lab_dir.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(lab_dir, initial_branch="main")
        for name in TASK_FILES:
            if (task_dir / name).exists():
                shutil.copy2(task_dir / name, lab_dir / name)
        (lab_dir / ".gitignore").write_text("__pycache__/\n")
        repo.index.add([n for n in (*TASK_FILES, ".gitignore") if (lab_dir / n).exists()])
        with repo.git.custom_environment(**IDENTITY):
            repo.git.commit("-m", "task as shipped", "--no-verify")
        return Lab(lab_dir, run_name)

    @staticmethod
    def open_user_repo(task_dir: Path, run_name: str) -> "Lab":
        """The task's own repository; islands become worktrees of it on their own branches."""
        repo = git.Repo(task_dir, search_parent_directories=True)
        top = Path(repo.working_tree_dir).resolve()
        prefix = task_dir.resolve().relative_to(top).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        lab = Lab(top, run_name, prefix)
        dirty = [p for p in repo.git.status("--porcelain", "--", *[prefix + f for f in TASK_FILES]).splitlines() if p]
        if dirty:
            raise LabError(f"{task_dir} has uncommitted changes to its task files ({'; '.join(dirty)}); "
                           "commit or stash them first so the baseline is a commit")
        return lab

    # ---- reading ------------------------------------------------------------------------------
    def head(self) -> str:
        return self.repo.head.commit.hexsha

    def read(self, commit: str, name: str) -> str:
        return self.repo.git.show(f"{commit}:{self.prefix}{name}", strip_newline_in_stdout=False)

    def merge_base(self, a: str, b: str) -> str | None:
        try:
            return self.repo.git.merge_base(a, b) or None
        except git.GitCommandError:
            return None

    def commit_with_files(self, parent: str, files: dict[str, str], message: str,
                          extra_parents: tuple[str, ...] = ()) -> str:
        """Writes a commit whose tree is `parent`'s with `files` replaced; touches no checkout."""
        fd, index = tempfile.mkstemp(prefix="evolve-index-")
        os.close(fd)
        os.unlink(index)  # git wants to create the index itself
        try:
            with self.repo.git.custom_environment(GIT_INDEX_FILE=index, **IDENTITY):
                self.repo.git.read_tree(parent)
                for name, text in files.items():
                    data = text.encode()
                    blob = self.repo.odb.store(IStream("blob", len(data), BytesIO(data))).hexsha.decode()
                    self.repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{self.prefix}{name}")
                tree = self.repo.git.write_tree()
                args = [tree, "-p", parent]
                for extra in extra_parents:
                    args += ["-p", extra]
                return self.repo.git.commit_tree(*args, "-m", message)
        finally:
            if os.path.exists(index):
                os.unlink(index)

    def bundle(self, commit: str, have: set[str] | frozenset[str] = frozenset()) -> bytes | None:
        """A git bundle of `commit` and its history, less what `have` (commits the receiver already
        holds) covers; None when the receiver has `commit` already."""
        ref = f"refs/evolve/{self.run_name}/ship"
        self.repo.git.update_ref(ref, commit)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "history.bundle"
                exclude = ["--not", *sorted(have)] if have else []
                try:
                    self.repo.git.bundle("create", "--quiet", str(path), ref, *exclude)
                except git.GitCommandError as e:
                    if "empty bundle" in str(e):
                        return None
                    raise
                return path.read_bytes()
        finally:
            self.repo.git.update_ref("-d", ref)

    def commit_candidate(self, parents: tuple[str, ...], source: str, description: str,
                         trailers: Trailers) -> str:
        message = f"{description}\n\n{trailers.render()}"
        return self.commit_with_files(parents[0], {"train.py": source}, message, extra_parents=parents[1:])

    # ---- refs ---------------------------------------------------------------------------------
    def branch(self, island: int) -> str:
        return f"evolve/{self.run_name}/island-{island}"

    def set_branch(self, island: int, commit: str) -> None:
        self.repo.git.update_ref(f"refs/heads/{self.branch(island)}", commit)

    def branch_head(self, island: int) -> str | None:
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{self.branch(island)}")
        except git.GitCommandError:
            return None

    def head_ref(self, island: int) -> str:
        """Where a hot island's exploring head is kept (its branch holds its champion)."""
        return f"refs/evolve/{self.run_name}/head/island-{island}"

    def set_head(self, island: int, commit: str | None) -> None:
        """Points the island's head ref at commit, or deletes it (None: no head apart from the champion)."""
        if commit is None:
            if self.head_of(island) is not None:
                self.repo.git.update_ref("-d", self.head_ref(island))
        else:
            self.repo.git.update_ref(self.head_ref(island), commit)

    def head_of(self, island: int) -> str | None:
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", self.head_ref(island))
        except git.GitCommandError:
            return None

    def has_run_refs(self) -> bool:
        """Whether this run's name already has branches or refs in the repository."""
        return bool(self.repo.git.for_each_ref("--count=1", f"refs/evolve/{self.run_name}/",
                                               f"refs/heads/evolve/{self.run_name}/"))

    def keep_reachable(self, seq: int, commit: str) -> None:
        self.repo.git.update_ref(f"refs/evolve/{self.run_name}/exp/{seq:05d}", commit)

    def experiment_refs(self) -> dict[int, str]:
        out = self.repo.git.for_each_ref("--format=%(refname) %(objectname)", f"refs/evolve/{self.run_name}/exp/")
        refs = {}
        for line in out.splitlines():
            name, sha = line.split()
            refs[int(name.rsplit("/", 1)[1])] = sha
        return refs

    def delete_experiment_ref(self, seq: int) -> None:
        self.repo.git.update_ref("-d", f"refs/evolve/{self.run_name}/exp/{seq:05d}")

    # ---- worktrees ----------------------------------------------------------------------------
    def ensure_worktree(self, path: Path, commit: str) -> Path:
        """A detached worktree at `path`; returns the task folder inside it."""
        if not (path / ".git").exists():
            if path.exists():
                shutil.rmtree(path)
            self.repo.git.worktree("prune")
            self.repo.git.worktree("add", "--detach", "--force", str(path), commit)
        return path / self.prefix if self.prefix else path

    def remove_worktree(self, path: Path) -> None:
        if (path / ".git").exists():
            self.repo.git.worktree("remove", "--force", str(path))
