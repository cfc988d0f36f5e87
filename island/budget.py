"""The time budget, enforced rather than trusted: three checks that make a run ``over-budget``.

A task's train.py imports its budget from prepare.py (``from prepare import TIME_BUDGET``) and
reports what it counted (``training_seconds``). A candidate could give itself more training by
rebinding the budget, or by training in phases it does not count (more warm-up steps excluded
from the clock, an untimed pre-training loop). The island therefore checks:

1. before the run (``budget_rebinding``): train.py must not rebind a name it imports from
   prepare.py that matches ``BUDGET_PATTERNS`` (``*BUDGET*``): no ``TIME_BUDGET = 2 *
   TIME_BUDGET``, ``TIME_BUDGET += 60``, ``TIME_BUDGET, x = 600, 1``, ``global TIME_BUDGET``
   in a function, ``for TIME_BUDGET in ...``, ``prepare.TIME_BUDGET = ...``,
   ``setattr(prepare, "TIME_BUDGET", ...)``, ``globals()["TIME_BUDGET"] = ...``, nor import
   another value under its name. Reading it is fine; so is a budget of its own under another
   name (the second check judges what it did with it).
2. after the run (``over_budget``): ``training_seconds`` may exceed the budget by at most
   ``tolerance`` (a fraction, default 5%) plus ``tolerance_s`` (default 5 s): the anchor stops
   after the step that crosses the budget, so it overshoots by up to one step.
3. after the run: the uncounted time, wall seconds minus ``training_seconds`` (start-up,
   compilation, uncounted warm-up steps, the final evaluation), may exceed the island's baseline
   uncounted time by at most ``margin`` (a fraction, default 100%) plus ``margin_s`` (default
   30 s); ``uncounted_limit`` turns the baselines into the limit a Job carries
   (``Job.max_uncounted_s``). The margin is wide on purpose: a bigger model evaluates more
   slowly and a changed model compiles cold; what it catches is minutes of hidden training.

Runs that print no ``training_seconds`` are not judged by 2 or 3 (nothing to compare). A
determined candidate can still hide work (in another process, in code the AST check cannot see
through such as ``sys.modules["prepare"]``); docs/safety.md lists what is and is not contained.
"""
from __future__ import annotations

import ast
import fnmatch
from collections.abc import Mapping, Sequence

BUDGET_PATTERNS: tuple[str, ...] = ("*BUDGET*",)
PREPARE_MODULE = "prepare"
DEFAULT_TOLERANCE = 0.05
DEFAULT_TOLERANCE_S = 5.0
DEFAULT_MARGIN = 1.0
DEFAULT_MARGIN_S = 30.0


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), p.upper()) for p in patterns)


