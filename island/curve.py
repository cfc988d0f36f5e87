"""Training curves: read from a run's step log as it is printed, and the early-stop rule.

A curve is a list of points (step, fraction of the budget, loss). The default pattern reads our
step log (``step 00012 (  4.0%) | loss 3.4567 | ...``) and the anchor's (``step 00012 (4.0%) |
loss: 3.456789 | ...``); a task that prints another shape names its own regular expression with
the named groups ``step``, ``percent`` (or ``fraction``) and ``loss`` (task.curve_pattern).

The early-stop rule compares a running candidate with its parent at equal fractions of the budget,
on a fixed grid, each grid value being the mean loss over the grid cell that ends there, and with
the baselines' spread at that point as its noise (the engine computes both; evolve/curves.py). It
is pure: the fitness run (island/fitness.py) feeds it the points it has read so far.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import fmean

DEFAULT_PATTERN = (r"step\s+(?P<step>\d+)\s*\(\s*(?P<percent>[0-9.]+)\s*%\s*\)\s*\|\s*"
                   r"loss:?\s*(?P<loss>[-+0-9.eE]+|nan|inf)")
GRID_STEP = 0.05        # grid cells of 5% of the budget
MAX_POINTS = 200        # a kept curve is thinned to at most this many points

Point = tuple[int, float, float]   # (step, fraction of the budget, loss)


class CurvePatternError(ValueError):
    """task.curve_pattern is not a usable regular expression."""


def compile_pattern(pattern: str | None) -> re.Pattern:
    """The curve pattern, checked: it must compile and name the groups step, loss and one of
    percent / fraction."""
    text = pattern or DEFAULT_PATTERN
    try:
        rx = re.compile(text)
    except re.error as e:
        raise CurvePatternError(f"task.curve_pattern {text!r} is not a regular expression: {e}") from None
    groups = set(rx.groupindex)
    if not {"step", "loss"} <= groups or not groups & {"percent", "fraction"}:
        raise CurvePatternError(f"task.curve_pattern {text!r} must name the groups (?P<step>...), (?P<loss>...) "
                                "and (?P<percent>...) or (?P<fraction>...)")
    return rx


class CurveReader:
    """Reads points from a step log that grows: feed it the new text as it arrives."""

    def __init__(self, pattern: str | None = None):
        self.rx = compile_pattern(pattern)
        self.points: list[Point] = []
        self._partial = ""     # text after the last line end (\r or \n): a step line still being written

    def feed(self, text: str) -> list[Point]:
        """Adds the points in ``text`` (the log's next bytes, decoded); returns the new ones."""
        text = self._partial + text
        cut = max(text.rfind("\r"), text.rfind("\n"))
        complete, self._partial = (text[:cut + 1], text[cut + 1:]) if cut >= 0 else ("", text)
        new = [p for p in map(self._point, self.rx.finditer(complete)) if p is not None]
        self.points.extend(new)
        return new

    def _point(self, m: re.Match) -> Point | None:
        try:
            groups = m.groupdict()
            fraction = (float(groups["percent"]) / 100 if groups.get("percent") is not None
                        else float(groups["fraction"]))
            return int(groups["step"]), fraction, float(groups["loss"])
        except (TypeError, ValueError):
            return None


def read_curve(text: str, pattern: str | None = None) -> list[Point]:
    """Every point of a finished log."""
    reader = CurveReader(pattern)
    reader.feed(text + "\n")
    return reader.points


def thin(points: list[Point], max_points: int = MAX_POINTS) -> list[Point]:
    """At most max_points points, evenly spaced, the last one kept; values rounded for storage."""
    if len(points) > max_points:
        stride = len(points) / max_points
        points = [points[int(i * stride)] for i in range(max_points - 1)] + [points[-1]]
    return [(s, round(f, 4), float(f"{loss:.5g}")) for s, f, loss in points]


def grid() -> list[float]:
    return [round(GRID_STEP * i, 4) for i in range(1, int(round(1 / GRID_STEP)) + 1)]


def on_grid(points: list[Point]) -> dict[float, float]:
    """The curve on the grid: at each grid point g within the fractions it covers, the loss
    interpolated linearly between the printed points around g (both step logs print a smoothed
    loss already; a slow run prints few points, so a grid cell may hold none)."""
    xs, ys = [], []
    for _, f, loss in sorted((p for p in points if math.isfinite(p[2])), key=lambda p: p[1]):
        if xs and f <= xs[-1] + 1e-12:
            ys[-1] = loss          # the same fraction printed twice (steps before the clock starts): the last
            continue
        xs.append(f)
        ys.append(loss)
    out: dict[float, float] = {}
    if not xs:
        return out
    i = 0
    for g in grid():
        if g < xs[0] - 1e-9:
            continue
        if g > xs[-1] + 1e-9:
            break
        while i + 1 < len(xs) and xs[i + 1] < g - 1e-12:
            i += 1
        if i + 1 == len(xs) or abs(xs[i] - g) <= 1e-9:
            out[g] = ys[i]
        else:
            x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
            out[g] = y0 + (y1 - y0) * (g - x0) / (x1 - x0)
    return out


@dataclass(frozen=True)
class EarlyStop:
    """Stop a run whose curve is worse than its parent's by more than k times the noise, once at
    least min_fraction of the budget has passed. reference and noise are on the grid (fraction ->
    loss, fraction -> standard deviation of the child-minus-parent difference)."""

    reference: tuple[tuple[float, float], ...]
    noise: tuple[tuple[float, float], ...]
    k: float
    min_fraction: float
    pattern: str | None = None

    def check(self, points: list[Point]) -> str | None:
        """Why the run should stop now, or None. Looks at the last grid point the run has passed."""
        if not points:
            return None
        now = points[-1][1]
        reference, noise = dict(self.reference), dict(self.noise)
        done = [g for g in grid() if g <= now - 1e-9 and g >= self.min_fraction - 1e-9]
        if not done:
            return None
        g = done[-1]
        if g not in reference or not noise.get(g):
            return None
        if not math.isfinite(points[-1][2]):
            return f"at {100 * now:.0f}% of the budget: the loss is not finite"
        value = on_grid(points).get(g)
        if value is None:
            return None
        excess = (value - reference[g]) / noise[g]
        if excess > self.k:
            return (f"at {100 * g:.0f}% of the budget: loss {value:.4f} against the parent's "
                    f"{reference[g]:.4f}, {excess:.1f} noise sd worse (early_stop.k={self.k:g})")
        return None
