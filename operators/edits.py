"""Reading an LLM's reply as edits to train.py, applying them, and explaining misses.

A reply may carry (see operators/prompts.py for what the model is asked):

- a line `DESCRIPTION: <one line>`;
- SEARCH/REPLACE blocks, aider style, each optionally preceded by the file it edits (the line
  just above the block, or above its opening ``` fence):

      train.py
      <<<<<<< SEARCH
      old lines, copied from the file
      =======
      new lines
      >>>>>>> REPLACE

- or, instead of blocks, a unified diff (in a ```diff or ```patch block, or bare `@@` hunks):
  each hunk becomes a block whose SEARCH part is its context and removed lines and whose
  REPLACE part is its context and added lines, so hunks are located by content and their line
  numbers are ignored;
- or, instead of blocks or a diff, the whole new file in one fenced ```python (or ~~~python) block.

`<think>...</think>` (also <thinking>, <reasoning>) sections are removed before anything is read,
so drafts inside them are never applied; an unterminated one at the start swallows the rest.
A block that only echoes the prompt's format example (FORMAT_SEARCH_PLACEHOLDER) is dropped.

A block without a file name edits the same file as the block before it (train.py for the
first). Matching a SEARCH part, in order: exact text starting at a line start; then line by
line ignoring trailing whitespace and tabs against spaces in the indentation; then the same with
the whole block's indentation shifted uniformly (the replacement is re-indented by the same
shift). The first way that matches decides: a SEARCH part that matches more than one place that
way is ambiguous and not applied (its line numbers are reported); one that matches nowhere is
reported with the nearest lines of the file (difflib), so the model can copy them exactly.

Everything here is pure text processing (no LLM, no I/O).
"""
from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

SEARCH_RE = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
REPLACE_RE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})")
FILENAME_RE = re.compile(r"^[\w.\-/\\]*[\w\-]\.[A-Za-z0-9]{1,8}$")
DESCRIPTION_RE = re.compile(r"^[\s>*_#-]*DESCRIPTION[*_\s]*:[*_\s]*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
FENCED_BLOCK_RE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL)
THINK_BLOCK_RE = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)
THINK_OPEN_RE = re.compile(r"^\s*<(think|thinking|reasoning)>", re.IGNORECASE)
THINK_CLOSE_RE = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)
HUNK_HEADER_RE = re.compile(r"^@@.*@@|^@@\s*$")
DIFF_FILE_RE = re.compile(r"^(?:\+\+\+|---)\s+(?:[ab]/)?(?P<name>\S+)")
DIFF_LANGS = ("diff", "patch", "udiff")
PYTHON_LANGS = ("", "python", "py", "python3")
# Comment lines by which a model may say "the rest stays as it was" instead of writing it out.
ELISION_HINT_RE = re.compile(
    r"\b(rest of|unchanged|same as (before|above|the original|original)|existing code|omitted|elided|"
    r"remains? the same|as before)\b", re.IGNORECASE)
# Words of a comment that is nothing but an elision marker ("# ... rest unchanged ...", "# (unchanged)").
ELISION_WORDS = frozenset("""rest of the file code script module function functions method methods class classes
body bodies everything else all other others remaining existing below above here from on is are remains remain
stays stay unchanged same as before original omitted for brevity elided previous previously earlier identical
untouched unmodified and etc not changed no changes shown code keep kept lines line that this these""".split())
# The placeholders of the prompt's format example (operators/prompts.py EDIT_FORMAT uses these).
FORMAT_SEARCH_PLACEHOLDER = "<lines copied exactly from the current train.py, indentation and comments included>"
FORMAT_REPLACE_PLACEHOLDER = "<the lines that replace them>"
FORMAT_DESCRIPTION_PLACEHOLDER = "<one line, under 100 characters"

MAX_DESCRIPTION_CHARS = 200
WHOLE_FILE_MIN_FRACTION = 0.5   # a fenced block counts as a whole file from half the old file's lines
TAB_WIDTH = 4                   # a tab in an indentation counts as this many spaces when matching


