"""Find and rewrite the top-level constants of a train.py, touching nothing else.

A constant is a module-level `NAME = <literal>` (or `NAME: type = <literal>`) with an UPPER_CASE
name that the module binds exactly once, whose value is an int, float, bool or str literal, a
unary minus of a number, or arithmetic over numeric literals (`2**19`, `64 * 4`, `-3e-4`).
Rewriting replaces only the text of chosen value expressions; every other byte of the file
(comments, spacing, the rest of the code) is kept. Offline operators and task presets both
build on these two functions, so values are written back exactly: a float round-trips.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass

UPPER_CASE = re.compile(r"[A-Z][A-Z0-9_]*")
_POWER_LITERAL = re.compile(r"(?P<base>\d+)(?P<operator>\s*\*\*\s*)\d+")
_E_LITERAL = re.compile(r"[+-]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?P<e>[eE])(?P<exponent>[+-]?\d+)")

# Beyond this many bits an "arithmetic constant" is no longer a hyperparameter but a way to hang
# the parser (think 9**9**9); such expressions are simply not treated as constants.
_MAX_INT_BITS = 4096

_BINARY_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


@dataclass(frozen=True)
class Constant:
    """One rewritable constant and where its value expression sits in the source."""

    name: str
    value: int | float | bool | str
    type: type                 # int, float, bool or str
    text: str                  # the value expression as written, e.g. "2**19" or "3e-4"
    lineno: int                # AST position of the value expression: lines are 1-based,
    col_offset: int            # columns are UTF-8 byte offsets (as the ast module reports them)
    end_lineno: int
    end_col_offset: int
    start: int                 # the same span as str indices into the source: source[start:end]
    end: int


class _NotAConstant(Exception):
    pass


def find_constants(source: str) -> dict[str, Constant]:
    """Every top-level constant of `source`, by name, in source order.

    Raises SyntaxError when the source does not parse.
    """
    # A UTF-8 byte-order mark is not Python to the parser; parse past it, keep it in the output.
    bom = 1 if source.startswith("\ufeff") else 0
    tree = ast.parse(source[bom:])
    bound_once = {name for name, count in _module_bindings(tree).items() if count == 1}
    line_starts = _line_starts(source)
    constants: dict[str, Constant] = {}
    for statement in tree.body:
        name, expression = _single_name_assignment(statement)
        if name is None or not UPPER_CASE.fullmatch(name) or name not in bound_once:
            continue
        try:
            value = _evaluate(expression)
        except _NotAConstant:
            continue
        start = _str_index(source, line_starts, expression.lineno, expression.col_offset, bom)
        end = _str_index(source, line_starts, expression.end_lineno, expression.end_col_offset, bom)
        constants[name] = Constant(
            name=name,
            value=value,
            type=type(value),
            text=source[start:end],
            lineno=expression.lineno,
            col_offset=expression.col_offset,
            end_lineno=expression.end_lineno,
            end_col_offset=expression.end_col_offset,
            start=start,
            end=end,
        )
    return constants


def rewrite_constants(source: str, new_values: dict[str, object]) -> str:
    """`source` with the named constants set to new values and every other byte unchanged.

    Raises ValueError naming the constant when it is not a constant of `source`, or when the new
    value does not fit its type (an int may go into a float constant, nothing else crosses types;
    floats must be finite).
    """
    constants = find_constants(source)
    replacements = []
    for name, value in new_values.items():
        if name not in constants:
            known = ", ".join(constants) or "none"
            raise ValueError(f"{name!r} is not a top-level constant of this source (constants: {known})")
        constant = constants[name]
        replacements.append((constant.start, constant.end, format_for(constant, value)))
    rewritten = source
    for start, end, text in sorted(replacements, reverse=True):
        rewritten = rewritten[:start] + text + rewritten[end:]
    return rewritten


def format_value(value: object) -> str:
    """The Python literal for a constant value: compact, exact, and of the same type when read back."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written as a Python literal")
        # repr is the shortest text that reads back as the same float and always keeps a '.' or
        # an exponent, so a float never turns into an int: 2.0, 0.0045, 3e-05, 1e+16.
        return repr(float(value))
    if isinstance(value, str):
        return repr(value)
    raise ValueError(f"{value!r} is not an int, float, bool or str")


def format_for(constant: Constant, value: object) -> str:
    """The text that sets `constant` to `value`, in the style the source already uses where it can."""
    value = _coerce(constant, value)
    if constant.type is int:
        power = _POWER_LITERAL.fullmatch(constant.text)
        if power and _is_power_of(value, int(power["base"])):
            exponent = round(math.log(value, int(power["base"])))
            return f"{power['base']}{power['operator']}{exponent}"   # 2**19 -> 2**18, not 262144
        if "_" in constant.text and value >= 0:
            return f"{value:_}"   # the source groups digits (524_288); keep doing so
    if constant.type is str:
        return _string_literal(value, prefer_double_quotes=constant.text.startswith('"'))
    if constant.type is float and isinstance(value, float):
        written = _E_LITERAL.fullmatch(constant.text)
        if written:
            return _e_notation(value, int(written["exponent"]), written["e"])   # 989.5e12 -> 1.48e15
    return format_value(value)


