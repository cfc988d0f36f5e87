"""Whether a task's train.py reads the seed the engine gives each run, and what to say when not.

Baselines (the noise floor sigma) and confirmation runs differ only by the seed the engine puts
in the run's environment (``task.seed_env``, EVOLVE_SEED by default). karpathy/autoresearch's
train.py hard-codes ``torch.manual_seed(42)`` and reads no seed: then sigma measures only what
differs between identical runs anyway (how many steps fit in the time budget, nondeterministic
kernels), and a confirmation run repeats the same seed. The engine says so once at start.
"""
from __future__ import annotations

import ast

from island.environment import SEED_ENV


def reads_seed(source: str, seed_env: str = SEED_ENV) -> bool:
    """True when ``source`` names the variable ``seed_env`` as a string (os.environ[...],
    os.getenv(...), os.environ.get(...)); True as well when it does not parse (nothing to say)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True
    return any(isinstance(node, ast.Constant) and node.value == seed_env for node in ast.walk(tree))


def seed_warning(train_source: str, seed_env: str = SEED_ENV, prepare_source: str = "") -> str | None:
    """The one-time start-up message when neither train.py nor prepare.py reads ``seed_env``; else None."""
    if reads_seed(train_source, seed_env) or (prepare_source and reads_seed(prepare_source, seed_env)):
        return None
    return (f"note: train.py never reads {seed_env} (task.seed_env), so every run of the same "
            f"train.py starts from the same seed. The noise floor sigma then measures only run-to-run "
            f"jitter (how many steps fit in the time budget, nondeterministic kernels), not seed noise, "
            f"and a confirmation run repeats the same seed: it checks that a gain reproduces, not that it "
            f"survives another seed. To measure seed noise, seed train.py from it, e.g. "
            f"torch.manual_seed(int(os.environ.get(\"{seed_env}\", 42))), or set task.seed_env to the "
            f"variable train.py reads.")
