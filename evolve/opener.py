"""Opens a run directory, new or resumed: its lock, pinned settings, workspace, journal replay, refs,
stale processes, clean worktrees, the research brief and the task's data."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import git
from omegaconf import OmegaConf

from island.actor import run_prepare
from island.environment import task_env as island_task_env
from island.fitness import kill_stale
from island.guards import reset_checkout

from .brief import read_brief
from .config import ConfigError
from .journal import Journal
from .lock import RunLock
from .proposer import source_sha256
from .curves import CurveBook
from .recorder import Recorder
from .seeds import seed_warning
from .records import RunStart
from .state import RunState
from .view import say
from .workspace import NEVER_CHANGED, PACKAGED_TASK, Workspace, changed_settings, pinned_settings

PROJECT_PROGRAM = Path(__file__).resolve().parents[1] / "program.md"


@dataclass(frozen=True)
class OpenedRun:
    lock: RunLock                 # held until the run ends
    workspace: Workspace
    state: RunState
    recorder: Recorder
    curves: CurveBook             # every run's training curve (curves.jsonl)
    brief: str                    # the research brief the LLM operators read
    base_sha256: str              # of the unmodified train.py
    task_dirs: list[Path]         # each island's task folder inside its worktree
    task_env: dict[str, str]      # variables every task process gets (the data cache)


def open_run(cfg, run_dir: Path, islands: int) -> OpenedRun:
    """The run in run_dir as its journal left it, with git, processes and checkouts made to agree.
    Raises RunInUse (another process holds it) before touching anything."""
    lock = RunLock(run_dir).acquire()
    try:
        return _open(cfg, run_dir, islands, lock)
    except BaseException:
        lock.release()
        raise


def _open(cfg, run_dir: Path, islands: int, lock: RunLock) -> OpenedRun:
    settings = pinned_settings(cfg)
    if Workspace.exists(run_dir):
        ws = Workspace.open(run_dir, islands)
        _check_settings(ws, settings, cfg.run.accept_changed_settings)
    else:
        ws = Workspace.create(run_dir, cfg.task, islands, settings)
    _save_config(cfg, run_dir)
    journal = Journal(run_dir, islands)
    records = journal.load()
    state = RunState.replay(islands, cfg.selection.population_size, records)
    journal.rewrite_views(records)
    base = ws.manifest.base_commit
    base_sha256 = source_sha256(ws.lab.read(base, "train.py"))
    curves = CurveBook(run_dir)
    recorder = Recorder(run_dir, ws.lab, journal, state, base, base_sha256, cfg.run.min_free_mb, curves)
    recorder.reconcile()
    recorder.append(RunStart(time=time.time(), after_seq=state.next_seq - 1))
    for pidfile in (run_dir / "pids").glob("*.pid"):
        kill_stale(pidfile)    # fitness runs a killed driver left behind
    task_dirs = ws.ensure_worktrees()
    for k in range(islands):
        reset_checkout(ws.worktree(k), base)
    note = seed_warning(ws.lab.read(base, "train.py"), cfg.task.seed_env, ws.lab.read(base, "prepare.py"))
    if note:
        say(note)
    return OpenedRun(lock=lock, workspace=ws, state=state, recorder=recorder, curves=curves, brief=_brief(ws, cfg.task),
                     base_sha256=base_sha256, task_dirs=task_dirs, task_env=task_env(cfg.task))


def _check_settings(ws: Workspace, now: dict, accept: bool) -> None:
    """A resume measures what the run measured: a changed pinned setting stops it (unless accepted)."""
    changes = changed_settings(ws.manifest.settings, now) if ws.manifest.settings else {}
    if not changes:
        if set(now) - set(ws.manifest.settings):   # a run made before (some) settings were pinned: pin them now
            ws.manifest = replace(ws.manifest, settings={**now, **ws.manifest.settings})
            ws.write_manifest()
        return
    listed = "; ".join(f"{key}: the run has {old!r}, this start has {new!r}" for key, (old, new) in changes.items())
    for key in NEVER_CHANGED:
        if key in changes:
            raise ConfigError(f"{key} cannot change on resume: the run's git refs and branches are named after it "
                              f"({listed}); resume with {key}={changes[key][0]} or start a new run.dir")
    if not accept:
        raise ConfigError(f"{ws.run_dir} was created with other settings ({listed}). Resume with the run's "
                          "values (or drop the overrides), start a new run.dir, or set "
                          "run.accept_changed_settings=true to resume with the new ones anyway")
    say(f"resuming with changed settings (run.accept_changed_settings=true): {listed}")
    record = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), **{k: [old, new] for k, (old, new) in changes.items()}}
    ws.manifest = replace(ws.manifest, settings=now, setting_changes=[*ws.manifest.setting_changes, record])
    ws.write_manifest()


def _save_config(cfg, run_dir: Path) -> None:
    """The config this start runs with, where Hydra would keep it (written only once the lock is
    held: conf/config.yaml turns Hydra's own copy off, so a refused start changes nothing)."""
    path = run_dir / ".hydra" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path)


def task_env(task_cfg) -> dict[str, str]:
    """Variables every task process gets: task.env, and the data cache (EVOLVE_CACHE_DIR)."""
    env = island_task_env(task_cfg.env)
    if task_cfg.cache_dir:
        env["EVOLVE_CACHE_DIR"] = str(Path(task_cfg.cache_dir).expanduser().resolve())
    return env


def _brief(ws: Workspace, task_cfg) -> str:
    """The research brief: task.brief's file, else the task's own program.md, else the project's."""
    if task_cfg.brief:
        return read_brief(task_cfg.brief, task_cfg.dir)
    try:
        return ws.lab.read(ws.manifest.base_commit, "program.md")
    except git.GitCommandError:  # the task has none
        return PROJECT_PROGRAM.read_text() if PROJECT_PROGRAM.exists() else ""


def prepare_task_data(opened: OpenedRun) -> None:
    """Builds the packaged task's data cache once, before islands start (custom tasks do their own)."""
    if Path(opened.workspace.manifest.task_dir) != PACKAGED_TASK:
        return
    say("preparing task data (built once, then cached)")
    error = run_prepare(opened.task_dirs[0], sys.executable, opened.task_env)
    if error:
        raise RuntimeError(error)