@dataclass(frozen=True)
class Edit:
    """One SEARCH/REPLACE block (or diff hunk). `filename` is None when the reply did not name one."""

    filename: str | None
    search: str
    replace: str

    def render(self) -> str:
        """The block as the model should write it (used to quote a failed block back)."""
        return (f"{self.filename or 'train.py'}\n<<<<<<< SEARCH\n{_with_newline(self.search)}"
                f"=======\n{_with_newline(self.replace)}>>>>>>> REPLACE")


@dataclass(frozen=True)
class ParsedReply:
    description: str               # "" when the reply has no DESCRIPTION line
    edits: tuple[Edit, ...]        # in reply order
    whole_file: str | None         # a fenced whole file, only looked for when there are no edits
    whole_file_name: str | None    # the file name written just above that fence, if any
    problems: tuple[str, ...]      # what could not be parsed (an unterminated block, ...)
    from_diff: bool = False        # the edits are a unified diff's hunks
    echoed_example: bool = False   # some block only repeated the prompt's format example
    thinking_only: bool = False    # nothing was left once the <think> sections were removed


@dataclass(frozen=True)
class Ambiguous:
    edit: Edit
    lines: tuple[int, ...]         # 1-based first line of every place its SEARCH part matches


@dataclass(frozen=True)
class ApplyResult:
    source: str                    # the text with every block that matched applied
    applied: int
    failed: tuple[Edit, ...]       # blocks whose SEARCH part matched nowhere
    ambiguous: tuple[Ambiguous, ...] = ()   # blocks whose SEARCH part matched more than one place


@dataclass(frozen=True)
class Match:
    """Where an edit's SEARCH part matches: the line numbers, and the result when it is one place."""

    lines: tuple[int, ...]         # 1-based first line of each matching place, () when none
    source: str | None             # the edited text when exactly one place matched, else None


@dataclass(frozen=True)
class Nearest:
    first_line: int                # 1-based line number of `text`'s first line in the file
    last_line: int
    text: str                      # the file's lines, verbatim
    similarity: float              # difflib ratio between the SEARCH part and the best window


# ---------------------------------------------------------------------------------------------
# Parsing

def parse_reply(text: str, old_source: str = "") -> ParsedReply:
    """Description, blocks (or diff hunks) and, when there are neither, a whole fenced file from `text`.

    `old_source` sets how long a fenced block must be to count as the whole file, and tells a
    genuine comment from an elision marker.
    """
    raw = (text or "").replace("\r\n", "\n")
    text = strip_thinking(raw)
    thinking_only = bool(raw.strip()) and not text.strip()
    edits, problems = find_edit_blocks(text)
    real = [edit for edit in edits if not is_format_example(edit)]
    echoed = len(real) < len(edits)
    from_diff = False
    whole, whole_name = (None, None)
    if not edits:
        real, diff_problems = find_diff_hunks(text)
        problems += diff_problems
        from_diff = bool(real)
    if not edits and not real:
        min_lines = max(1, int(WHOLE_FILE_MIN_FRACTION * len(old_source.splitlines())))
        whole, whole_name, problem = find_whole_file(text, min_lines, old_source)
        if problem:
            problems.append(problem)
    if thinking_only:
        problems.append("the reply holds only a <think> section (unterminated, or nothing after it)")
    return ParsedReply(description=parse_description(text), edits=tuple(real), whole_file=whole,
                       whole_file_name=whole_name, problems=tuple(problems), from_diff=from_diff,
                       echoed_example=echoed, thinking_only=thinking_only)


def strip_thinking(text: str) -> str:
    """`text` without its <think>...</think> sections; an unterminated one at the start takes the
    rest, and a closing tag without an opening one (the template sent it) takes what precedes it."""
    text = THINK_BLOCK_RE.sub("", text or "")
    if THINK_OPEN_RE.match(text):
        return ""
    closing = list(THINK_CLOSE_RE.finditer(text))
    if closing:
        text = text[closing[-1].end():]
    return text


