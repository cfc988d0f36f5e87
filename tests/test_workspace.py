"""Creating a run's workspace: presets applied to the lab's base commit, clear errors for bad tasks."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import git
import pytest
from hydra import compose, initialize_config_dir

from evolve.config import ConfigError, register
from evolve.lab import IDENTITY, LabError
from evolve.workspace import PACKAGED_TASK, Workspace

CONF = Path(__file__).resolve().parents[1] / "conf"
register()


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["islands=2", *overrides])


def changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    assert len(a.splitlines()) == len(b.splitlines())
    return [(x, y) for x, y in zip(a.splitlines(), b.splitlines()) if x != y]


def test_h100_preset_rewrites_only_its_constants_in_the_base_commit(tmp_path: Path):
    cfg = config("task=h100")
    ws = Workspace.create(tmp_path / "run", cfg.task, 2)
    base = ws.manifest.base_commit
    train, prepare = ws.lab.read(base, "train.py"), ws.lab.read(base, "prepare.py")
    train_changes = changed_lines((PACKAGED_TASK / "train.py").read_text(), train)
    assert {old.split("=")[0].strip() for old, _ in train_changes} <= set(cfg.task.train_constants)
    assert "DEPTH = 8" in train and "COMPILE = True" in train
    assert 'DATA_SOURCE = "parquet"' in prepare and "MAX_SEQ_LEN = 2048" in prepare
    assert ws.manifest.prepare_sha256 == hashlib.sha256(prepare.encode()).hexdigest()
    assert "task preset h100" in ws.lab.repo.commit(base).message
    reopened = Workspace.open(tmp_path / "run", 2)
    assert reopened.manifest == ws.manifest
    with pytest.raises(ConfigError, match="islands=3 does not match"):
        Workspace.open(tmp_path / "run", 3)


def test_tiny_preset_uses_the_files_as_shipped(tmp_path: Path):
    ws = Workspace.create(tmp_path / "run", config().task, 2)
    assert ws.lab.read(ws.manifest.base_commit, "train.py") == (PACKAGED_TASK / "train.py").read_text()


def test_task_dir_without_train_py_names_the_key(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"task.dir=.*has no train.py"):
        Workspace.create(tmp_path / "run", config("task=custom", f"task.dir={tmp_path / 'empty'}").task, 2)


def test_preset_constant_missing_from_a_custom_task_is_a_clear_error(tmp_path: Path):
    task = tmp_path / "task"
    shutil.copytree(Path(__file__).parent / "tasks" / "landscape", task)
    cfg = config("task=custom", f"task.dir={task}", "+task.train_constants.DEPTH=8")
    with pytest.raises(ConfigError, match="DEPTH"):
        Workspace.create(tmp_path / "run", cfg.task, 2)


def test_uncommitted_task_files_in_a_user_repo_are_refused(tmp_path: Path):
    task = tmp_path / "task"
    shutil.copytree(Path(__file__).parent / "tasks" / "landscape", task)
    repo = git.Repo.init(task)
    repo.git.add("train.py", "prepare.py")
    with repo.git.custom_environment(**IDENTITY):
        repo.git.commit("-m", "task")
    (task / "train.py").write_text((task / "train.py").read_text() + "\n# local edit\n")
    with pytest.raises(LabError, match="uncommitted changes"):
        Workspace.create(tmp_path / "run", config("task=custom", f"task.dir={task}").task, 2)


def test_a_task_inside_this_project_is_copied_not_run_in_place(tmp_path: Path):
    inside = Path(__file__).parent / "tasks" / "landscape"
    ws = Workspace.create(tmp_path / "run", config("task=custom", f"task.dir={inside}").task, 2)
    assert Path(ws.manifest.lab_dir) == tmp_path / "run" / "lab"
    project = git.Repo(Path(__file__).resolve().parents[1])
    assert not [h for h in project.heads if h.name.startswith("evolve/")]


def test_per_island_llm_temperament_composes_and_is_validated():
    from evolve.config import validate

    cfg = config("+llm.islands={0: {temperature: 0.3}, 1: {model: openai/gpt-4o-mini}}")
    validate(cfg, 2)
    assert dict(cfg.llm.islands[1]) == {"model": "openai/gpt-4o-mini"}
    with pytest.raises(ConfigError, match=r"llm.islands.5.*an island index in 0..1"):
        validate(config("+llm.islands={5: {temperature: 0.3}}"), 2)
    with pytest.raises(ConfigError, match=r"llm.islands.0.colour.*one of model, temperature"):
        validate(config("+llm.islands={0: {colour: red}}"), 2)
