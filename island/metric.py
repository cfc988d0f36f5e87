"""Metric capture: the val_bpb a run is scored by is the one the task's evaluator returned.

train.py prints its own summary, so on its own word a candidate could print any number. When the
task's prepare.py defines ``evaluate_bpb`` (the default task does; see ``evaluator_name``), the
fitness run also puts a tiny ``sitecustomize.py`` on the child's import path (a private temporary
directory prepended to PYTHONPATH; train.py runs as ``python train.py``, so site is imported).
The shim, stdlib only and a fraction of a millisecond:

  * takes the file descriptor named by EVOLVE_METRIC_FD (an unlinked temporary file the harness
    opened), removes the variable from os.environ and marks the descriptor close-on-exec, so
    programs train.py starts neither see nor inherit it;
  * writes ``loaded`` to it;
  * adds a finder to sys.meta_path that, when the top-level module ``prepare`` is imported and
    defines the evaluator, replaces it by a wrapper (``armed``) that writes ``val <float>`` for
    every value it returns for split "val". Which calls are "val": an evaluator with a ``split``
    parameter (positional or keyword, with or without a default) is read through
    ``inspect.signature(...).bind``; one without a ``split`` parameter, like the anchor's
    ``evaluate_bpb(model, tokenizer, batch_size)``, has only one split and every call counts.
    inspect.signature follows ``__wrapped__``, so an evaluator decorated with ``@torch.no_grad()``
    or any ``functools.wraps`` wrapper is read by its own parameters, not the wrapper's
    ``*args, **kwargs``.

After the run the harness (``check``) compares the printed val_bpb with the LAST value the
evaluator returned for "val", at the 6 decimals the summary prints: a mismatch, or a printed
val_bpb with no evaluation at all, makes the run ``metric-mismatch``; when they agree the captured
value (full precision) is the score. Evaluating several times is allowed (a run may evaluate
mid-training); only the last evaluation counts, so "evaluate two models, print the better one"
fails unless the better one is evaluated last, which is then simply the final model.

This is an in-process wrapper: a determined candidate can defeat it (write to the descriptor
itself, load prepare.py under another name and still print a number that matches, patch the
wrapper...). docs/safety.md says what it does and does not stop.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FD_ENV = "EVOLVE_METRIC_FD"
NAME_ENV = "EVOLVE_METRIC_EVALUATOR"
DEFAULT_EVALUATOR = "evaluate_bpb"
# Agreement: the same 6-decimal rendering, or within half a unit of the 6th decimal (a summary
# printed with other rounding), or 1e-9 relative for large values.
ABS_TOL = 5e-7
REL_TOL = 1e-9

SHIM = r'''
# Installed by island/metric.py for one fitness run; not part of the task.
def _evolve_metric_shim():
    import os, sys
    fd_s = os.environ.pop("EVOLVE_METRIC_FD", None)
    name = os.environ.pop("EVOLVE_METRIC_EVALUATOR", "evaluate_bpb")
    if fd_s is None:
        return
    fd = int(fd_s)
    try:
        os.set_inheritable(fd, False)
        os.write(fd, b"loaded\n")
    except OSError:
        return

    def note(line):
        try:
            os.write(fd, line.encode() + b"\n")
        except OSError:
            pass

    def split_of(fn):
        """A function (args, kwargs) -> the split a call evaluates, or None when every call is
        the validation score (no `split` parameter). inspect.signature follows __wrapped__, so
        decorated evaluators (torch.no_grad, functools.wraps) show their own parameters."""
        import inspect
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
        if "split" not in signature.parameters:
            return None

        def split(args, kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return "val"
            bound.apply_defaults()
            return bound.arguments.get("split", "val")
        return split

    def wrap(fn):
        import functools
        split = split_of(fn)

        @functools.wraps(fn)
        def evaluator(*args, **kwargs):
            value = fn(*args, **kwargs)
            if split is None or split(args, kwargs) == "val":
                try:
                    note("val " + repr(float(value)))
                except (TypeError, ValueError):
                    note("val nan")
            return value
        return evaluator

    class Finder:
        busy = False

        @classmethod
        def find_spec(cls, fullname, path=None, target=None):
            if fullname != "prepare" or cls.busy:
                return None
            cls.busy = True
            try:
                import importlib.util
                spec = importlib.util.find_spec(fullname)
            finally:
                cls.busy = False
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            inner = spec.loader.exec_module

            def exec_module(module):
                inner(module)
                fn = getattr(module, name, None)
                if callable(fn):
                    setattr(module, name, wrap(fn))
                    note("armed")
            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Finder)

    # Chain to the sitecustomize this one shadows, if there is one.
    here = os.path.dirname(os.path.abspath(__file__))
    import importlib.machinery
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        import importlib.util
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_evolve_metric_shim()
del _evolve_metric_shim
'''

_DEF = re.compile(r"^def\s+(\w+)\s*\(", re.MULTILINE)


def evaluator_name(workdir: str | os.PathLike, name: str = DEFAULT_EVALUATOR) -> str | None:
    """``name`` when the task's prepare.py defines it at top level (read before the run; prepare.py
    is pinned by its hash), else None: then nothing is captured and nothing is checked."""
    try:
        text = (Path(workdir) / "prepare.py").read_text(errors="replace")
    except OSError:
        return None
    return name if name in _DEF.findall(text) else None


@dataclass
class Capture:
    """One run's side channel: a private directory with the shim and an unlinked file for the values."""

    evaluator: str
    dir: str = ""
    fd: int = -1
    lines: list[str] = field(default_factory=list)

    def __enter__(self) -> "Capture":
        self.dir = tempfile.mkdtemp(prefix="evolve-metric-")
        Path(self.dir, "sitecustomize.py").write_text(SHIM)
        self.fd = os.open(self.dir, os.O_TMPFILE | os.O_RDWR, 0o600) if hasattr(os, "O_TMPFILE") else -1
        if self.fd < 0:  # pragma: no cover - no O_TMPFILE
            fd, path = tempfile.mkstemp(dir=self.dir)
            os.unlink(path)
            self.fd = fd
        return self

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """What the child's environment needs on top of ``base``."""
        old = base.get("PYTHONPATH")
        return {"PYTHONPATH": self.dir + (os.pathsep + old if old else ""),
                FD_ENV: str(self.fd), NAME_ENV: self.evaluator}

    def read(self) -> list[str]:
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, min(size, 1 << 20), 0)
        self.lines = data.decode(errors="replace").splitlines()
        return self.lines

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        shutil.rmtree(self.dir, ignore_errors=True)