def parse_description(text: str) -> str:
    """The first `DESCRIPTION: ...` line's text, one line, at most MAX_DESCRIPTION_CHARS."""
    for match in DESCRIPTION_RE.finditer(text or ""):
        description = " ".join(match.group(1).strip().strip("`*_").split())
        if description.startswith(FORMAT_DESCRIPTION_PLACEHOLDER):
            continue   # the format example, echoed
        if len(description) > MAX_DESCRIPTION_CHARS:
            description = description[:MAX_DESCRIPTION_CHARS - 3].rstrip() + "..."
        return description
    return ""


def is_format_example(edit: Edit) -> bool:
    """Whether a block only repeats the prompt's format example instead of quoting train.py."""
    placeholders = (FORMAT_SEARCH_PLACEHOLDER[:30].lower(), FORMAT_REPLACE_PLACEHOLDER[:20].lower())
    return any(edit.search.strip().lower().startswith(p) or edit.replace.strip().lower().startswith(p)
               for p in placeholders)


def find_edit_blocks(text: str) -> tuple[list[Edit], list[str]]:
    """Every SEARCH/REPLACE block of `text`, and a note for each malformed one."""
    lines = text.replace("\r\n", "\n").split("\n")
    edits: list[Edit] = []
    problems: list[str] = []
    current_file: str | None = None
    i = 0
    while i < len(lines):
        if not SEARCH_RE.match(lines[i]):
            i += 1
            continue
        named = _filename_above(lines, i)
        if named is not None:
            current_file = named
        j = i + 1
        while j < len(lines) and not DIVIDER_RE.match(lines[j]):
            if SEARCH_RE.match(lines[j]) or REPLACE_RE.match(lines[j]):
                break
            j += 1
        if j >= len(lines) or not DIVIDER_RE.match(lines[j]):
            problems.append(f"a SEARCH block (line {i + 1} of the reply) has no ======= divider")
            i = j if j > i else i + 1
            continue
        k = j + 1
        while k < len(lines) and not REPLACE_RE.match(lines[k]):
            if SEARCH_RE.match(lines[k]):
                break
            k += 1
        if k >= len(lines) or not REPLACE_RE.match(lines[k]):
            problems.append(f"a SEARCH block (line {i + 1} of the reply) has no >>>>>>> REPLACE end")
            i = k if k > j else j + 1
            continue
        edits.append(Edit(filename=current_file, search=_join(lines[i + 1:j]), replace=_join(lines[j + 1:k])))
        i = k + 1
    return edits, problems


def find_diff_hunks(text: str) -> tuple[list[Edit], list[str]]:
    """The hunks of the unified diffs in `text` (diff/patch blocks, or bare `@@` hunks) as edits."""
    edits: list[Edit] = []
    problems: list[str] = []
    fenced_spans = []
    for block in FENCED_BLOCK_RE.finditer(text):
        body = block.group("body")
        lang = block.group("lang").lower()
        looks_like_diff = lang in PYTHON_LANGS and re.match(r"(---|\+\+\+|diff --git|@@)", body)
        if lang in DIFF_LANGS or looks_like_diff:
            fenced_spans.append((block.start(), block.end()))
            found = _hunks(body.split("\n"), fenced=True)
            if not found:
                problems.append("a diff block has no +/- lines")
            edits += found
    outside = text
    for start, end in reversed(fenced_spans):
        outside = outside[:start] + outside[end:]
    if not edits and any(HUNK_HEADER_RE.match(line) for line in outside.split("\n")):
        edits += _hunks(outside.split("\n"), fenced=False)
    return edits, problems


