"""Which research brief the LLM operators read: task.brief's file, else the task's program.md.

The engine reads it once at start (``read_brief``); operators/prompts.py frames a brief written
for an interactive agent (karpathy/autoresearch's program.md) before it reaches the model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def brief_path(brief: str, task_dir: Optional[str]) -> Path:
    """Where task.brief points: an absolute path, else relative to task.dir (or the current directory)."""
    path = Path(brief).expanduser()
    if path.is_absolute():
        return path
    return (Path(task_dir).expanduser() if task_dir else Path.cwd()) / path


def read_brief(brief: str, task_dir: Optional[str]) -> str:
    """The text of the file task.brief names; FileNotFoundError naming the knob when it is missing."""
    path = brief_path(brief, task_dir)
    try:
        return path.read_text(errors="replace")
    except OSError as e:
        raise FileNotFoundError(f"task.brief={brief!r}: cannot read {path} ({e.strerror or e})") from None
