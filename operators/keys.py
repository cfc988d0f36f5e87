"""API keys, held in the driver's memory and nowhere else (evolve/keys.py withdraws them at start).

The LLM operators look a provider's key up by name (`api_key_for`) among the keys held here, else
in the environment (library use), and pass it to litellm explicitly. SECRET_NAME_PARTS is the one
list of what makes a variable's name secret: the withdrawal, the candidate's environment
(island/environment.py) and the redaction of LLM errors all read it.
"""
from __future__ import annotations

import os
import re

# Substrings of a variable NAME that mark it secret (compared upper-case).
SECRET_NAME_PARTS: tuple[str, ...] = (
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "LITELLM",
)

# Words that contain a secret part but name no secret (TOKENIZERS_PARALLELISM is not a token).
BENIGN_WORDS: frozenset[str] = frozenset({"TOKENIZER", "TOKENIZERS", "TOKENIZATION"})
_WORD = re.compile(r"[A-Z0-9]+")


def looks_secret(name: str) -> bool:
    """True when the name contains a secret part (KEY, TOKEN, SECRET, PASSWORD, ...), words such as
    TOKENIZERS aside."""
    words = [word for word in _WORD.findall(name.upper()) if word not in BENIGN_WORDS]
    rest = "_".join(words)
    return any(part in rest for part in SECRET_NAME_PARTS)

_held: dict[str, str] = {}


def hold(secrets: dict[str, str]) -> None:
    """Keeps withdrawn keys in this process's memory."""
    _held.update(secrets)


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
