"""What the LLM operators say to the model: readable templates filled by pure functions.

Every builder returns plain strings (or chat messages as {"role", "content"} dicts) and has no
side effects, so prompts can be printed, measured and tested without a model:

    python -c "from operators.prompts import *; ..."   (see docs/llm.md for the measurement)

The model is asked for one `DESCRIPTION:` line and SEARCH/REPLACE blocks against train.py
(operators/edits.py parses them); a whole file in one ```python block is accepted too.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

from operators.candidate import Attempt, LineageStep, Parent, Peer, ProposalContext
from operators.edits import (FORMAT_DESCRIPTION_PLACEHOLDER, FORMAT_REPLACE_PLACEHOLDER, FORMAT_SEARCH_PLACEHOLDER,
                             Ambiguous, Edit, Nearest, lines_around, unified_diff)

TARGET = "train.py"
MAX_HISTORY = 20           # most recent experiments shown
LOG_TAIL_LINES = 25        # lines of a failed run's log shown
MAX_LINEAGE_DIFF_LINES = 80   # lines of the parent's diff against the base train.py shown
MAX_LINEAGE_STEPS = 12        # most recent kept changes of the parent's lineage listed
# The parent's summary lines shown first, in this order (val_bpb has a line of its own); others follow.
METRICS_ORDER = ("num_steps", "training_seconds", "total_tokens_M", "peak_vram_mb", "mfu_percent", "num_params_M")

DEFAULT_BRIEF = """\
Lower val_bpb (validation bits per byte) of the model trained by train.py within the fixed time
budget. Anything in train.py may change: architecture, optimizer, hyperparameters, schedule,
batch size, model size. Simpler code is better at equal val_bpb. Stay within memory."""

SYSTEM_PROMPT = """\
You are an ML research engineer running experiments on a training script. Each experiment is
one focused change to train.py, which is then trained for a fixed time budget and scored by
val_bpb on held-out text (lower is better). You propose the next experiment as precise edits.
Be concrete, keep the code correct and runnable, and avoid repeating experiments that already
failed."""

EDIT_FORMAT = f"""\
Answer in this format:

DESCRIPTION: {FORMAT_DESCRIPTION_PLACEHOLDER}, saying what changed, e.g. "MATRIX_LR 0.04 -> 0.06">

then one or more SEARCH/REPLACE blocks that edit train.py:

train.py
<<<<<<< SEARCH
{FORMAT_SEARCH_PLACEHOLDER}
=======
{FORMAT_REPLACE_PLACEHOLDER}
>>>>>>> REPLACE

Rules:
- The SEARCH part must match the file exactly, character for character; include just enough
  lines to be unique (usually 1-10). Use one block per place that changes; blocks apply in order.
- To delete lines leave the REPLACE part empty; to add lines, SEARCH for the line(s) next to
  them and repeat those lines in REPLACE with the new ones.
- Edit train.py only. prepare.py (data, tokenizer, evaluator, time budget) is fixed: a reply
  that edits any other file is refused as a whole, and a train.py that rebinds the budget it
  imports from prepare.py (e.g. TIME_BUDGET) is refused as over-budget without running.
