"""Keys leave the environment: after withdraw_from_environment() the process's own environment
block (/proc/self/environ, what any process of the user can read) and every child's environment
are free of them, while the LLM operators still get them by name."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from operators.llm import LLMMutation, redact

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""\
    import os, subprocess, sys
    from evolve.keys import withdraw_from_environment
    from operators import keys
    withdraw_from_environment()
    own = open("/proc/self/environ", "rb").read()
    child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.environ))"],
                           capture_output=True, text=True).stdout
    print("held:", keys.get("OPENAI_API_KEY"), keys.get("HF_TOKEN"), keys.get("DB_URL"))
    print("own environ has them:", any(s in own for s in (b"sk-unit-", b"hf_unit", b"s3cret")))
    print("child sees:", [n for n in ("OPENAI_API_KEY", "HF_TOKEN", "DB_URL") if n in child])
    print("kept:", os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"), os.environ.get("RAY_AUTH_MODE"),
          os.environ.get("OPENAI_API_BASE"), sys.argv[1:])
    """)


def test_withdrawn_keys_are_in_memory_only():
    env = {**os.environ, "OPENAI_API_KEY": "sk-unit-0123456789", "HF_TOKEN": "hf_unit_abcdef",
           "DB_URL": "postgres://me:s3cret@db/x", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "RAY_AUTH_MODE": "disabled", "OPENAI_API_BASE": "http://127.0.0.1:9/v1"}
    done = subprocess.run([sys.executable, "-c", PROBE, "arg1", "--flag"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "held: sk-unit-0123456789 hf_unit_abcdef postgres://me:s3cret@db/x"
    assert lines[1] == "own environ has them: False"        # re-executed without them
    assert lines[2] == "child sees: []"
    # litellm's settings, Ray's and non-secret provider settings stay; the arguments survive the re-exec
    assert lines[3] == "kept: True disabled http://127.0.0.1:9/v1 ['arg1', '--flag']"


def test_the_operator_passes_the_providers_key_explicitly(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-unit-key-123")
    monkeypatch.setenv("MY_GATEWAY_KEY", "gw-unit-key-456")
    messages = [{"role": "user", "content": "hi"}]
    assert LLMMutation(model="anthropic/claude-x").completion_kwargs(messages)["api_key"] == "sk-ant-unit-key-123"
    custom = LLMMutation(model="openai/m", api_base="http://h/v1", api_key_env="MY_GATEWAY_KEY")
    assert custom.completion_kwargs(messages)["api_key"] == "gw-unit-key-456"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = LLMMutation(model="openai/local", api_base="http://127.0.0.1:8000/v1")
    assert local.completion_kwargs(messages)["api_key"] == "no-key"
    assert "gw-unit-key-456" not in redact("failed with gw-unit-key-456 in the message")
