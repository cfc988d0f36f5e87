"""lessons.md: what the run has learned so far, written from the journal every `llm.lessons_every`
experiments and shown in every LLM prompt.

`lessons_text(state)` is pure and deterministic (the same journal gives the same text, no clock):
- kept changes, with their gain in sigma (the parent's val_bpb minus the child's, over the noise floor);
- directions that failed repeatedly: two or more discards or crashes of the same direction and no keep
  of it. A direction is each `NAME old -> new` of a description as the name and up/down (perturb's and
  most models' descriptions), else the description without its numbers;
- crash classes: the outcome (crash, oom, timeout, nan, over-budget, ...) and the exception named in
  the reason (`RuntimeError`, ...), with counts, recurring ones (two or more) first;
- what transferred: kept changes made on one island from a train.py that another island made
  (a migrant, a reset's donor, a crossover's first parent).
Each section lists at most MAX_ITEMS lines, so the text stays a few hundred tokens.

`Lessons` writes the file (atomically) and, with `llm.lessons=true`, asks the LLM for a short
summary on a background thread; the summary is appended when it arrives and its cost is recorded
as an `LLMSummary` record.
"""
from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from .records import CRASH, DISCARD, KEEP, Experiment
from .state import RunState

FILE = "lessons.md"
MAX_ITEMS = 8
CHANGE = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*[:=]?\s*(-?[0-9][0-9.eE+\-_]*)\s*->\s*(-?[0-9][0-9.eE+\-_]*)")
EXCEPTION = re.compile(r"\b([A-Z][A-Za-z]*(?:Error|Exception)|KeyboardInterrupt|MemoryError)\b")
SUMMARY_HEADING = "## Summary (written by the LLM from the lines above)"


def direction(description: str) -> str:
    """What a change tried, independent of its exact numbers: `MATRIX_LR up, DEPTH down`, or the
    description in lower case without numbers."""
    steps = []
    for name, old, new in CHANGE.findall(description):
        try:
            steps.append(f"{name} {'up' if float(new.replace('_', '')) > float(old.replace('_', '')) else 'down'}")
        except ValueError:
            continue
    if steps:
        return ", ".join(sorted(set(steps)))
    text = re.sub(r"[-+]?\d[\d.eE_]*", "#", description.lower())
    return re.sub(r"\s+", " ", text).strip(" .:")


def crash_class(exp: Experiment) -> str:
    """`oom`, `crash: RuntimeError`, `timeout`, ...: the outcome and the exception the reason names."""
    found = EXCEPTION.search(exp.reason or "")
    outcome = exp.outcome if exp.outcome not in ("ok", "") else "crash"
    return f"{outcome}: {found.group(1)}" if found else outcome


def gain_in_sigma(exp: Experiment, sigma: float | None) -> float | None:
    if exp.val_bpb is None or exp.parent_bpb is None or not sigma:
        return None
    return (exp.parent_bpb - exp.val_bpb) / sigma


def _capped(lines: list[str]) -> list[str]:
    return lines[:MAX_ITEMS] + ([f"- ({len(lines) - MAX_ITEMS} more)"] if len(lines) > MAX_ITEMS else [])