def _e_notation(value: float, exponent: int, e: str = "e") -> str:
    """`value` in e-notation that reads back exactly: with the written exponent while the mantissa
    stays in [1, 1000) (3e-4 -> 4.12e-4, 989.5e12 -> 912.3e12), else the shortest scientific form
    (989.5e12 -> 1.48e15)."""
    if value == 0:
        return f"0.0{e}0"
    mantissa = value / 10.0 ** exponent
    if 1 <= abs(mantissa) < 1000:
        for digits in range(1, 18):
            text = f"{mantissa:.{digits}g}"
            if "e" not in text and float(f"{text}{e}{exponent}") == value:
                return f"{text}{e}{exponent}"
    for digits in range(0, 17):
        mantissa_text, _, power = f"{value:.{digits}e}".partition("e")
        text = f"{mantissa_text}{e}{int(power)}"
        if float(text) == value:
            return text
    return format_value(value)


def _coerce(constant: Constant, value: object) -> int | float | bool | str:
    """`value` as the constant's type, or ValueError naming the constant."""
    wanted = constant.type
    is_bool = isinstance(value, bool)
    if wanted is bool and is_bool:
        return bool(value)
    if wanted is int and isinstance(value, int) and not is_bool:
        return int(value)
    if wanted is float and isinstance(value, (int, float)) and not is_bool:
        value = float(value)
        if math.isfinite(value):
            return value
        raise ValueError(f"{constant.name}: {value!r} cannot be written as a Python literal")
    if wanted is str and isinstance(value, str):
        return str(value)
    raise ValueError(
        f"{constant.name} is a {wanted.__name__} constant; cannot set it to "
        f"{value!r} ({type(value).__name__})"
    )


def _is_power_of(value: int, base: int) -> bool:
    if base < 2 or value < base:
        return False
    return base ** round(math.log(value, base)) == value


def _string_literal(value: str, prefer_double_quotes: bool) -> str:
    literal = repr(value)
    # repr picks single quotes unless the text contains one; when it picked them and the text
    # has no double quote either, the body needs no quote escapes and can be re-wrapped as is.
    if prefer_double_quotes and literal[0] == "'" and '"' not in value:
        literal = '"' + literal[1:-1] + '"'
    return literal


def _single_name_assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """(name, value) of `NAME = value` or `NAME: T = value`; (None, None) for anything else."""
    if isinstance(statement, ast.Assign):
        if len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            return statement.targets[0].id, statement.value
    elif isinstance(statement, ast.AnnAssign):
        if statement.simple and statement.value is not None and isinstance(statement.target, ast.Name):
            return statement.target.id, statement.value
    return None, None


def _evaluate(node: ast.expr) -> int | float | bool | str:
    """The value of a literal or of arithmetic over numeric literals; _NotAConstant otherwise."""
    if isinstance(node, ast.Constant):
        value = node.value
        if type(value) in (int, float, bool, str):
            if isinstance(value, float) and not math.isfinite(value):
                raise _NotAConstant   # 1e400 is inf, which no literal writes back
            return value
        raise _NotAConstant
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate_number(node.operand)
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left, right = _evaluate_number(node.left), _evaluate_number(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(left.bit_length(), 1) * right > _MAX_INT_BITS:
                raise _NotAConstant
        try:
            value = _BINARY_OPS[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            raise _NotAConstant from None
        if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
            raise _NotAConstant   # (-8) ** 0.5 is complex; 1e300 * 1e300 is inf
        return value
    raise _NotAConstant


def _evaluate_number(node: ast.expr) -> int | float:
    value = _evaluate(node)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _NotAConstant   # True + 1 and "a" * 3 are legal Python but not hyperparameters
    return value


def _module_bindings(tree: ast.Module) -> dict[str, int]:
    """How many statements bind each name in module scope.

    Counts bindings anywhere in module scope (an assignment under `if torch.cuda.is_available():`
    overrides the top-level one), skips function and class bodies (their own scopes), and marks
    names declared `global` inside a function as bound more than once, since that function can
    reassign them.
    """
    counts: dict[str, int] = {}

    def bind(name: str, times: int = 1) -> None:
        counts[name] = counts.get(name, 0) + times

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name)
            for inner in ast.walk(node):
                if isinstance(inner, ast.Global):
                    for name in inner.names:
                        bind(name, 2)
            for part in (*node.decorator_list, *getattr(node, "bases", ()), *getattr(node, "keywords", ())):
                visit(part)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return   # own scopes
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bind(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bind((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bind(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bind(node.name)
        elif isinstance(node, ast.Global):
            for name in node.names:
                bind(name, 2)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return counts


def _line_starts(source: str) -> list[int]:
    """str index where each line starts, splitting lines the way the Python tokenizer does."""
    starts = [0]
    for match in re.finditer(r"\r\n|\r|\n", source):
        starts.append(match.end())
    return starts


def _str_index(source: str, line_starts: list[int], lineno: int, utf8_col: int, bom: int) -> int:
    """Convert an AST position (1-based line, UTF-8 byte column) into a str index."""
    line_start = line_starts[lineno - 1] + (bom if lineno == 1 else 0)
    line_end = line_starts[lineno] if lineno < len(line_starts) else len(source)
    prefix = source[line_start:line_end].encode("utf-8")[:utf8_col].decode("utf-8")
    return line_start + len(prefix)
