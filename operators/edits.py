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

- or, instead of blocks, the whole new file in one fenced ```python block.

A block without a file name edits the same file as the block before it (train.py for the
first). Matching a SEARCH part, in order: exact text starting at a line start (the first such
occurrence wins); then line by line ignoring trailing whitespace; then line by line with the
whole block's indentation shifted uniformly (the replacement is re-indented by the same shift).
A SEARCH part that matches nowhere is reported with the nearest lines of the file (difflib),
so the model can copy them exactly.

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
    r"^(?P<fence>`{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)
# Lines by which a model says "the rest stays as it was" instead of writing it out.
PLACEHOLDER_RE = re.compile(
    r"^\s*#\s*\.{3}|^\s*#.*\b(rest of (the )?(file|code)|unchanged|same as (before|above|original))\b",
    re.IGNORECASE | re.MULTILINE)

MAX_DESCRIPTION_CHARS = 200
WHOLE_FILE_MIN_FRACTION = 0.5   # a fenced block counts as a whole file from half the old file's lines


@dataclass(frozen=True)
class Edit:
    """One SEARCH/REPLACE block. `filename` is None when the reply did not name one."""

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
    whole_file: str | None         # a fenced whole file, only looked for when there are no blocks
    whole_file_name: str | None    # the file name written just above that fence, if any
    problems: tuple[str, ...]      # what could not be parsed (an unterminated block, ...)


@dataclass(frozen=True)
class ApplyResult:
    source: str                    # the text with every block that matched applied
    applied: int
    failed: tuple[Edit, ...]       # blocks whose SEARCH part matched nowhere


@dataclass(frozen=True)
class Nearest:
    first_line: int                # 1-based line number of `text`'s first line in the file
    last_line: int
    text: str                      # the file's lines, verbatim
    similarity: float              # difflib ratio between the SEARCH part and the best window


# ---------------------------------------------------------------------------------------------
# Parsing

def parse_reply(text: str, old_source: str = "") -> ParsedReply:
    """Description, blocks and (when there are no blocks) a whole fenced file from `text`.

    `old_source` sets how long a fenced block must be to count as the whole file.
    """
    text = (text or "").replace("\r\n", "\n")
    edits, problems = find_edit_blocks(text)
    whole, whole_name = (None, None)
    if not edits:
        min_lines = max(1, int(WHOLE_FILE_MIN_FRACTION * len(old_source.splitlines())))
        whole, whole_name, problem = find_whole_file(text, min_lines)
        if problem:
            problems.append(problem)
    return ParsedReply(description=parse_description(text), edits=tuple(edits), whole_file=whole,
                       whole_file_name=whole_name, problems=tuple(problems))


def parse_description(text: str) -> str:
    """The first `DESCRIPTION: ...` line's text, one line, at most MAX_DESCRIPTION_CHARS."""
    match = DESCRIPTION_RE.search(text or "")
    if not match:
        return ""
    description = " ".join(match.group(1).strip().strip("`*_").split())
    if len(description) > MAX_DESCRIPTION_CHARS:
        description = description[:MAX_DESCRIPTION_CHARS - 3].rstrip() + "..."
    return description


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


def find_whole_file(text: str, min_lines: int) -> tuple[str | None, str | None, str | None]:
    """(file text, file name above its fence, problem): the longest fenced python (or untagged)
    block, when it has at least `min_lines` lines and no "rest unchanged" placeholder."""
    blocks = [m for m in FENCED_BLOCK_RE.finditer(text)
              if m.group("lang").lower() in ("", "python", "py", "python3")]
    if not blocks:
        return None, None, None
    best = max(blocks, key=lambda m: len(m.group("body")))
    body = best.group("body")
    count = len(body.splitlines())
    if count < min_lines:
        return None, None, (f"the reply's code block has {count} lines and no SEARCH/REPLACE block; "
                            f"a whole train.py needs at least {min_lines} lines")
    placeholder = PLACEHOLDER_RE.search(body)
    if placeholder:
        return None, None, f"the whole-file block elides code ({placeholder.group(0).strip()!r})"
    preceding = text[:best.start()].rstrip("\n").split("\n")
    name = _as_filename(preceding[-1]) if preceding else None
    return body, name, None


