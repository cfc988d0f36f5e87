"""Counting prompt tokens offline: tiktoken's o200k_base (gpt-4o's encoding), read from the copy
litellm ships (so nothing is downloaded), else about one token per 4 characters.

Models count differently (Claude, Llama and Qwen tokenizers give within ~10-20% of o200k on code
and English); the counts decide how much history fits a context window and what is left for the
reply, so operators/llm.py keeps a safety margin on top.
"""
from __future__ import annotations

import importlib.util
import os
import threading

ENCODING = "o200k_base"
CHARS_PER_TOKEN = 4

_encoding = None
_loaded = False
_lock = threading.Lock()


def _load():
    global _encoding, _loaded
    with _lock:
        if not _loaded:
            _loaded = True
            try:
                spec = importlib.util.find_spec("litellm")   # its files, without importing it (seconds)
                if not os.environ.get("TIKTOKEN_CACHE_DIR") and spec is not None and spec.origin:
                    folder = os.path.join(os.path.dirname(spec.origin), "litellm_core_utils", "tokenizers")
                    if os.path.isdir(folder):
                        os.environ["TIKTOKEN_CACHE_DIR"] = folder
                import tiktoken

                _encoding = tiktoken.get_encoding(ENCODING)
            except Exception:  # noqa: BLE001 - no tiktoken, no bundled file: estimate from characters
                _encoding = None
    return _encoding


def count_tokens(text: str) -> int:
    """Tokens of `text` in o200k_base (or characters / 4 when that encoding cannot be loaded)."""
    encoding = _load()
    if encoding is None:
        return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
    return len(encoding.encode(text, disallowed_special=()))


def count_messages(messages: list[dict]) -> int:
    """Tokens of chat messages: their contents plus 4 per message for the chat template."""
    return sum(count_tokens(str(m.get("content") or "")) + 4 for m in messages)


def exact() -> bool:
    """Whether counts come from the tokenizer (True) or the characters / 4 estimate."""
    return _load() is not None
