"""Temperaments of the islands: the temperature ladder, Metropolis acceptance of a worse child, and
replica exchange between neighbours on the ladder (pure functions; randomness is passed in).

Temperatures are in units of sigma (the run's noise floor): a hot island at temperature T takes a
child worse than its head by delta as its new head with probability exp(-delta / (T sigma)), so its
lineage can go uphill to set up a larger gain. Island 0 is greedy (T = 0: only keeps move it, the
anchor's rule with a noise floor); island k > 0 of n has T = t_max ** (k / (n - 1)), a geometric
ladder that ends at selection.t_max on the last island.

Descend first (selection.descend_window > 0, the default): while the run's best kept score keeps
improving by at least selection.descend_sigmas sigma over the last descend_window x islands
experiments (`descending`), every island acts greedy (T = 0) and builds on the run's champion, so
the whole budget descends as the ratchet's would; island 0 always does. When the descent stalls,
the hot islands restart from the unmodified train.py (epochs.plan_restart, a Reset record with
restart=True) and walk from there at their temperatures, until a gain that large comes again.
"""
from __future__ import annotations

import math

from .noise import SIGMA_RESOLUTION


def ladder(n_islands: int, t_max: float) -> tuple[float, ...]:
    """Each island's temperature (sigma units): 0 for island 0, geometric up to t_max; all 0 when
    t_max is 0 (no ladder: every island greedy)."""
    if t_max <= 0 or n_islands < 2:
        return (0.0,) * n_islands
    return (0.0,) + tuple(t_max ** (k / (n_islands - 1)) for k in range(1, n_islands))


def in_sigmas(delta: float, sigma: float) -> float:
    return delta / max(sigma, SIGMA_RESOLUTION)


def metropolis_probability(delta_sigmas: float, temperature: float) -> float:
    """Probability that an island at `temperature` takes a child `delta_sigmas` worse than its
    parent (negative: better) as its head."""
    if delta_sigmas <= 0:
        return 1.0
    if temperature <= 0:
        return 0.0
    return math.exp(-delta_sigmas / temperature)


def exchange_probability(cold_sigmas: float, hot_sigmas: float, t_cold: float, t_hot: float) -> float:
    """The replica-exchange rule: min(1, exp((E_cold - E_hot) (1/T_cold - 1/T_hot))), energies in
    sigma units (val_bpb / sigma, lower is better). With a greedy (T = 0) cold island the swap
    happens exactly when the hot island's head is better."""
    gain = cold_sigmas - hot_sigmas          # > 0: the hot island holds the better state
    if gain > 0:
        return 1.0
    if t_cold <= 0:
        return 0.0
    beta = 1.0 / t_cold - 1.0 / t_hot
    return math.exp(gain * beta) if beta > 0 else 1.0


def exchange_pairs(n_islands: int, round_: int, retired: frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """Neighbours on the ladder that may swap in this round (1-based): (0,1), (2,3), ... in odd
    rounds, (1,2), (3,4), ... in even ones (two islands: (0,1) every round), so a state can travel
    the ladder over rounds. Retired islands are skipped (their neighbours pair across the gap)."""
    live = [k for k in range(n_islands) if k not in retired]
    first = 0 if round_ % 2 == 1 or len(live) == 2 else 1
    return [(live[i], live[i + 1]) for i in range(first, len(live) - 1, 2)]


def run_best(experiments, upto: int | None = None) -> float | None:
    """The best val_bpb any kept experiment (baselines included) scored among the first `upto`
    experiments (all: None); None before any."""
    values = [e.val_bpb for e in (experiments if upto is None else experiments[:upto])
              if e.status == "keep" and e.val_bpb is not None]
    return min(values) if values else None


def descending(experiments, sigma: float | None, window: int, gain_sigmas: float, upto: int | None = None) -> bool:
    """Whether the run is still descending (selection.descend_window, evolve/tempering.py's module
    docstring): its best kept score improved by at least gain_sigmas * sigma over the last `window`
    experiments (of the first `upto`), or fewer than `window` experiments were judged yet. While it
    is, the hot islands act greedy on the run's champion (the whole budget descends, as a ratchet
    would); once it stalls they explore at their temperatures. window 0: never (the plain ladder)."""
    if window <= 0 or sigma is None:
        return False
    n = len(experiments) if upto is None else upto
    judged = sum(1 for e in experiments[:n] if not e.is_baseline)
    if judged < window:
        return True
    before, now = run_best(experiments, n - window), run_best(experiments, n)
    if before is None or now is None:
        return True
    return (before - now) >= gain_sigmas * max(sigma, SIGMA_RESOLUTION)