def _hunks(lines: list[str], fenced: bool) -> list[Edit]:
    """The hunks among `lines`; outside a fence only after an `@@` header, up to the first line
    that is not a hunk line."""
    edits: list[Edit] = []
    filename: str | None = None
    search: list[str] = []
    replace: list[str] = []
    changed = False
    inside = fenced and not any(HUNK_HEADER_RE.match(line) for line in lines)

    def close() -> None:
        nonlocal search, replace, changed
        while search and replace and search[-1] == "" and replace[-1] == "":   # blank lines after the hunk
            search.pop()
            replace.pop()
        if changed:
            edits.append(Edit(filename=filename, search=_join(search), replace=_join(replace)))
        search, replace, changed = [], [], False

    for index, line in enumerate(lines):
        next_line = lines[index + 1] if index + 1 < len(lines) else ""
        header = DIFF_FILE_RE.match(line)
        if header and (line.startswith("+++") or next_line.startswith("+++")):
            close()
            name = header.group("name")
            if line.startswith("+++") and name != "/dev/null":
                filename = name
            elif filename is None and name != "/dev/null":
                filename = name
            inside = fenced and not any(HUNK_HEADER_RE.match(rest) for rest in lines[index:])
            continue
        if HUNK_HEADER_RE.match(line):
            close()
            inside = True
            continue
        if line.startswith("diff --git") or line.startswith("index ") or FENCE_RE.match(line):
            close()
            inside = False
            continue
        if not inside:
            continue
        if line.startswith("\\"):        # "\ No newline at end of file"
            continue
        if line.startswith("+"):
            replace.append(line[1:])
            changed = True
        elif line.startswith("-"):
            search.append(line[1:])
            changed = True
        elif line.startswith(" ") or line == "":
            search.append(line[1:])
            replace.append(line[1:])
        elif fenced:                       # a context line whose leading space the model dropped
            search.append(line)
            replace.append(line)
        else:
            close()
            inside = False
    close()
    return edits


def find_whole_file(text: str, min_lines: int, old_source: str = "") -> tuple[str | None, str | None, str | None]:
    """(file text, file name above its fence, problem): the longest fenced python (or untagged)
    block, when it has at least `min_lines` lines and no elision placeholder (elision_marker)."""
    blocks = [m for m in FENCED_BLOCK_RE.finditer(text) if m.group("lang").lower() in PYTHON_LANGS]
    if not blocks:
        return None, None, None
    best = max(blocks, key=lambda m: len(m.group("body")))
    body = best.group("body")
    count = len(body.splitlines())
    if count < min_lines:
        return None, None, (f"the reply's code block has {count} lines and no SEARCH/REPLACE block; "
                            f"a whole train.py needs at least {min_lines} lines")
    placeholder = elision_marker(body, old_source)
    if placeholder:
        return None, None, f"the whole-file block elides code ({placeholder!r})"
    preceding = text[:best.start()].rstrip("\n").split("\n")
    name = _as_filename(preceding[-1]) if preceding else None
    return body, name, None


def elision_marker(body: str, old_source: str = "") -> str | None:
    """The first line of `body`, not in the old file, that stands for omitted code (see docs/llm.md), or None."""
    old_lines = {line.strip() for line in old_source.splitlines()}
    hinted = None
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped or stripped in old_lines:
            continue
        if stripped in ("...", "\u2026") or re.fullmatch(r"(\.\.\.|\u2026)\s*#.*", stripped):
            return stripped
        if not stripped.startswith("#"):
            continue
        comment = stripped.lstrip("#").strip()
        words = re.findall(r"[a-z]+", comment.lower())
        dots = comment.startswith("...") or comment.startswith("\u2026")
        if dots or (words and all(w in ELISION_WORDS for w in words) and ELISION_HINT_RE.search(comment)):
            return stripped
        if hinted is None and ELISION_HINT_RE.search(comment):
            hinted = stripped
    if hinted is not None and _lost_definitions(body, old_source):
        return hinted
    return None