def _budget_imports(tree: ast.Module, patterns: Sequence[str]) -> tuple[dict[str, str], set[str]]:
    """({local name: prepare's name} of budget names imported from prepare, local names of the
    prepare module itself). After ``from prepare import *`` every stored name that matches the
    patterns counts as imported."""
    names: dict[str, str] = {}
    modules: set[str] = set()
    star = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == PREPARE_MODULE and node.level == 0:
            for alias in node.names:
                if alias.name == "*":
                    star = True
                elif _matches(alias.name, patterns):
                    names[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PREPARE_MODULE:
                    modules.add(alias.asname or alias.name)
    if star:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and _matches(node.id, patterns):
                names.setdefault(node.id, node.id)
    return names, modules


def _targets(node: ast.AST) -> list[ast.expr]:
    """The expressions a statement or expression stores into."""
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        return [node.target]
    if isinstance(node, ast.NamedExpr):
        return [node.target]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [item.optional_vars for item in node.items if item.optional_vars is not None]
    if isinstance(node, ast.Delete):
        return list(node.targets)
    return []


def _stored_names(target: ast.expr) -> list[ast.expr]:
    """Every Name, Attribute and Subscript a target stores into (tuples and starred unpacked)."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return [leaf for element in target.elts for leaf in _stored_names(element)]
    if isinstance(target, ast.Starred):
        return _stored_names(target.value)
    return [target]


def _is_globals_call(node: ast.expr) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("globals", "vars", "locals") and not node.args)


def budget_rebinding(source: str, patterns: Sequence[str] = BUDGET_PATTERNS) -> str | None:
    """Why train.py ``source`` rebinds a budget it imports from prepare.py, or None when it does not
    (or does not parse: the compile guard reports that)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    names, modules = _budget_imports(tree, patterns)
    if not names and not modules:
        return None

    def is_budget_attr(node: ast.expr) -> bool:
        return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and _matches(node.attr, patterns))

    def where(node: ast.AST) -> str:
        return f"line {getattr(node, 'lineno', '?')}"

    def label(name: str) -> str:
        return name if names[name] == name else f"{name} (prepare's {names[name]})"

    for node in ast.walk(tree):
        for target in _targets(node):
            for leaf in _stored_names(target):
                if isinstance(leaf, ast.Name) and leaf.id in names:
                    return (f"train.py rebinds {label(leaf.id)}, the budget it imports from prepare.py "
                            f"({where(node)}); the time budget is fixed")
                if is_budget_attr(leaf):
                    return (f"train.py assigns prepare.{leaf.attr} ({where(node)}); the time budget is fixed")
                if (isinstance(leaf, ast.Subscript) and _is_globals_call(leaf.value)
                        and isinstance(leaf.slice, ast.Constant) and leaf.slice.value in names):
                    return (f"train.py rebinds {leaf.slice.value} through {leaf.value.func.id}() ({where(node)}); "
                            "the time budget is fixed")
        if isinstance(node, ast.Global) and set(node.names) & set(names):
            name = sorted(set(node.names) & set(names))[0]
            return f"train.py declares the imported budget {name} global in a function ({where(node)}); the time budget is fixed"
        if isinstance(node, ast.arg) and node.arg in names:
            return (f"train.py shadows {node.arg}, the budget it imports from prepare.py, with a parameter "
                    f"({where(node)}); the time budget is fixed")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
            return f"train.py defines {node.name}, the budget it imports from prepare.py ({where(node)})"
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                isinstance(node, ast.ImportFrom) and node.module == PREPARE_MODULE):
            for alias in node.names:
                if (alias.asname or alias.name.split(".")[0]) in names:
                    return (f"train.py imports something else as {alias.asname or alias.name} ({where(node)}), "
                            "the budget it imports from prepare.py")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr")
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in modules):
            return f"train.py calls {node.func.id} on the prepare module ({where(node)}); the time budget is fixed"
    return None


def uncounted_s(metrics: Mapping[str, float], wall_s: float) -> float | None:
    """Seconds of a run that its own clock did not count (wall minus training_seconds)."""
    training = metrics.get("training_seconds")
    return None if training is None else max(0.0, wall_s - training)


def uncounted_limit(baseline_uncounted: Sequence[float], margin: float = DEFAULT_MARGIN,
                    margin_s: float = DEFAULT_MARGIN_S) -> float | None:
    """The most uncounted seconds a candidate may take: the baselines' largest times (1 + margin),
    plus margin_s; None without a baseline that reported training_seconds."""
    values = [v for v in baseline_uncounted if v is not None]
    return max(values) * (1.0 + margin) + margin_s if values else None


def over_budget(metrics: Mapping[str, float], wall_s: float, budget_s: float,
                tolerance: float = DEFAULT_TOLERANCE, tolerance_s: float = DEFAULT_TOLERANCE_S,
                max_uncounted_s: float | None = None) -> str | None:
    """Why a finished run is over its budget, or None: training_seconds past budget_s x (1 +
    tolerance) + tolerance_s, or uncounted time past max_uncounted_s."""
    training = metrics.get("training_seconds")
    if training is None:
        return None
    allowed = budget_s * (1.0 + tolerance) + tolerance_s
    if training > allowed:
        return (f"trained {training:.1f} s, budget {budget_s:g} s (allowed up to {allowed:.1f} s: "
                f"+{100 * tolerance:g}% +{tolerance_s:g} s)")
    uncounted = uncounted_s(metrics, wall_s)
    if max_uncounted_s is not None and uncounted is not None and uncounted > max_uncounted_s:
        return (f"{uncounted:.1f} s of the run were not counted as training (wall {wall_s:.1f} s - "
                f"training {training:.1f} s); this island's baseline allows {max_uncounted_s:.1f} s")
    return None