def edits_to_other_files(edits: tuple[Edit, ...] | list[Edit], target: str = "train.py") -> list[str]:
    """File names, other than `target`, that some block edits (compared by base name)."""
    others = []
    for edit in edits:
        if edit.filename is not None and not is_target(edit.filename, target) and edit.filename not in others:
            others.append(edit.filename)
    return others


def is_target(filename: str, target: str = "train.py") -> bool:
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
    """Apply the blocks in order; a block that matches nowhere is skipped and reported, unless
    its REPLACE part is already in the file (a fix reply repeating an applied block)."""
    failed = []
    applied = 0
    for edit in edits:
        new_source = apply_edit(source, edit)
        if new_source is None and _already_applied(source, edit):
            new_source = source  # a fix reply that repeats a block which was applied before
        if new_source is None:
            failed.append(edit)
        else:
            source = new_source
            applied += 1
    return ApplyResult(source=source, applied=applied, failed=tuple(failed))


def _already_applied(source: str, edit: Edit) -> bool:
    replace = _with_newline(edit.replace)
    return bool(replace.strip()) and replace != _with_newline(edit.search) and (
        source.startswith(replace) or ("\n" + replace) in source)


def apply_edit(source: str, edit: Edit) -> str | None:
    """`source` with the block applied, or None when its SEARCH part matches nowhere (an empty
    SEARCH part matches nowhere: the model must quote the lines it replaces)."""
    search, replace = _with_newline(edit.search), _with_newline(edit.replace)
    if not search.strip():
        return None
    # 1. exact, at a line start
    start = 0
    while True:
        index = source.find(search, start)
        if index < 0:
            break
        if index == 0 or source[index - 1] == "\n":
            return source[:index] + replace + source[index + len(search):]
        start = index + 1
    file_lines = source.splitlines(keepends=True)
    search_lines = search.splitlines()
    replace_lines = replace.splitlines()
    # 2. ignoring trailing whitespace; 3. with the block's indentation shifted uniformly
    for loose in (False, True):
        for i in range(len(file_lines) - len(search_lines) + 1):
            window = [line.rstrip("\r\n") for line in file_lines[i:i + len(search_lines)]]
            new_lines = _match_window(window, search_lines, replace_lines, loose)
            if new_lines is not None:
                ending = "\n" if file_lines[i + len(search_lines) - 1].endswith("\n") or \
                    i + len(search_lines) < len(file_lines) else ""
                middle = "\n".join(new_lines) + ending if new_lines else ""
                return "".join(file_lines[:i]) + middle + "".join(file_lines[i + len(search_lines):])
    return None


def _match_window(window: list[str], search: list[str], replace: list[str], loose: bool) -> list[str] | None:
    """The replacement lines if `window` matches `search` (else None): trailing whitespace is
    ignored; with `loose`, so is a uniform indentation shift, which the replacement then gets."""
    if not loose:
        if all(a.rstrip() == b.rstrip() for a, b in zip(window, search)):
            return replace
        return None
    added = None
    for file_line, search_line in zip(window, search):
        if not file_line.strip() and not search_line.strip():
            continue
        if file_line.strip() != search_line.strip():
            return None
        file_indent = file_line[:len(file_line) - len(file_line.lstrip())]
        search_indent = search_line[:len(search_line) - len(search_line.lstrip())]
        if file_indent.endswith(search_indent):
            shift = ("+", file_indent[:len(file_indent) - len(search_indent)])
        elif search_indent.endswith(file_indent):
            shift = ("-", search_indent[:len(search_indent) - len(file_indent)])
        else:
            return None
        if shift[1] == "":
            shift = ("+", "")
        if added is None:
            added = shift
        elif added != shift:
            return None
    if added is None:
        return None
    sign, prefix = added
    if sign == "+":
        return [prefix + line if line.strip() else line for line in replace]
    return [line[len(prefix):] if line.startswith(prefix) else line.lstrip() for line in replace]


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
