"""The uncounted-time limit a candidate's Job carries (island/budget.py judges the run against it).

The reference is the island's own baseline runs (generation 0): each island measured the
unmodified train.py cold, on its own hardware, so its start-up, compilation and evaluation time
is the yardstick. An island whose baselines all failed borrows the run's other baselines.
"""
from __future__ import annotations

from collections.abc import Iterable

from island.budget import DEFAULT_MARGIN, DEFAULT_MARGIN_S, uncounted_limit, uncounted_s

from .records import Experiment


def baseline_uncounted(experiments: Iterable[Experiment], island: int) -> list[float]:
    """Uncounted seconds (wall - training_seconds) of island's successful baselines; the run's
    when that island has none."""
    done = [e for e in experiments if e.is_baseline and e.outcome == "ok" and "training_seconds" in e.metrics]
    own = [e for e in done if e.island == island] or done
    return [v for e in own if (v := uncounted_s(e.metrics, e.wall_s)) is not None]


def max_uncounted_s(experiments: Iterable[Experiment], island: int, margin: float = DEFAULT_MARGIN,
                    margin_s: float = DEFAULT_MARGIN_S) -> float | None:
    """What Job.max_uncounted_s should be for island's next candidate (None: no baseline to judge by)."""
    return uncounted_limit(baseline_uncounted(experiments, island), margin, margin_s)
