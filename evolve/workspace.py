"""The run directory: its manifest, the lab repository, the islands' worktrees, the pinned evaluator.

Layout of <run.dir>:
    run.json              manifest (run name, islands, base commit, prepare.py's pinned hash)
    journal.jsonl         every finished experiment and event (the source of truth)
    experiments.tsv       one row per experiment, all islands
    events.tsv            noise floor, migrations, resets
    islands/<k>/results.tsv   the anchor's format, per island
    logs/island-<k>/*.log     the full output of every fitness run
    lab/                  the lab repository (only when the task is not already in a git repo)
    worktrees/island-<k>/ each island's checkout
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import git
from omegaconf import OmegaConf

from operators.constants import rewrite_constants

from .config import ConfigError
from .lab import Lab

PACKAGED_TASK = Path(__file__).resolve().parent / "task"
PROJECT_ROOT = PACKAGED_TASK.parents[1]


@dataclass(frozen=True)
class Manifest:
    run_name: str
    islands: int
    lab_dir: str
    prefix: str
    base_commit: str
    prepare_sha256: str
    task_dir: str
    preset: str
    created: float
    # The settings that define what the run measures (PINNED), as it was created with them; a
    # resume that changes one stops (run.accept_changed_settings), rescore repeats runs with them.
    settings: dict = field(default_factory=dict)
    # Pinned settings changed on resume with run.accept_changed_settings=true: [{time, key: [old, new]}].
    setting_changes: list = field(default_factory=list)


# What a run measures depends on these; they may not change silently between starts of one run.
# Limits (run.max_experiments, run.hours, llm.max_cost_usd, ...) and operators may.
PINNED = ("task.preset", "task.dir", "task.budget_s", "task.grace_s", "task.python", "task.evaluator",
          "task.max_memory_mb", "task.train_constants", "task.prepare_constants", "task.env", "task.seed_env",
          "task.curve_pattern", "task.enforce_budget", "task.budget_tolerance", "task.budget_tolerance_s",
          "task.uncounted_margin", "task.uncounted_margin_s",
          "selection.name", "selection.noise_k", "selection.population_size", "selection.baseline_runs",
          "selection.min_baselines", "selection.tournament_size", "selection.confirm_sigmas",
          "selection.paired_sigmas", "selection.continue_sigmas", "selection.implausible_sigmas", "selection.confirm_runs", "selection.t_max",
          "selection.bet_max_credit", "selection.widen_sigma", "selection.first_seed",
          "early_stop.enabled", "early_stop.k", "early_stop.min_fraction",
          "seed", "run.name")
# A run's refs are named after run.name: it never changes, not even with run.accept_changed_settings.
NEVER_CHANGED = ("run.name",)


def pinned_settings(cfg) -> dict:
    """The PINNED values of a config, as plain JSON-able values (run.name as the run will use it)."""
    values = {key: OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=True)
              if OmegaConf.is_config(OmegaConf.select(cfg, key)) else OmegaConf.select(cfg, key) for key in PINNED}
    values["run.name"] = run_name_for(Path(cfg.run.dir), cfg.run.name)
    if values["task.dir"]:
        values["task.dir"] = str(Path(values["task.dir"]).expanduser().resolve())
    return values


def changed_settings(pinned: dict, now: dict) -> dict[str, tuple]:
    """{key: (the run's value, the new value)} for every pinned key that differs."""
    return {key: (pinned[key], now.get(key)) for key in pinned if pinned[key] != now.get(key)}


def run_name_for(run_dir: Path, name: str | None = None) -> str:
    """A git-ref-safe run name: `name` (run.name) if given, else the run dir's base name;
    multirun job dirs (…/<sweep>/<n>) become '<sweep>-<n>'."""
    if not name:
        name = run_dir.name if not run_dir.name.isdigit() else f"{run_dir.parent.name}-{run_dir.name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "run"


def _apply_constants(text: str, constants: dict, filename: str) -> str:
    if not constants:
        return text
    try:
        return rewrite_constants(text, dict(constants))
    except ValueError as e:
        raise ConfigError(f"task constants for {filename}: {e} (for your own task.dir use task=custom)") from e


class Workspace:
    def __init__(self, run_dir: Path, manifest: Manifest):
        self.run_dir = run_dir
        self.manifest = manifest
        self.lab = Lab(Path(manifest.lab_dir), manifest.run_name, manifest.prefix)

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "run.json"

    @staticmethod
    def exists(run_dir: Path) -> bool:
        return (run_dir / "run.json").exists()

    @classmethod
    def open(cls, run_dir: Path, islands: int | None = None) -> "Workspace":
        """The run in run_dir; `islands`, when given, must be the run's."""
        manifest = Manifest(**json.loads((run_dir / "run.json").read_text()))
        if islands is not None and manifest.islands != islands:
            raise ConfigError(f"islands={islands} does not match the run in {run_dir}, which has "
                              f"islands={manifest.islands}; resume with islands={manifest.islands} "
                              "or choose a new run.dir")
        return cls(run_dir, manifest)

    def write_manifest(self) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.manifest), indent=2))
        tmp.replace(self.manifest_path)

    @classmethod
    def create(cls, run_dir: Path, task_cfg, islands: int, settings: dict | None = None) -> "Workspace":
        """A new run: its lab (or the task's own repository), base commit and manifest. `settings`
        are the pinned settings (pinned_settings); their run.name names the run's refs."""
        task_dir = Path(task_cfg.dir).expanduser().resolve() if task_cfg.dir else PACKAGED_TASK
        for required in ("train.py", "prepare.py"):
            if not (task_dir / required).is_file():
                raise ConfigError(f"task.dir={str(task_dir)!r} has no {required}; expected a directory with "
                                  "train.py and prepare.py (the autoresearch convention)")
        settings = dict(settings or {})
        run_name = settings.get("run.name") or run_name_for(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        # A task inside evolve's own checkout (e.g. tests/tasks/...) is copied, never run in place:
        # island branches and worktrees belong in the user's repository, not in this project's.
        in_user_repo = task_cfg.dir is not None and _git_toplevel(task_dir) not in (None, PROJECT_ROOT)
        if in_user_repo:
            lab = Lab.open_user_repo(task_dir, run_name)
            if lab.has_run_refs():
                raise ConfigError(f"the repository {lab.repo.working_tree_dir} already has branches or refs of a run "
                                  f"named {run_name!r} (evolve/{run_name}/..., refs/evolve/{run_name}/...) made from "
                                  f"another run dir; set run.name to a new name, or resume that run from its own "
                                  "run dir")
            head = lab.head()
        else:
            lab = Lab.create_from_files(run_dir / "lab", task_dir, run_name)
            head = lab.head()
        files = {}
        for name, constants in (("train.py", task_cfg.train_constants), ("prepare.py", task_cfg.prepare_constants)):
            original = lab.read(head, name)
            rewritten = _apply_constants(original, constants, name)
            if rewritten != original:
                files[name] = rewritten
        base = lab.commit_with_files(head, files, f"evolve: task preset {task_cfg.preset}") if files else head
        if not in_user_repo:
            lab.repo.git.update_ref("refs/heads/main", base)
            lab.repo.git.reset("--hard", base)
        prepare_sha = hashlib.sha256(lab.read(base, "prepare.py").encode()).hexdigest()
        manifest = Manifest(run_name=run_name, islands=islands, lab_dir=str(Path(lab.repo.working_tree_dir)),
                            prefix=lab.prefix, base_commit=base, prepare_sha256=prepare_sha,
                            task_dir=str(task_dir), preset=task_cfg.preset, created=time.time(),
                            settings=settings)
        ws = cls(run_dir, manifest)
        ws.write_manifest()
        return ws

    def worktree(self, island: int) -> Path:
        return self.run_dir / "worktrees" / f"island-{island}"

    def ensure_worktrees(self) -> list[Path]:
        """Creates missing worktrees; returns each island's task folder inside its worktree."""
        return [self.lab.ensure_worktree(self.worktree(k), self.manifest.base_commit)
                for k in range(self.manifest.islands)]


def _git_toplevel(path: Path) -> Path | None:
    try:
        return Path(git.Repo(path, search_parent_directories=True).working_tree_dir).resolve()
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