def _lost_definitions(new_source: str, old_source: str) -> bool:
    """Whether `new_source` lacks a function or class name `old_source` defines (True when it
    does not parse)."""
    def names(source: str) -> set[str]:
        return {node.name for node in ast.walk(ast.parse(source))
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    try:
        new_names = names(new_source)
    except (SyntaxError, ValueError):
        return True
    try:
        old_names = names(old_source)
    except (SyntaxError, ValueError):
        return False
    return bool(old_names - new_names)


def edits_to_other_files(edits: tuple[Edit, ...] | list[Edit], target: str = "train.py") -> list[str]:
    """File names, other than `target`, that some block edits (compared by base name)."""
    others = []
    for edit in edits:
        if edit.filename is not None and not is_target(edit.filename, target) and edit.filename not in others:
            others.append(edit.filename)
    return others


def is_target(filename: str, target: str = "train.py") -> bool:
    """Whether `filename` names `target` (by base name)."""
    return re.split(r"[/\\]", filename.strip())[-1] == target


def _filename_above(lines: list[str], index: int) -> str | None:
    """The file name written on the nearest non-blank line above a SEARCH marker (skipping one
    opening ``` fence), or None."""
    j = index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j >= 0 and FENCE_RE.match(lines[j]):
        j -= 1
        while j >= 0 and not lines[j].strip():
            j -= 1
    return _as_filename(lines[j]) if j >= 0 else None


def _as_filename(line: str) -> str | None:
    candidate = line.strip().strip("*`#:_ ").strip()
    candidate = re.sub(r"^(file(name)?|path)\s*:\s*", "", candidate, flags=re.IGNORECASE).strip("`*_ ")
    return candidate if FILENAME_RE.match(candidate) else None


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


# ---------------------------------------------------------------------------------------------
# Applying

def apply_edits(source: str, edits: tuple[Edit, ...] | list[Edit]) -> ApplyResult:
    """Apply the blocks in order; a block that matches nowhere is skipped and reported (unless
    its REPLACE part is already in the file: a fix reply repeating an applied block), and so is
    one that matches more than one place."""
    failed = []
    ambiguous = []
    applied = 0
    for edit in edits:
        match = match_edit(source, edit)
        if match.source is not None:
            source = match.source
            applied += 1
        elif len(match.lines) > 1:
            ambiguous.append(Ambiguous(edit, match.lines))
        elif _already_applied(source, edit):
            applied += 1   # a fix reply that repeats a block which was applied before
        else:
            failed.append(edit)
    return ApplyResult(source=source, applied=applied, failed=tuple(failed), ambiguous=tuple(ambiguous))


def _already_applied(source: str, edit: Edit) -> bool:
    replace = _with_newline(edit.replace)
    return bool(replace.strip()) and replace != _with_newline(edit.search) and (
        source.startswith(replace) or ("\n" + replace) in source)


def apply_edit(source: str, edit: Edit) -> str | None:
    """`source` with the block applied, or None when its SEARCH part matches nowhere or in more
    than one place (an empty SEARCH part matches nowhere: the model must quote the lines)."""
    return match_edit(source, edit).source


def match_edit(source: str, edit: Edit) -> Match:
    """Where the block's SEARCH part matches `source`, by the first way that finds it (exact at a
    line start; whitespace-tolerant; with an indentation shift), and the result when unique."""
    search, replace = _with_newline(edit.search), _with_newline(edit.replace)
    if not search.strip():
        return Match((), None)
    # 1. exact, at a line start
    starts = []
    index = source.find(search)
    while index >= 0:
        if index == 0 or source[index - 1] == "\n":
            starts.append(index)
        index = source.find(search, index + 1)
    if starts:
        lines = tuple(source.count("\n", 0, start) + 1 for start in starts)
        if len(starts) > 1:
            return Match(lines, None)
        return Match(lines, source[:starts[0]] + replace + source[starts[0] + len(search):])
    file_lines = source.splitlines(keepends=True)
    search_lines = search.splitlines()
    replace_lines = replace.splitlines()
    # 2. ignoring trailing whitespace and tabs against spaces; 3. with the indentation shifted uniformly
    for loose in (False, True):
        found = []
        for i in range(len(file_lines) - len(search_lines) + 1):
            window = [line.rstrip("\r\n") for line in file_lines[i:i + len(search_lines)]]
            new_lines = _match_window(window, search_lines, replace_lines, loose)
            if new_lines is not None:
                found.append((i, new_lines))
        if len(found) > 1:
            return Match(tuple(i + 1 for i, _ in found), None)
        if found:
            [(i, new_lines)] = found
            ending = "\n" if file_lines[i + len(search_lines) - 1].endswith("\n") or \
                i + len(search_lines) < len(file_lines) else ""
            middle = "\n".join(new_lines) + ending if new_lines else ""
            return Match((i + 1,), "".join(file_lines[:i]) + middle + "".join(file_lines[i + len(search_lines):]))
    return Match((), None)


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _spaces(line: str) -> str:
    """The line with its indentation's tabs expanded and trailing whitespace dropped."""
    return _indent(line).expandtabs(TAB_WIDTH) + line.strip()


def _match_window(window: list[str], search: list[str], replace: list[str], loose: bool) -> list[str] | None:
    """The replacement lines if `window` matches `search` (else None): trailing whitespace and
    tabs against spaces are ignored; with `loose`, so is a uniform indentation shift, which the
    replacement then gets. The replacement is indented in the window's style (tabs or spaces)."""
    uses_tabs = any("\t" in _indent(line) for line in window)
    search_tabs = any("\t" in _indent(line) for line in search + replace)
    if not loose:
        if all(_spaces(a) == _spaces(b) for a, b in zip(window, search)):
            return _restyle(replace, uses_tabs) if uses_tabs != search_tabs else replace
        return None
    added = None
    for file_line, search_line in zip(window, search):
        if not file_line.strip() and not search_line.strip():
            continue
        if file_line.strip() != search_line.strip():
            return None
        shift = len(_spaces(file_line)) - len(file_line.strip()) - (len(_spaces(search_line)) - len(search_line.strip()))
        if added is None:
            added = shift
        elif added != shift:
            return None
    if added is None:
        return None
    shifted = []
    for line in replace:
        if not line.strip():
            shifted.append(line)
            continue
        width = len(_indent(line).expandtabs(TAB_WIDTH)) + added
        shifted.append(" " * max(0, width) + line.strip())
    return _restyle(shifted, uses_tabs)


def _restyle(lines: list[str], tabs: bool) -> list[str]:
    """`lines` indented with tabs (TAB_WIDTH spaces each) or with spaces only."""
    styled = []
    for line in lines:
        if not line.strip():
            styled.append(line)
            continue
        width = len(_indent(line).expandtabs(TAB_WIDTH))
        indent = "\t" * (width // TAB_WIDTH) + " " * (width % TAB_WIDTH) if tabs else " " * width
        styled.append(indent + line.lstrip())
    return styled


# ---------------------------------------------------------------------------------------------
# Feedback

def nearest_lines(source: str, search: str, context: int = 2, max_lines: int = 60) -> Nearest | None:
    """The window of `source` most similar to `search` (same number of lines), widened by
    `context` lines each side; None for an empty file or an empty SEARCH part."""
    file_lines = source.splitlines()
    search_lines = search.splitlines()
    while search_lines and not search_lines[0].strip():
        search_lines.pop(0)
    while search_lines and not search_lines[-1].strip():
        search_lines.pop()
    if not file_lines or not search_lines:
        return None
    size = min(len(search_lines), len(file_lines))
    target = "\n".join(line.strip() for line in search_lines)
    stripped = [line.strip() for line in file_lines]
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)
    best_ratio, best_start = -1.0, 0
    for start in range(len(file_lines) - size + 1):
        matcher.set_seq1("\n".join(stripped[start:start + size]))
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best_ratio, best_start = ratio, start
    first = max(0, best_start - context)
    last = min(len(file_lines), best_start + size + context, first + max_lines)
    return Nearest(first_line=first + 1, last_line=last, text="\n".join(file_lines[first:last]),
                   similarity=max(0.0, best_ratio))


def syntax_error(source: str, filename: str = "train.py") -> SyntaxError | None:
    """The SyntaxError compiling `source` raises, or None when it compiles."""
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as error:
        return error
    except ValueError as error:  # e.g. null bytes
        return SyntaxError(str(error))
    return None


def lines_around(source: str, lineno: int | None, radius: int = 4) -> tuple[int, str]:
    """(first line number, text) of the lines around `lineno` (1-based)."""
    lines = source.splitlines()
    if not lines:
        return 1, ""
    center = min(max(1, lineno or 1), len(lines))
    first = max(1, center - radius)
    last = min(len(lines), center + radius)
    return first, "\n".join(lines[first - 1:last])


def same_program(a: str, b: str) -> bool:
    """Whether two sources differ only in comments or formatting (same AST), or are equal."""
    if a == b:
        return True
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except (SyntaxError, ValueError):
        return False


def unified_diff(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> str:
    """A unified diff of two texts ("" when they are equal)."""
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=old_name, tofile=new_name, n=context))
