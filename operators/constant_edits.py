"""The `constants` edit format (llm.edit_format=constants), for small models: the model sees
train.py's top-level constants (operators/constants.py) and answers with `NAME = value` lines
only; they are applied with the AST rewriter, which changes nothing but those values.

    DESCRIPTION: MATRIX_LR 0.08 -> 0.06, DEPTH 3 -> 4
    MATRIX_LR = 0.06
    DEPTH = 4

Lines may sit in a code fence and carry a trailing comment; a value is a Python literal or
arithmetic over numbers (`2**19`), of the constant's type (an int may go into a float). A name
that is not a constant of train.py, a value of the wrong type and an unchanged value are
reported (the first two in a fix round); anything else in the reply is ignored.
"""
from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass, field

from operators.constants import Constant, _evaluate, _NotAConstant, find_constants, format_value, rewrite_constants

LINE = re.compile(r"^\s*(?:[-*]\s+)?`?([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*[A-Za-z_]+\s*)?=\s*(.+?)`?\s*$")
COMMENT_CHARS = 60


@dataclass
class ConstantReply:
    values: dict[str, object] = field(default_factory=dict)   # name -> new value, applicable
    unknown: list[str] = field(default_factory=list)           # names that are not constants of train.py
    refused: list[str] = field(default_factory=list)           # names excluded from tuning
    invalid: list[str] = field(default_factory=list)           # "NAME = text: why"
    unchanged: list[str] = field(default_factory=list)


def shown_constants(source: str, exclude: tuple[str, ...] = ()) -> dict[str, Constant]:
    """The constants the model may change: every top-level constant but the excluded names."""
    return {name: c for name, c in find_constants(source).items()
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)}


def constants_table(source: str, exclude: tuple[str, ...] = ()) -> str:
    """`NAME = value  # the line's comment` for each constant the model may change, in file order."""
    rows = []
    for name, constant in shown_constants(source, exclude).items():
        end_of_line = source.find("\n", constant.end)
        rest = source[constant.end:end_of_line if end_of_line >= 0 else len(source)]
        comment = rest[rest.index("#") + 1:].strip() if "#" in rest else ""
        if len(comment) > COMMENT_CHARS:
            comment = comment[:COMMENT_CHARS - 3] + "..."
        rows.append(f"{name} = {constant.text}" + (f"  # {comment}" if comment else ""))
    return "\n".join(rows)


def _value(text: str) -> object:
    """A literal, or arithmetic over numbers, from the text right of `=` (a trailing comment dropped)."""
    candidates = [text.strip().rstrip(",;")]
    if "#" in text:
        candidates.append(text[:text.index("#")].strip().rstrip(",;"))
    for candidate in candidates:
        try:
            return _evaluate(ast.parse(candidate, mode="eval").body)
        except (SyntaxError, _NotAConstant, ValueError, TypeError, ZeroDivisionError, OverflowError):
            continue
    raise ValueError("not a number, bool or string literal")


def parse_constant_lines(text: str, source: str, exclude: tuple[str, ...] = ()) -> ConstantReply:
    """The `NAME = value` lines of a reply, checked against train.py's constants."""
    constants = find_constants(source)
    allowed = shown_constants(source, exclude)
    reply = ConstantReply()
    for line in text.splitlines():
        match = LINE.match(line)
        if not match or match.group(1).upper() == "DESCRIPTION":
            continue
        name, raw = match.group(1), match.group(2)
        if name not in constants:
            if name.isupper() or "_" in name:
                reply.unknown.append(name)
            continue
        if name not in allowed:
            reply.refused.append(name)
            continue
        try:
            value = _value(raw)
            rewrite_constants(source, {name: value})      # checks the type
        except ValueError as error:
            reply.invalid.append(f"{name} = {raw.strip()}: {error}")
            continue
        if format_value(value) == format_value(constants[name].value) or value == constants[name].value:
            reply.unchanged.append(name)
            continue
        reply.values[name] = value
    return reply


def apply_constants(source: str, values: dict[str, object]) -> str:
    return rewrite_constants(source, values)
