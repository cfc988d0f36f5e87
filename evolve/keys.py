"""Withdrawing API keys from the driver's environment at start (the driver's job, in its entry points).

A candidate train.py runs as the same user as the engine, so it can read the environment of
every process of that user (/proc/<pid>/environ): the driver's, Ray's, every git command's. So
`python -m evolve` (and `python -m evolve.report`) withdraw every secret-looking variable from
their environment before anything starts: the process re-executes itself once without them,
receiving them through a pipe, so that not even its own initial environment block holds them and
no process it starts inherits them. The keys are then held in memory by operators/keys.py, from
which the LLM operators pass the provider's key to litellm explicitly.
"""
from __future__ import annotations

import json
import os
import sys

from island.environment import ALWAYS_KEEP, has_secret_value
from operators import keys
from operators.keys import looks_secret

_FD_VARIABLE = "EVOLVE_KEYS_FD"


def _withdrawn(name: str, value: str) -> bool:
    """Secret-looking names (operators.keys.looks_secret: TOKENIZERS_PARALLELISM is not one;
    litellm's settings and Ray's own are left in place) and values that carry credentials."""
    upper = name.upper()
    if name in ALWAYS_KEEP or upper.startswith(("RAY_", "LITELLM_LOCAL_", "LITELLM_LOG")):
        return False
    return looks_secret(name) or has_secret_value(value)


def withdraw_from_environment() -> None:
    """Moves every secret out of os.environ into this process's memory, re-executing the process
    once (same interpreter, same arguments) so that its environment block is clean too. Call it
    first thing under `if __name__ == "__main__":`, before any thread or child process exists."""
    if _FD_VARIABLE in os.environ:   # the re-executed process: read what the first one held
        fd = int(os.environ.pop(_FD_VARIABLE))
        with os.fdopen(fd, "rb") as pipe:
            keys.hold(json.loads(pipe.read() or b"{}"))
        return
    secrets = {k: v for k, v in os.environ.items() if _withdrawn(k, v)}
    if not secrets:
        return
    payload = json.dumps(secrets).encode()
    if len(payload) > 60_000:        # more than a pipe buffers before exec: keep them in memory only
        keys.hold(secrets)
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