def lessons_text(state: RunState) -> str:
    """The lessons of the run's journal so far, as markdown."""
    children = [e for e in state.experiments if not e.is_baseline]
    sigma = state.sigma
    lines = [f"# Lessons after {len(state.experiments)} experiments",
             "", "Written by evolve from the journal (the same journal always gives the same text)."]

    kept = [e for e in children if e.status == KEEP]
    kept.sort(key=lambda e: (-(gain_in_sigma(e, sigma) or 0.0), e.seq))
    rows = []
    for e in kept:
        gain = gain_in_sigma(e, sigma)
        size = f"{gain:+.1f} sigma" if gain is not None else (
            f"{e.parent_bpb - e.val_bpb:+.6f} val_bpb" if e.val_bpb is not None and e.parent_bpb is not None else "")
        rows.append(f"- {e.description.strip() or '(no description)'} ({size + ', ' if size else ''}island {e.island}, "
                    f"{e.operator}, {e.commit[:7]})")
    lines += ["", "## Kept changes (gain over the parent in noise sigmas)", ""] + (_capped(rows) or ["- none yet"])

    tried: dict[str, Counter] = defaultdict(Counter)
    for e in children:
        tried[direction(e.description)][e.status] += 1
    failed = [(key, counts) for key, counts in tried.items()
              if key and counts[KEEP] == 0 and counts[DISCARD] + counts[CRASH] >= 2]
    failed.sort(key=lambda item: (-(item[1][DISCARD] + item[1][CRASH]), item[0]))
    rows = [f"- {key}: {counts[DISCARD]} discarded, {counts[CRASH]} crashed, none kept" for key, counts in failed]
    lines += ["", "## Directions that failed repeatedly (do not try them again as they were)", ""] + (
        _capped(rows) or ["- none yet"])

    crashes = Counter(crash_class(e) for e in children if e.status == CRASH)
    examples = {}
    for e in children:
        if e.status == CRASH:
            examples.setdefault(crash_class(e), e.description.strip())
    ordered = sorted(crashes.items(), key=lambda item: (-item[1], item[0]))
    rows = [f"- {name}: {count} time{'s' if count != 1 else ''}{' (recurring)' if count >= 2 else ''}, "
            f"e.g. {examples[name] or '(no description)'}" for name, count in ordered]
    lines += ["", "## Crash classes", ""] + (_capped(rows) or ["- none yet"])

    made = {}
    for e in state.experiments:
        made.setdefault(e.commit, e)
    rows = []
    for e in kept:
        source = made.get(e.parent or (e.parents[0] if e.parents else ""))
        if source is not None and not source.is_baseline and source.island != e.island:
            rows.append(f"- {source.description.strip()} (island {source.island}) carried over to island {e.island}, "
                        f"where {e.description.strip()} was kept on it")
    lines += ["", "## What transferred between islands", ""] + (_capped(sorted(rows)) or ["- nothing yet"])
    return "\n".join(lines) + "\n"


def read_lessons(run_dir: Path | None) -> str:
    """The run's lessons.md, or "" when there is none yet."""
    try:
        return (Path(run_dir) / FILE).read_text() if run_dir is not None else ""
    except OSError:
        return ""


def summary_prompt(text: str) -> list[dict]:
    """The messages that ask a model for a short summary of the lessons."""
    return [{"role": "system", "content": "You summarise the results of an automated ML research run."},
            {"role": "user", "content": f"{text}\n\nIn at most 120 words, say what these results suggest trying next "
                                        f"and what to avoid. Plain sentences, no lists, no code."}]


@dataclass(frozen=True)
class Summary:
    """A finished LLM summary of lessons.md: its cost, and why it failed ("" when written)."""

    cost: dict = field(default_factory=dict)
    reason: str = ""


class Lessons:
    """Keeps <run_dir>/lessons.md up to date: `after(state)` after each record."""

    def __init__(self, run_dir: Path, every: int, summarise=None):
        self.path = Path(run_dir) / FILE
        self.every = every
        self.summarise = summarise   # None, or fn(text) -> (summary text, cost dict), run on a daemon thread
        self.pending: Future | None = None
        self.written_at = -1

    def text(self) -> str:
        """The current lessons.md ("" before the first one)."""
        return read_lessons(self.path.parent)

    def due(self, state: RunState) -> bool:
        n = len(state.experiments)
        return self.every > 0 and n > 0 and n % self.every == 0 and n != self.written_at

    def after(self, state: RunState) -> Summary | None:
        """Writes lessons.md when due; returns a finished LLM summary once, to be recorded."""
        finished = self._collect_summary()
        if self.due(state):
            self.written_at = len(state.experiments)
            text = lessons_text(state)
            self._write(text)
            if self.summarise is not None and self.pending is None:
                self.pending = _in_background(self.summarise, text)
        return finished

    def _collect_summary(self) -> Summary | None:
        if self.pending is None or not self.pending.done():
            return None
        future, self.pending = self.pending, None
        try:
            summary, cost = future.result()
        except Exception as e:  # noqa: BLE001 - a failed summary leaves the deterministic lessons
            cost = getattr(e, "cost", None)
            return Summary(cost=dict(vars(cost)) if cost is not None else {}, reason=str(e)[:300] or type(e).__name__)
        text = self.text()
        if text and SUMMARY_HEADING not in text:
            self._write(f"{text.rstrip()}\n\n{SUMMARY_HEADING}\n\n{summary.strip()}\n")
        return Summary(cost=cost)

    def _write(self, text: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)


def _in_background(fn, *args) -> Future:
    """fn(*args) on a daemon thread (an LLM call must never keep a stopping driver alive)."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to whoever reads the future
            future.set_exception(e)

    threading.Thread(target=target, daemon=True).start()
    return future
