"""Selection policy: which runs are baselines, what is kept, when islands migrate or reset.

Pure functions over RunState; randomness comes from the `rng` passed in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from statistics import fmean, stdev

from .config import Topology
from .records import CRASH, DISCARD, KEEP, Migration, Reset
from .state import RunState


@dataclass(frozen=True)
class BaselineRun:
    island: int
    seed: int


def baseline_plan(n_islands: int, baseline_runs: int, noise_k: float, seed: int) -> list[BaselineRun]:
    """Generation 0: the unmodified train.py on every island, each with its own seed."""
    runs = baseline_runs or (max(n_islands, 2) if noise_k > 0 else n_islands)
    runs = max(runs, n_islands)
    return [BaselineRun(island=i % n_islands, seed=seed + i) for i in range(runs)]


def noise_floor(values: list[float]) -> float:
    """Run-to-run spread of the unmodified baseline (sample standard deviation; 0 with < 2 runs)."""
    return stdev(values) if len(values) >= 2 else 0.0


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


def migration_targets(source: int, n_islands: int, topology: Topology, rng: random.Random,
                      retired: frozenset[int] = frozenset()) -> tuple[int, ...]:
    """Islands that receive `source`'s migrants; retired islands (lost with their node) never do,
    and the ring closes over the gap they leave."""
    others = [k for k in range(n_islands) if k != source and k not in retired]
    if not others:
        return ()
    if topology == Topology.ring:
        return (next((k for k in others if k > source), others[0]),)
    if topology == Topology.random:
        return (rng.choice(others),)
    return tuple(others)


def plan_migration(state: RunState, source: int, interval: int, size: int, topology: Topology,
                   rng: random.Random, retired: frozenset[int] = frozenset()) -> Migration | None:
    """Due when the source island has finished another `interval` experiments since its last round."""
    island = state.islands[source]
    if interval <= 0 or island.experiments // interval <= island.migration_rounds:
        return None
    targets = migration_targets(source, state.n_islands, topology, rng, retired)
    migrants = tuple((m.commit, m.val_bpb) for m in island.population.best(size))
    if not targets or not migrants:
        return None
    return Migration(source=source, round=island.migration_rounds + 1, targets=targets,
                     migrants=migrants, after_seq=state.next_seq - 1)


def plan_reset(state: RunState, interval: int, fraction: float, rng: random.Random,
               retired: frozenset[int] = frozenset()) -> Reset | None:
    """FunSearch-style: every interval x islands experiments, the weakest islands restart from the
    champion of a randomly chosen survivor (retired islands take no part)."""
    if interval <= 0 or fraction <= 0 or state.n_islands - len(retired) < 2:
        return None
    if len(state.experiments) // (interval * state.n_islands) <= state.reset_rounds:
        return None
    live = [isl for isl in state.islands if isl.index not in retired]
    n = len(live)
    ranked = sorted(live, key=lambda isl: (isl.champion().val_bpb if isl.champion() else float("inf"), isl.index))
    n_reset = min(n - 1, max(1, int(fraction * n)))
    survivors, weakest = ranked[: n - n_reset], ranked[n - n_reset:]
    donors_with_members = [isl for isl in survivors if isl.champion() is not None]
    if not donors_with_members:
        return None
    resets = []
    for island in weakest:
        donor = rng.choice(donors_with_members)
        champ = donor.champion()
        resets.append((island.index, donor.index, champ.commit, champ.val_bpb))
    return Reset(round=state.reset_rounds + 1, resets=tuple(resets), after_seq=state.next_seq - 1)