def _fmt(x: float) -> str:
    return f"{x:.6f}"


def check(printed: float | None, lines: list[str], evaluator: str = DEFAULT_EVALUATOR) -> tuple[float | None, str | None]:
    """(the value to score by, a reason to refuse the run or None) from the printed val_bpb and what
    the shim wrote. ``printed`` None (no summary) is left to the usual classification."""
    if printed is None:
        return None, None
    if "loaded" not in lines:
        return None, (f"metric capture did not load (train.py must run as `python train.py` with site "
                      f"enabled), so the printed val_bpb {_fmt(printed)} cannot be checked")
    values = []
    for line in lines:
        if line.startswith("val "):
            try:
                values.append(float(line[4:]))
            except ValueError:
                values.append(float("nan"))
    if not values:
        return None, f"val_bpb printed without calling the evaluator ({evaluator}): printed {_fmt(printed)}"
    got = values[-1]
    if not math.isfinite(printed) and not math.isfinite(got):
        return printed, None  # a diverged run: the usual nan classification applies
    same = _fmt(printed) == _fmt(got) or abs(printed - got) <= max(ABS_TOL, REL_TOL * abs(got))
    if not same:
        return None, f"metric mismatch: printed {_fmt(printed)}, evaluator returned {_fmt(got)}"
    return got, None
