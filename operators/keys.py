"""API keys, held in the driver's memory and nowhere else.

A candidate train.py runs as the same user as the engine, so it can read the environment of
every process of that user (/proc/<pid>/environ): the driver's, Ray's, every git command's. So
`python -m evolve` withdraws every secret-looking variable from its environment before anything
starts (`withdraw_from_environment`): it re-executes itself once without them, receiving them
through a pipe, so that not even its own initial environment block holds them, and no process it
starts inherits them. The LLM operators then pass the provider's key to litellm explicitly
(`api_key_for`).
"""
from __future__ import annotations

import json
import os
import sys

from island.environment import ALWAYS_KEEP, has_secret_value, looks_secret

_FD_VARIABLE = "EVOLVE_KEYS_FD"
_held: dict[str, str] = {}


def _withdrawn(name: str, value: str) -> bool:
    """Secret-looking names (island.environment.looks_secret: TOKENIZERS_PARALLELISM is not one;
    litellm's settings and Ray's own are left in place) and values that carry credentials."""
    upper = name.upper()
    if name in ALWAYS_KEEP or upper.startswith(("RAY_", "LITELLM_LOCAL_", "LITELLM_LOG")):
        return False
    return looks_secret(name) or has_secret_value(value)


def withdraw_from_environment() -> None:
    """Moves every secret out of os.environ into this process's memory, re-executing the process
    once (same interpreter, same arguments) so that its environment block is clean too. Call it
    first thing in an entry point, before any thread or child process exists."""
    if _FD_VARIABLE in os.environ:   # the re-executed process: read what the first one held
        fd = int(os.environ.pop(_FD_VARIABLE))
        with os.fdopen(fd, "rb") as pipe:
            _held.update(json.loads(pipe.read() or b"{}"))
        return
    secrets = {k: v for k, v in os.environ.items() if _withdrawn(k, v)}
    if not secrets:
        return
    payload = json.dumps(secrets).encode()
    if len(payload) > 60_000:        # more than a pipe buffers before exec: keep them in memory only
        _held.update(secrets)
        for name in secrets:
            del os.environ[name]
        return
    read_end, write_end = os.pipe()
    os.write(write_end, payload)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    env[_FD_VARIABLE] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def get(name: str) -> str | None:
    """A key by name: one withdrawn at start, else the environment (library use, tests)."""
    return _held.get(name) or os.environ.get(name)


def environment_with_keys() -> dict[str, str]:
    """os.environ plus the withdrawn keys: what the environment looked like at start."""
    return {**os.environ, **_held}


def held_values() -> list[str]:
    """Every withdrawn secret's value (for redaction)."""
    return list(_held.values())


def api_key_for(model: str, api_key_env: str | None = None) -> str | None:
    """The key litellm needs for `model`: the variable `api_key_env` names, else the provider's
    `<PROVIDER>_API_KEY` (ANTHROPIC_API_KEY for anthropic/..., OPENAI_API_KEY for openai/...)."""
    if api_key_env:
        return get(api_key_env)
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return get(f"{provider.upper()}_API_KEY")
