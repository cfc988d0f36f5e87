"""The noise model: run-to-run spread of identical code, learned from every repeated measurement.

sigma is the pooled within-code standard deviation over every commit measured more than once
(the baseline on several islands, confirmation runs, paired parent re-runs), with its degrees of
freedom sum(n_c - 1). A difference of means is judged in standard errors of the difference,
sigma * sqrt(1/n_child + 1/n_parent), so a parent measured often counts as the estimate it is.
Pure functions; nothing here reads or writes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean
from typing import Iterable

# A sigma below the summary's printed resolution (6 decimals) is not a measurement: it floors the
# standard error, so a deterministic task (every repeat identical) still needs a printable gain.
SIGMA_RESOLUTION = 1e-6


@dataclass(frozen=True)
class NoiseEstimate:
    sigma: float
    dof: int


def pooled(measurements: Iterable[list[float]]) -> NoiseEstimate:
    """Pooled within-group standard deviation of the groups with two values or more."""
    squares, dof = 0.0, 0
    for values in measurements:
        if len(values) < 2:
            continue
        mean = fmean(values)
        squares += sum((v - mean) ** 2 for v in values)
        dof += len(values) - 1
    return NoiseEstimate(math.sqrt(squares / dof) if dof else 0.0, dof)


def standard_error(sigma: float, n_child: int, n_parent: int) -> float:
    """Of mean(parent) - mean(child), floored at the printed resolution."""
    return max(sigma, SIGMA_RESOLUTION) * math.sqrt(1 / n_child + 1 / n_parent)


def z_gain(child: list[float], parent: list[float], sigma: float) -> float:
    """How many standard errors the child's mean is below (better than) the parent's."""
    return (fmean(parent) - fmean(child)) / standard_error(sigma, len(child), len(parent))


def interval(values: list[float], sigma: float, z: float = 1.96) -> tuple[float, float]:
    """A 95% interval of the mean of `values` (sigma: the pooled run-to-run spread)."""
    half = z * max(sigma, SIGMA_RESOLUTION) / math.sqrt(len(values))
    mean = fmean(values)
    return mean - half, mean + half
