"""Selection rules: which runs are baselines, and what is kept (pure functions of the values)."""
from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from .records import CRASH, DISCARD, KEEP


@dataclass(frozen=True)
class BaselineRun:
    island: int
    seed: int


def baseline_plan(n_islands: int, baseline_runs: int, noise_k: float, seed: int) -> list[BaselineRun]:
    """Generation 0: the unmodified train.py on every island, each with its own seed."""
    runs = baseline_runs or (max(n_islands, 2) if noise_k > 0 else n_islands)
    runs = max(runs, n_islands)
    return [BaselineRun(island=i % n_islands, seed=seed + i) for i in range(runs)]


def decide(outcome: str, val_bpb: float | None, parent_bpb: float | None, sigma: float, noise_k: float) -> str:
    """keep / discard / crash for a finished experiment (lower val_bpb is better)."""
    if outcome != "ok" or val_bpb is None:
        return CRASH
    if parent_bpb is None:  # a baseline
        return KEEP
    return KEEP if val_bpb < parent_bpb - noise_k * sigma else DISCARD


def rerun_reason(values: list[float], parent_bpb: float | None, sigma: float, noise_k: float,
                 confirm_sigmas: float, implausible_sigmas: float, max_runs: int) -> str:
    """Why a candidate that would be kept on `values` (its runs so far) must run again with another
    seed before it is, or "" when the values decide. Only would-be keeps are ever re-run: a gain
    within confirm_sigmas of the noise floor may be seed luck, one beyond implausible_sigmas may be
    a fluke or a bug, and either would otherwise become a champion or a migrant on one draw."""
    if parent_bpb is None or sigma <= 0 or not values or len(values) >= max_runs:
        return ""
    gain = (parent_bpb - fmean(values)) / sigma
    if gain <= noise_k:
        return ""
    if implausible_sigmas and gain > implausible_sigmas:
        return f"gain of {gain:.1f} sigma is implausibly large (selection.implausible_sigmas={implausible_sigmas:g})"
    if confirm_sigmas and gain <= confirm_sigmas:
        return f"gain of {gain:.1f} sigma is within selection.confirm_sigmas={confirm_sigmas:g}"
    return ""


def decide_runs(values: list[float], parent_bpb: float, sigma: float, noise_k: float,
                implausible_sigmas: float) -> tuple[str, str]:
    """(keep / discard, reason) for a candidate measured more than once: the mean of its runs
    decides, unless the runs themselves disagree by more than implausible_sigmas * sigma: a result
    that does not reproduce is not kept, however good its mean."""
    mean = fmean(values)
    spread = (max(values) - min(values)) / sigma if sigma > 0 else 0.0
    if implausible_sigmas and spread > implausible_sigmas:
        return DISCARD, (f"not reproducible: its {len(values)} runs differ by {spread:.1f} sigma "
                         f"(selection.implausible_sigmas={implausible_sigmas:g})")
    if decide("ok", mean, parent_bpb, sigma, noise_k) == KEEP:
        return KEEP, ""
    return DISCARD, f"not confirmed: mean of {len(values)} runs {mean:.6f} vs parent {parent_bpb:.6f}"