- For a large rewrite you may instead send the complete new train.py in a single ```python
  block (no placeholders such as "# ... rest unchanged").
- Keep any explanation to a few sentences before the DESCRIPTION line."""


# ---------------------------------------------------------------------------------------------
# Pieces

def short(commit: str) -> str:
    return (commit or "")[:7] or "?"


def format_bpb(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.6f}"


def format_delta(delta: float | None) -> str:
    return "" if delta is None or not math.isfinite(delta) else f"{delta:+.6f}"


def noise_text(context: ProposalContext | None) -> str:
    """The noise floor in words: how much a change must gain to count."""
    if context is None or not context.sigma or context.sigma <= 0:
        return ("Noise floor: not measured yet. Identical code scores slightly differently from run "
                "to run, so prefer changes that should matter clearly over tiny tweaks.")
    k = context.noise_k if context.noise_k and context.noise_k > 0 else 1.0
    threshold = k * context.sigma
    return (f"Noise floor: identical code varies by sigma = {context.sigma:.6f} val_bpb from run to run. "
            f"A change must improve val_bpb by more than {threshold:.6f} ({k:g} sigma) to count; "
            f"smaller differences are noise. Seed changes only sample this noise: do not propose them."
            + explore_text(context))


def explore_text(context: ProposalContext) -> str:
    """A hot island's temperament in words (evolve/tempering.py); nothing on a greedy island."""
    if not context.temperature or context.temperature <= 0:
        return ""
    t = context.temperature
    return (f" This island EXPLORES (temperature {t:.3g} sigma): its lineage may step back, taking a worse "
            f"result as its next parent (a loss of {t * context.sigma:.6f} is taken about one time in three), "
            f"so a bold change that may regress at first, to set up a larger gain later, is welcome here; "
            f"prefer it to another small safe tweak. Results marked `explore` are such steps back."
            + bet_text(context))


def bet_text(context: ProposalContext) -> str:
    """How a hot island's LLM opens a multi-step bet, and the story of its bets so far."""
    if not context.bet_max_credit:
        return ""
    text = (f" A direction that needs several steps may be a BET: start your description with [bet NAME N] "
            f"(NAME one word, N at most {context.bet_max_credit} experiments, this one included); the next "
            f"N - 1 experiments of this island then build on it and are exempt from the keep rule, and at "
            f"the end the bet is kept if its best result beat the island's best, else abandoned.")
    if context.bets:
        text += " Bets of this island: " + "; ".join(context.bets) + "."
    return text


def budget_text(context: ProposalContext | None) -> str:
    budget = f"{context.budget_s:g} seconds" if context is not None and context.budget_s > 0 else "a fixed time"
    return (f"train.py trains for {budget} of counted training time (prepare.TIME_BUDGET; start-up, "
            f"compilation and the final evaluation are not counted), then prints `---` and summary lines "
            f"(`val_bpb: ...`, `peak_vram_mb: ...`, ...), which must stay. val_bpb (validation bits per "
            f"byte, lower is better) is measured by prepare.evaluate_bpb and is independent of the "
            f"vocabulary size. A faster step means more steps within the budget.")


def format_attempt(index: int, attempt: Attempt, log_lines: int = LOG_TAIL_LINES) -> str:
    """One experiment of the lineage, one line (plus the log tail of a failure)."""
    failed = attempt.status == "crash" or attempt.outcome not in ("ok", "")
    label = attempt.status if attempt.outcome in ("ok", "", attempt.status) else f"{attempt.status}: {attempt.outcome}"
    parts = [f"{index}. [{label}]"]
    if attempt.val_bpb is not None and not failed:
        parts.append(f"val_bpb {format_bpb(attempt.val_bpb)}")
        if attempt.delta is not None:
            parts.append(f"({format_delta(attempt.delta)} vs {'its parent' if attempt.tried_on else 'parent'})")
    if attempt.tried_on:
        parts.append(f"[on ancestor {short(attempt.tried_on)}]")
    parts.append(attempt.description.strip() or "(no description)")
    line = " ".join(parts)
    if attempt.reason:
        line += f" -- {attempt.reason.strip().splitlines()[0]}"
    if failed and attempt.log_tail.strip() and log_lines > 0:
        tail = attempt.log_tail.strip("\n").split("\n")[-log_lines:]   # already a tail (island/summary.py)
        line += "\n   log tail:\n" + "\n".join(f"   | {row}" for row in tail)
    return line


def history_text(history: Sequence[Attempt], max_items: int = MAX_HISTORY, log_lines: int = LOG_TAIL_LINES) -> str:
    if not history:
        return "(none yet: nothing has been tried on this train.py or its ancestors)"
    shown = list(history)[-max_items:] if max_items > 0 else []
    skipped = len(history) - len(shown)
    lines = [f"({skipped} older experiments not shown)"] if skipped else []
    lines += [format_attempt(i, attempt, log_lines) for i, attempt in enumerate(shown, 1)]
    kept = sum(a.status == "keep" for a in history)
    crashed = sum(a.status == "crash" for a in history)
    lines.append(f"({kept} kept, {len(history) - kept - crashed} discarded, {crashed} crashed in all)")
    return "\n".join(lines)


def format_metric(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_text(metrics: dict) -> str:
    """The parent's summary lines in one line: `num_steps 120, training_seconds 300, ...`."""
    names = [n for n in METRICS_ORDER if n in metrics] + sorted(n for n in metrics
                                                                 if n not in METRICS_ORDER and n != "val_bpb")
    return ", ".join(f"{name} {format_metric(metrics[name])}" for name in names)


def lineage_text(parent: Parent, context: ProposalContext | None, max_steps: int = MAX_LINEAGE_STEPS,
                 max_diff_lines: int = MAX_LINEAGE_DIFF_LINES) -> str:
    """Where the parent came from: its run's metrics, the kept changes from the base train.py that
    led to it, and its diff against the base."""
    lines = [parent_header("Parent", parent)]
    if parent.metrics:
        lines.append(f"Its run: {metrics_text(parent.metrics)}")
    steps: Sequence[LineageStep] = context.lineage if context is not None else ()
    base = context.base_source if context is not None else None
    if base is not None and same_text(base, parent.source):
        lines.append("It is the unmodified base train.py.")
        return "\n".join(lines)
    if steps:
        shown = list(steps)[-max_steps:]
        lines.append(f"\nIts lineage: {len(steps)} kept change{'s' if len(steps) != 1 else ''} since the base "
                     f"train.py, oldest first" + (f" ({len(steps) - len(shown)} older not listed)" if
                                                  len(shown) < len(steps) else "") + ":")
        lines += [f"{i}. {short(step.commit)} (island {step.island}) {format_delta(step.delta) or '(no delta)'}: "
                  f"{step.description.strip() or '(no description)'}" for i, step in enumerate(shown, 1)]
    if base is not None:
        diff = unified_diff(base, parent.source, "base/train.py", "parent/train.py").rstrip("\n").split("\n")
        more = len(diff) - max_diff_lines
        text = "\n".join(diff[:max_diff_lines]) + (f"\n... ({more} more diff lines; the whole file is above)"
                                                    if more > 0 else "")
        lines.append(f"\nIts diff against the base train.py:\n\n{fenced(text, 'diff')}")
    return "\n".join(lines)


def same_text(a: str, b: str) -> bool:
    return a.rstrip() == b.rstrip()


def peers_text(peers: Sequence[Peer], island: int) -> str:
    rows = []
    for peer in peers:
        where = f"island {peer.island}" + (" (this island)" if peer.island == island else "")
        what = f"{short(peer.commit)} val_bpb {format_bpb(peer.val_bpb)}, " if peer.commit else ""
        how = f", {peer.operator}" if peer.operator else ""
        rows.append(f"- {what}{where}{how}: {peer.description.strip() or '(no description)'}")
    return "\n".join(rows)


def fenced(text: str, lang: str = "python") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def parent_header(label: str, parent: Parent) -> str:
    head = f"{label}: commit {short(parent.commit)}, island {parent.island}, val_bpb {format_bpb(parent.val_bpb)}"
    if parent.description:
        head += f", last change: {parent.description.strip()}"
    return head


# Signs that a brief scripts an interactive agent's whole session (karpathy/autoresearch's
# program.md does: set-up steps, a git branch, "LOOP FOREVER", results.tsv, "NEVER STOP").
AGENT_SCRIPT_SIGNS = (
    re.compile(r"LOOP FOREVER|NEVER STOP", re.IGNORECASE),
    re.compile(r"\bgit (?:commit|reset|checkout|branch|log|status)\b"),
    re.compile(r"\bresults\.tsv\b"),
    re.compile(r"^#+\s*(?:set ?up|setup)\b", re.IGNORECASE | re.MULTILINE),
    re.compile(r"\b(?:uv run|python) train\.py\b.*(?:>|\|)"),
)

AGENT_SCRIPT_FRAMING = """The brief below was written for an interactive coding agent that runs the whole research loop
itself. Here the engine does that part for you: set-up and data preparation, the loop of
experiments, git branches, commits and resets, running train.py and reading its log, and logging
every result (results.tsv included) are all handled, and nothing in your answer is run as a
command. Skip those instructions. Take from the brief its goal, its rules for train.py and its
advice, and propose exactly one change to train.py, as edits in the format asked for below."""


def scripts_an_agent(text: str) -> bool:
    """Whether a brief reads like a session script for an interactive agent (two or more signs)."""
    return sum(bool(sign.search(text)) for sign in AGENT_SCRIPT_SIGNS) >= 2


def brief(context: ProposalContext | None) -> str:
    """The brief's text, framed when it was written for an interactive agent, with the island's
    research focus (if any) appended."""
    text = context.program.strip() if context is not None and context.program.strip() else DEFAULT_BRIEF
    text = f"{AGENT_SCRIPT_FRAMING}\n\n---\n\n{text}\n\n---" if scripts_an_agent(text) else text
    if context is not None and context.focus.strip():
        text += (f"\n\nThis island's research focus: {context.focus.strip()}. Propose experiments within this "
                 f"focus; other islands explore other directions.")
    return text


# ---------------------------------------------------------------------------------------------
# Prompts

def mutation_parts(parent: Parent, context: ProposalContext | None = None, max_history: int = MAX_HISTORY,
                   log_lines: int = LOG_TAIL_LINES) -> list[tuple[str, str]]:
    """The mutation prompt's parts as (name, text), stable ones first (the brief, the rules, the edit
    format and the parent's file change rarely, so a server's prompt cache reuses them); parts
    with nothing to say are left out. docs/llm.md measures each part."""
    history = context.history if context is not None else ()
    parts = [("brief", f"# Research brief\n\n{brief(context)}"),
             ("experiment", f"# The experiment\n\n{budget_text(context)}"),
             ("format", f"# Edit format\n\n{EDIT_FORMAT}"),
             ("train.py", f"# The current train.py (the parent; your edits apply to it)\n\n{fenced(parent.source)}")]
    if context is not None and context.lessons.strip():
        parts.append(("lessons", f"# Lessons of this run so far\n\n{context.lessons.strip()}"))
    parts.append(("parent", f"# The parent and its lineage\n\n{lineage_text(parent, context)}"))
    parts.append(("noise", noise_text(context)))
    if context is not None and context.best:
        parts.append(("best", "# The island's best other members\n\n" + peers_text(context.best, context.island)))
    if context is not None and context.in_flight:
        parts.append(("in flight", "# Training right now (results not in yet: do not propose these again)\n\n"
                      + peers_text(context.in_flight, context.island)))
    parts.append(("history", "# Experiments on this lineage (on the parent or its ancestors, any island; oldest "
                             f"first)\n\n{history_text(history, max_history, log_lines)}"))
    parts.append(("task", """\
# Your task

Propose the next experiment: one idea, likely to lower val_bpb by more than the noise floor, that
is not a repeat of the experiments above or of those training now. Then write it as edits to the
train.py above, in the edit format above."""))
    return parts


def mutation_prompt(parent: Parent, context: ProposalContext | None = None, max_history: int = MAX_HISTORY,
                    log_lines: int = LOG_TAIL_LINES) -> str:
    return "\n\n".join(text for _, text in mutation_parts(parent, context, max_history, log_lines))


def crossover_parts(first: Parent, second: Parent, context: ProposalContext | None = None) -> list[tuple[str, str]]:
    """The crossover prompt's parts as (name, text), stable ones first."""
    ancestor = context.common_ancestor_source if context is not None else None
    if ancestor is not None:
        changes = f"""\
Both descend from a common ancestor train.py. What each lineage changed since then:

## Changes in lineage A (since the common ancestor)

{fenced(unified_diff(ancestor, first.source, "ancestor/train.py", "A/train.py") or "(no change)", "diff")}

## Changes in lineage B (since the common ancestor)

{fenced(unified_diff(ancestor, second.source, "ancestor/train.py", "B/train.py") or "(no change)", "diff")}"""
    else:
        changes = f"""\
Their common ancestor is not known. This diff turns A's train.py into B's:

{fenced(unified_diff(first.source, second.source, "A/train.py", "B/train.py"), "diff")}"""
    parts = [("brief", f"# Research brief\n\n{brief(context)}"),
             ("experiment", f"# The experiment\n\n{budget_text(context)}"),
             ("format", f"# Edit format\n\n{EDIT_FORMAT}"),
             ("train.py", f"# A's train.py (your edits apply to this file)\n\n{fenced(first.source)}")]
    if context is not None and context.lessons.strip():
        parts.append(("lessons", f"# Lessons of this run so far\n\n{context.lessons.strip()}"))
    parts.append(("lineages", f"# Two lineages to combine\n\n{parent_header('A', first)}\n"
                              f"{parent_header('B', second)}\n\n{changes}"))
    parts.append(("noise", noise_text(context)))
    if context is not None and context.in_flight:
        parts.append(("in flight", "# Training right now (results not in yet: do not propose these again)\n\n"
                      + peers_text(context.in_flight, context.island)))
    parts.append(("task", """\
# Your task

Combine what each lineage gained into one train.py: start from A's file above and bring in B's
changes that A lacks. Where the two changed the same thing differently, keep the choice more
likely to lower val_bpb, or merge them sensibly. Leave out changes that look like noise or that
clearly conflict. The SEARCH parts must match A's file; use the edit format above."""))
    return parts


def crossover_prompt(first: Parent, second: Parent, context: ProposalContext | None = None) -> str:
    return "\n\n".join(text for _, text in crossover_parts(first, second, context))


def mutation_messages(parent: Parent, context: ProposalContext | None = None, max_history: int = MAX_HISTORY,
                      log_lines: int = LOG_TAIL_LINES) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": mutation_prompt(parent, context, max_history, log_lines)}]


def crossover_messages(first: Parent, second: Parent, context: ProposalContext | None = None) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": crossover_prompt(first, second, context)}]


# ---------------------------------------------------------------------------------------------
# Follow-ups within one proposal

def mismatch_feedback(failures: Sequence[tuple[Edit, Nearest | None]], applied: int,
                      ambiguous: Sequence[Ambiguous] = (), from_diff: bool = False) -> str:
    """Tell the model which SEARCH parts matched nowhere (with the file's nearest lines) and which
    matched more than one place (with their line numbers)."""
    count = len(failures) + len(ambiguous)
    what = "hunks of your diff" if from_diff else "SEARCH/REPLACE blocks"
    parts = [f"{count} of your {what} could not be applied to train.py, so "
             f"{'it was' if count == 1 else 'they were'} not applied."
             + (f" The other {applied} {'hunk' if from_diff else 'block'}{'s were' if applied != 1 else ' was'} "
                f"applied and {'are' if applied != 1 else 'is'} now part of the file." if applied else "")]
    if from_diff:
        parts.append("A diff hunk is applied where its context and removed lines appear in the file; the "
                     "failed hunks are shown below as SEARCH/REPLACE blocks.")
    for number, (edit, nearest) in enumerate(failures, 1):
        parts.append(f"## Failed block {number}: its SEARCH part did not match\n\n{edit.render()}")
        if nearest is None:
            parts.append("Its SEARCH part is empty: quote the lines to replace.")
        else:
            parts.append(f"The closest lines in the current train.py (lines {nearest.first_line}-"
                         f"{nearest.last_line}, {100 * nearest.similarity:.0f}% similar):\n\n{fenced(nearest.text)}")
    for number, item in enumerate(ambiguous, len(failures) + 1):
        places = ", ".join(str(line) for line in item.lines)
        parts.append(f"## Failed block {number}: its SEARCH part is ambiguous\n\n{item.edit.render()}\n\nIts SEARCH part matches "
                     f"train.py in {len(item.lines)} places (starting at lines {places}). Include more lines "
                     f"around the place you mean (before or after) so that it matches exactly one.")
    parts.append("Reply with corrected SEARCH/REPLACE blocks for the failed blocks only, copying the "
                 "SEARCH lines exactly from the file as it is now. No DESCRIPTION line is needed.")
    return "\n\n".join(parts)


CONTINUE_REQUEST = """\
Your reply was cut off at the length limit (max_tokens), so nothing of it was applied. Continue
exactly where it stopped: start with the next character, repeat nothing, and finish the block you
were writing. Keep the rest short: no more explanation, only the remaining edits."""


def syntax_feedback(error: SyntaxError, source: str) -> str:
    """Tell the model that the edited file does not compile, with the lines around the error."""
    first, text = lines_around(source, error.lineno)
    return (f"After applying your edits, train.py does not compile:\n\n"
            f"SyntaxError: {error.msg} (line {error.lineno})\n\n"
            f"Lines {first}-{first + len(text.splitlines()) - 1} of the edited train.py:\n\n{fenced(text)}\n\n"
            f"Reply with SEARCH/REPLACE blocks against the edited file that fix it (your earlier "
            f"blocks are already applied). No DESCRIPTION line is needed.")


# ---------------------------------------------------------------------------------------------
# The constants format (llm.edit_format=constants): a short prompt for small models

CONSTANTS_SYSTEM_PROMPT = """\
You tune the settings of a training script. You answer with one DESCRIPTION line and
NAME = value lines, nothing else."""

CONSTANTS_BRIEF_CHARS = 700       # the brief is cut to this many characters
CONSTANTS_HISTORY = 8             # most recent experiments listed, one line each
CONSTANTS_LESSONS_CHARS = 600

CONSTANTS_EXAMPLE_NAME = "SOME_RATE"   # the format example's name: a reply that only uses it echoed the example
CONSTANTS_FORMAT = """\
Answer exactly like this (no code, no other text), with real names from the list:
DESCRIPTION: SOME_RATE 0.08 -> 0.06
SOME_RATE = 0.06

Change one to three constants from the list. Use only names from the list; keep each value's
type (a whole number stays a whole number, True/False stays True/False)."""


def _cut(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " [...]"


def _short_brief(context: ProposalContext | None) -> str:
    text = context.program.strip() if context is not None and context.program.strip() else DEFAULT_BRIEF
    if scripts_an_agent(text):
        text = DEFAULT_BRIEF   # a session script for an agent says nothing a small model can use here
    text = _cut(text, CONSTANTS_BRIEF_CHARS)
    if context is not None and context.focus.strip():
        text += f"\nFocus on: {context.focus.strip()}."
    return text


def constants_parts(parent: Parent, table: str, context: ProposalContext | None = None,
                    max_history: int = CONSTANTS_HISTORY) -> list[tuple[str, str]]:
    """The constants prompt's parts, stable first: the goal, the format, the constants; then the
    lessons (shortened), the noise floor and the last experiments of the lineage, one line each."""
    history = list(context.history if context is not None else ())[-max_history:] if max_history > 0 else []
    parts = [("brief", f"# Goal\n\n{_short_brief(context)}\nLower val_bpb is better."),
             ("format", f"# Answer format\n\n{CONSTANTS_FORMAT}"),
             ("constants", f"# The constants of train.py now (its val_bpb: {format_bpb(parent.val_bpb)})\n\n{table}")]
    if context is not None and context.lessons.strip():
        kept = context.lessons.split("## Directions")[0].split("## Kept changes")[-1]
        parts.append(("lessons", "# Kept so far\n" + _cut(kept, CONSTANTS_LESSONS_CHARS)))
    if context is not None and context.sigma and context.sigma > 0:
        k = context.noise_k if context.noise_k and context.noise_k > 0 else 1.0
        parts.append(("noise", f"A change counts only if val_bpb drops by more than {k * context.sigma:.4f}."))
    if history:
        lines = [f"- [{a.status}] {a.description.strip() or '(no description)'}"
                 + (f" ({format_delta(a.delta)})" if a.delta is not None and a.status != "crash" else "")
                 for a in history]
        parts.append(("history", "# Tried already (do not repeat)\n" + "\n".join(lines)))
    parts.append(("task", "Now answer: one DESCRIPTION line, then the NAME = value lines."))
    return parts


def constants_messages(parent: Parent, table: str, context: ProposalContext | None = None,
                       max_history: int = CONSTANTS_HISTORY) -> list[dict]:
    return [{"role": "system", "content": CONSTANTS_SYSTEM_PROMPT},
            {"role": "user", "content": "\n\n".join(t for _, t in constants_parts(parent, table, context,
                                                                                 max_history))}]


def constants_crossover_messages(first: Parent, second: Parent, differences: str,
                                 context: ProposalContext | None = None) -> list[dict]:
    """Crossover in the constants format: the constants on which two train.py files differ."""
    text = f"""\
# Goal

{_short_brief(context)}
Lower val_bpb is better.

# Answer format

{CONSTANTS_FORMAT}

# Two versions of train.py

A has val_bpb {format_bpb(first.val_bpb)}, B has val_bpb {format_bpb(second.val_bpb)}. The constants
on which they differ (NAME = A's value | B's value):

{differences}

Starting from A, take the values from B that should lower val_bpb. Now answer: one DESCRIPTION
line, then the NAME = value lines."""
    return [{"role": "system", "content": CONSTANTS_SYSTEM_PROMPT}, {"role": "user", "content": text}]


def constants_feedback(unknown: Sequence[str], invalid: Sequence[str], refused: Sequence[str], table: str) -> str:
    """Tell the model which lines could not be used."""
    parts = ["None of your lines changed a constant of train.py."]
    if unknown:
        parts.append(f"Not constants of train.py: {', '.join(sorted(set(unknown)))}.")
    if refused:
        parts.append(f"Not to be changed: {', '.join(sorted(set(refused)))}.")
    if invalid:
        parts.append("Invalid: " + "; ".join(invalid) + ".")
    parts.append(f"The constants you may change:\n\n{table}\n\nAnswer again with NAME = value lines only.")
    return "\n".join(parts)
