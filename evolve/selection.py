"""Selection rules: which runs are baselines, and what is kept (pure functions of the values)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean

from .noise import SIGMA_RESOLUTION, z_gain
from .records import CRASH, DISCARD, EARLY_STOPPED, KEEP


NOT_REPRODUCIBLE = "not reproducible"


@dataclass(frozen=True)
class BaselineRun:
    island: int
    seed: int


def baseline_plan(n_islands: int, baseline_runs: int, noise_k: float, seed: int,
                  min_baselines: int = 1) -> list[BaselineRun]:
    """Generation 0: the unmodified train.py on every island, each with its own seed. Unless
    baseline_runs says how many, the plan fills its last round, so that no island idles while the
    others run generation 0's last baselines (4 islands, min_baselines 6: 8 baselines, in the time of 6)."""
    runs = baseline_runs or (max(n_islands, 2) if noise_k > 0 else n_islands)
    runs = max(runs, n_islands, min_baselines)
    if not baseline_runs:
        runs = math.ceil(runs / n_islands) * n_islands
    return [BaselineRun(island=i % n_islands, seed=seed + i) for i in range(runs)]


def decide(outcome: str, child: list[float], parent: list[float] | None, sigma: float, noise_k: float) -> str:
    """keep / discard / crash for a finished experiment (lower val_bpb is better): a child is kept
    when its mean is more than noise_k standard errors of the difference below its parent's mean
    over all the parent's runs (noise_k = 0: any strict gain, the anchor's rule)."""
    if outcome == EARLY_STOPPED:
        return DISCARD    # a loser by its curve, not a failure: results.tsv says discard
    if outcome != "ok" or not child:
        return CRASH
    if parent is None:  # a baseline
        return KEEP
    return KEEP if z_gain(child, parent, sigma) > noise_k else DISCARD


def rerun_reason(child: list[float], parent: list[float] | None, sigma: float, noise_k: float,
                 confirm_sigmas: float, implausible_sigmas: float, max_runs: int) -> str:
    """Why a candidate that would be kept on its runs so far must run again, next to its parent on
    the same fresh seed, before it is; "" when the runs decide. Only would-be keeps are ever re-run:
    a gain within confirm_sigmas standard errors may be seed luck, one beyond implausible_sigmas
    sigma may be a fluke or a bug, and either would otherwise become a champion or a migrant on one draw."""
    if parent is None or not child or len(child) >= max_runs:
        return ""
    z = z_gain(child, parent, sigma)
    if z <= noise_k:
        return ""
    gain = (fmean(parent) - fmean(child)) / max(sigma, SIGMA_RESOLUTION)
    if implausible_sigmas and gain > implausible_sigmas:
        return f"gain of {gain:.1f} sigma is implausibly large (selection.implausible_sigmas={implausible_sigmas:g})"
    if confirm_sigmas and z <= confirm_sigmas:
        return f"gain of {z:.1f} standard errors is within selection.confirm_sigmas={confirm_sigmas:g}"
    return ""


def paired_gain(pairs: list[tuple[int, float, float]]) -> float | None:
    """The mean of parent - child over the seeds both ran with (what a seed fixes cancels in it)."""
    return fmean(p - c for _, c, p in pairs) if pairs else None


def paired_margin(pairs: list[tuple[int, float, float]], sigma: float, paired_sigmas: float) -> float:
    """What the paired gain must exceed: paired_sigmas * sigma / sqrt(pairs), a test of the mean
    paired difference at a fixed level however many pairs there are (one pair: paired_sigmas * sigma).
    sigma here is the part of the noise a shared seed does not cancel (noise.unshared), at most sigma."""
    return paired_sigmas * max(sigma, SIGMA_RESOLUTION) / math.sqrt(max(len(pairs), 1))


def decide_runs(child: list[float], parent: list[float], pairs: list[tuple[int, float, float]], sigma: float,
                noise_k: float, implausible_sigmas: float, paired_sigmas: float = 0.0,
                unshared: float | None = None) -> tuple[str, str]:
    """(keep / discard, reason) for a candidate measured more than once. Kept when the mean of its
    runs still clears the rule against every run of its parent AND, over the fresh seeds it shares
    with its parent (pairs: (seed, child, parent)), it beats its parent on average by more than
    paired_sigmas * sigma / sqrt(pairs) (what the seed fixes cancels in a paired difference), unless
    its own runs disagree by more than implausible_sigmas * sigma (not reproducible). unshared: the
    part of sigma a shared seed does not cancel (noise.unshared; None = sigma)."""
    paired_sigma = sigma if unshared is None else unshared
    spread = (max(child) - min(child)) / max(sigma, SIGMA_RESOLUTION)
    if implausible_sigmas and spread > implausible_sigmas:
        return DISCARD, (f"{NOT_REPRODUCIBLE}: its {len(child)} runs differ by {spread:.1f} sigma "
                         f"(selection.implausible_sigmas={implausible_sigmas:g})")
    if decide("ok", child, parent, sigma, noise_k) != KEEP:
        return DISCARD, (f"not confirmed: mean of {len(child)} runs {fmean(child):.6f} vs parent "
                         f"{fmean(parent):.6f} over {len(parent)} runs")
    gain = paired_gain(pairs)
    if gain is not None and not gain > paired_margin(pairs, paired_sigma, paired_sigmas):
        if len(pairs) == 1:
            seed, c, p = pairs[0]
            return DISCARD, (f"not confirmed: on seed {seed} it scored {c:.6f} against its parent's {p:.6f} "
                             f"(needs a gain over {paired_sigmas:g} sigma, selection.paired_sigmas)")
        return DISCARD, (f"not confirmed: on its {len(pairs)} shared seeds it beat its parent by {gain:.6f} on "
                         f"average (needs over {paired_margin(pairs, paired_sigma, paired_sigmas):.6f}: "
                         f"{paired_sigmas:g} sigma / sqrt({len(pairs)}), selection.paired_sigmas)")
    return KEEP, ""


def undecided(child: list[float], parent: list[float], pairs: list[tuple[int, float, float]], sigma: float,
              noise_k: float, implausible_sigmas: float, paired_sigmas: float, max_runs: int,
              unshared: float | None = None, continue_sigmas: float = 0.0) -> str:
    """Why a candidate already re-run next to its parent runs again (a sequential test, up to
    max_runs runs of its own): its mean still clears the rule and its paired gain is short of the
    paired margin but beyond the futility bound, continue_sigmas * sigma / sqrt(pairs) (0: any
    positive gain); "" when its runs decide (keep or discard)."""
    if not pairs or len(child) >= max_runs:
        return ""
    status, _ = decide_runs(child, parent, pairs, sigma, noise_k, implausible_sigmas, paired_sigmas, unshared)
    gain = paired_gain(pairs)
    if status == KEEP or not decide("ok", child, parent, sigma, noise_k) == KEEP or gain is None or gain <= 0:
        return ""
    if continue_sigmas and not gain > paired_margin(pairs, sigma if unshared is None else unshared, continue_sigmas):
        return ""
    spread = (max(child) - min(child)) / max(sigma, SIGMA_RESOLUTION)
    if implausible_sigmas and spread > implausible_sigmas:
        return ""
    return (f"paired gain of {gain / max(sigma if unshared is None else unshared, SIGMA_RESOLUTION):.1f} sigma over {len(pairs)} shared seed(s) is "
            f"short of selection.paired_sigmas={paired_sigmas:g} / sqrt({len(pairs)}) (sequential)")
