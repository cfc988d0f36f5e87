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


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, a Cornish-Fisher series.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
Z975 = 1.959964


def t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom (dof >= 1)."""
    if dof <= len(_T975):
        return _T975[max(dof, 1) - 1]
    z, v = Z975, float(dof)
    return z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)


def judging_sigma(sigma: float, dof: int, widen: bool = True) -> float:
    """The sigma a verdict uses: the pooled estimate, widened by t975(dof) / z975 while it rests on
    few degrees of freedom (a sigma from two baselines is often far too small), so that an
    interval built on it keeps its 95% coverage. widen=False (or dof 0): the estimate itself."""
    if not widen or dof <= 0:
        return sigma
    return sigma * t975(dof) / Z975


def unshared(sigma: float, paired: NoiseEstimate | None, widen: bool = True) -> float:
    """The part of the run-to-run spread that a shared seed does not cancel, in sigma's units: the
    pooled spread of paired differences (child and parent on one seed) over sqrt(2), widened for its
    degrees of freedom like sigma, and never above sigma itself (a seed both runs share can only
    cancel noise). Without paired differences yet: sigma (nothing assumed cancelled)."""
    if paired is None or paired.dof <= 0:
        return sigma
    return min(sigma, judging_sigma(paired.sigma, paired.dof, widen) / math.sqrt(2))


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
