"""The candidate's environment keeps configuration and loses secrets (island/environment.py):
both lists checked by a real fitness run that dumps what train.py sees, plus task.env."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from evolve.config import ConfigError, register, validate
from island.environment import is_secret_name, scrubbed_env, task_env
from island.fitness import Status, run_fitness
from evolve.keys import _withdrawn

CONF = Path(__file__).resolve().parents[1] / "conf"
register()

NEVER_ARRIVE = {
    "OPENAI_API_KEY": "sk-openai-1", "ANTHROPIC_API_KEY": "sk-ant-2", "MY_SERVICE_API_KEY": "k-3",
    "HF_TOKEN": "hf_tok4", "GITHUB_TOKEN": "ghp_5", "WANDB_API_KEY": "wandb-6",
    "AWS_ACCESS_KEY_ID": "AKIA7", "AWS_SECRET_ACCESS_KEY": "aws-secret-8", "AWS_SESSION_TOKEN": "aws-session-9",
    "AWS_SHARED_CREDENTIALS_FILE": "/root/.aws/credentials10", "AWS_CONFIG_FILE": "/root/.aws/config11",
    "GOOGLE_APPLICATION_CREDENTIALS": "/root/gcp12.json", "CLOUDSDK_CONFIG": "/root/.config/gcloud13",
    "AZURE_CLIENT_SECRET": "az-14", "AZURE_CONFIG_DIR": "/root/.azure15", "AZURE_CLIENT_ID": "az-id-16",
    "DB_PASSWORD": "hunter17", "app_secret_value": "s18", "KUBECONFIG": "/root/.kube/config19",
    "OPENAI_BASE_URL": "https://api.example/v20", "HF_ENDPOINT": "https://hub.example21",
    "WANDB_ENTITY": "team22", "PYTHONINSPECT": "inspect-23",
}
ALWAYS_ARRIVE = {
    "HF_HOME": "/data/hf", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_CACHE": "/data/hf/datasets", "HF_HUB_CACHE": "/data/hf/hub", "TRANSFORMERS_CACHE": "/data/tf",
    "TORCH_HOME": "/data/torch", "XDG_CACHE_HOME": "/data/cache", "WANDB_MODE": "offline", "WANDB_DIR": "/data/wandb",
    "NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": "1", "CUDA_HOME": "/usr/local/cuda", "CUDA_LAUNCH_BLOCKING": "1",
    "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    "CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8",
}

DUMP = textwrap.dedent('''\
    import json, os, sys
    json.dump(dict(os.environ), open(sys.argv[0] + ".env.json", "w"))
    print("---")
    print("val_bpb: 1.000000")
    ''')


def test_configuration_arrives_secrets_do_not(tmp_path, monkeypatch):
    for name, value in {**NEVER_ARRIVE, **ALWAYS_ARRIVE}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "prepare.py").write_text("# no evaluator\n")
    (tmp_path / "train.py").write_text(DUMP)
    r = run_fitness(tmp_path, budget_s=5, grace_s=10, log_path=tmp_path / "run.log", seed=3,
                    extra_env=task_env({"HF_HOME": "/from/task/env", "MY_FLAG": 1}))
    assert r.status is Status.OK, r
    seen = json.loads((tmp_path / "train.py.env.json").read_text())
    assert sorted(set(NEVER_ARRIVE) & set(seen)) == []
    for value in NEVER_ARRIVE.values():
        assert value not in json.dumps(seen)
    assert {k: seen.get(k) for k in ALWAYS_ARRIVE if k != "HF_HOME"} == {
        k: v for k, v in ALWAYS_ARRIVE.items() if k != "HF_HOME"}
    assert seen["HF_HOME"] == "/from/task/env" and seen["MY_FLAG"] == "1"   # task.env adds and overrides


def test_the_name_rules_one_by_one():
    for name in NEVER_ARRIVE:
        assert is_secret_name(name), name
    for name in ALWAYS_ARRIVE:
        assert not is_secret_name(name), name
    # a configuration-looking name never wins over a secret-looking one or a cloud account
    for name in ("HF_TOKEN_CACHE", "SECRET_HOME", "AWS_CACHE_DIR", "GOOGLE_CLOUD_HOME", "API_KEY_OFFLINE"):
        assert is_secret_name(name), name


def test_the_driver_keeps_configuration_and_withdraws_keys():
    """python -m evolve withdraws secrets from its own environment before anything starts, so what
    it withdraws can never reach a candidate either: configuration must not be among it."""
    assert not _withdrawn("TOKENIZERS_PARALLELISM", "false")
    assert not _withdrawn("HF_HOME", "/data/hf") and not _withdrawn("HF_HUB_OFFLINE", "1")
    assert _withdrawn("HF_TOKEN", "hf_x") and _withdrawn("AWS_SESSION_TOKEN", "x")


def test_task_env_refuses_secrets_and_bad_names():
    assert task_env({"HF_HUB_OFFLINE": 1, "WANDB_MODE": "offline", "EMPTY": None}) == {
        "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "EMPTY": ""}
    for name in ("OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS",
                 "OPENAI_BASE_URL"):
        with pytest.raises(ValueError, match=rf"task.env.{name}: train.py never receives secret-looking"):
            task_env({name: "x"})
    with pytest.raises(ValueError, match="task.env.BAD-NAME: not a valid environment variable name"):
        task_env({"BAD-NAME": "1"})
    with pytest.raises(ValueError, match="task.env.INDEX_URL: its value carries credentials"):
        task_env({"INDEX_URL": "https://user:pw@pypi.example/simple"})
    with pytest.raises(ValueError):   # and scrubbed_env refuses the same, should anything bypass task_env
        scrubbed_env({}, {"HF_TOKEN": "x"})


def _config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["islands=2", *overrides])


def test_task_env_knob_composes_and_is_validated():
    cfg = _config("+task.env={HF_HUB_OFFLINE: 1, HF_HOME: /data/hf}")
    validate(cfg, 2)
    assert task_env(cfg.task.env) == {"HF_HUB_OFFLINE": "1", "HF_HOME": "/data/hf"}
    with pytest.raises(ConfigError, match=r"task.env.HF_TOKEN: train.py never receives secret-looking.*HF_HOME"):
        validate(_config("+task.env={HF_TOKEN: abc}"), 2)
    with pytest.raises(ConfigError, match=r"task.seed_env='1X' is not allowed; expected an environment variable name"):
        validate(_config("task.seed_env=1X"), 2)


def test_first_seed_knob_names_its_allowed_values_and_the_ratchet_keeps_the_anchors_fixed_seed():
    assert _config().selection.first_seed == "fresh"
    assert _config("selection=ratchet").selection.first_seed == "island"
    with pytest.raises(ConfigError, match=r"selection.first_seed='seeded' is not allowed; expected fresh or island"):
        validate(_config("selection.first_seed=seeded"), 2)


def test_champion_runs_knob_is_checked_and_the_ratchet_never_re_measures():
    assert _config().selection.champion_runs == 6
    assert _config("selection=ratchet").selection.champion_runs == 0    # the anchor's loop runs nothing extra
    with pytest.raises(ConfigError, match=r"selection.champion_runs=-1 is not allowed; expected an integer >= 0"):
        validate(_config("selection.champion_runs=-1"), 2)
