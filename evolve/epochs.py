"""Run-wide events due after a record: the noise floor, migrations, resets, replica exchanges (pure
functions of the state).

Randomness comes from the `rng` passed in; nothing here writes or prints.
"""
from __future__ import annotations

import random
from typing import Iterator

from .config import Topology
from .noise import pooled
from .bets import plan_close, plan_open
from .records import Exchange, Migration, NoiseFloor, NoiseUpdate, Record, Reset
from .state import RunState
from .tempering import descending, exchange_pairs, exchange_probability, in_sigmas, ladder


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


def plan_restart(state: RunState, temperatures: tuple[float, ...], window: int, gain_sigmas: float,
                 retired: frozenset[int] = frozenset()) -> Reset | None:
    """Due when the run stops descending (evolve/tempering.py's `descending`, over window
    experiments): the hot islands restart from the unmodified train.py (their population and
    exploring head become it), so their walks at temperature begin where the run began, not from the champion's
    basin the descent found; the greedy island 0 first takes the run's champion if only a hot
    island holds it, so nothing found is lost."""
    if window <= 0 or not any(temperatures) or not state.experiments:
        return None
    n = len(state.experiments)
    if not descending(state.experiments, state.sigma, window, gain_sigmas, n - 1) or \
            descending(state.experiments, state.sigma, window, gain_sigmas, n):
        return None
    base = next((e.commit for e in state.experiments if e.is_baseline), None)
    champion = state.champion()
    if base is None or champion is None:
        return None
    hot = [k for k, t in enumerate(temperatures) if t > 0 and k not in retired]
    base_bpb = state.member_bpb(base)
    resets = []
    cold = next((k for k, t in enumerate(temperatures) if t <= 0 and k not in retired), None)
    if cold is not None and champion.commit not in state.islands[cold].population:
        donor = next(isl.index for isl in state.islands if champion.commit in isl.population)
        resets.append((cold, donor, champion.commit, champion.val_bpb))
    resets += [(k, -1, base, base_bpb) for k in hot]
    return Reset(round=state.reset_rounds, resets=tuple(resets), after_seq=state.next_seq - 1, restart=True)


def plan_exchanges(state: RunState, interval: int, temperatures: tuple[float, ...], rng: random.Random,
                   retired: frozenset[int] = frozenset()) -> list[Exchange]:
    """Replica exchange, due every `interval` experiments run-wide once sigma is known: neighbours
    on the ladder (alternating pairs, evolve/tempering.py) swap their states with the standard
    acceptance rule (between two greedy islands: the better state moves down the ladder). One
    record per pair tried, accepted or not (a
    pair whose islands hold the same state is not tried, and a round with no pair to try is tried
    again after the next experiment)."""
    if interval <= 0 or state.sigma is None:
        return []
    if len(state.experiments) // interval <= state.exchange_rounds:
        return []
    round_ = state.exchange_rounds + 1
    out = []
    for cold, hot in exchange_pairs(state.n_islands, round_, retired):
        a, b = state.state_of(cold), state.state_of(hot)
        if a is None or b is None or a.commit == b.commit:
            continue
        t_cold, t_hot = temperatures[cold], temperatures[hot]
        p = exchange_probability(in_sigmas(a.val_bpb, state.sigma), in_sigmas(b.val_bpb, state.sigma), t_cold, t_hot)
        accepted = p >= 1.0 or rng.random() < p
        out.append(Exchange(round=round_, cold=cold, hot=hot, cold_commit=a.commit, cold_bpb=a.val_bpb,
                            hot_commit=b.commit, hot_bpb=b.val_bpb, temperatures=(t_cold, t_hot),
                            probability=p, accepted=accepted, after_seq=state.next_seq - 1))
    return out


def baseline_cap(baseline_total: int) -> int:
    """Generation 0 gives up after this many baseline runs (failed ones are re-run until then)."""
    return 2 * baseline_total


class Epochs:
    """The events a record can make due, in the order they happen."""

    def __init__(self, cfg, rng: random.Random, baseline_total: int):
        self.migration = cfg.migration
        self.reset = cfg.reset
        self.exchange_interval = cfg.exchange.interval
        self.t_max = cfg.selection.t_max
        self.bet_max_credit = cfg.selection.bet_max_credit
        self.descend_window, self.descend_sigmas = cfg.selection.descend_window, cfg.selection.descend_sigmas
        self.rng = rng
        self.baseline_total = baseline_total
        self.baseline_cap = baseline_cap(baseline_total)

    def noise_floor(self, state: RunState) -> NoiseFloor | None:
        """Due once generation 0 has as many successful baselines as planned (failed ones are
        re-run), or has used up its attempts (then with what succeeded: the engine stops when
        that is fewer than selection.min_baselines)."""
        if state.sigma is not None:
            return None
        baselines = [e for e in state.experiments if e.is_baseline]
        values = [e.val_bpb for e in baselines if e.val_bpb is not None]
        if len(values) < self.baseline_total and len(baselines) < self.baseline_cap:
            return None
        estimate = pooled([values])
        return NoiseFloor(sigma=estimate.sigma, baselines=tuple(values), dof=estimate.dof)

    @staticmethod
    def noise_update(state: RunState) -> NoiseUpdate | None:
        """Due when repeated measurements of identical code added degrees of freedom to sigma."""
        if state.sigma is None:
            return None
        estimate = pooled(state.measurements.values())
        if estimate.dof <= state.sigma_dof:
            return None
        return NoiseUpdate(sigma=estimate.sigma, dof=estimate.dof, after_seq=state.next_seq - 1)

    def bets(self, state: RunState, island: int) -> Iterator[Record]:
        """A bet opened by the island's experiment just recorded, then one whose credit is spent."""
        last = state.experiments[-1] if state.experiments else None
        isl = state.islands[island]
        if last is not None and last.island == island:
            others = [m for m in isl.population.members if m.commit != last.commit]
            champion = min((m.val_bpb for m in others), default=None)
            opened = plan_open(last, isl.bet, ladder(state.n_islands, self.t_max)[island], self.bet_max_credit,
                               champion)
            if opened is not None:
                yield opened
        closed = plan_close(island, isl.bet, state.next_seq - 1)
        if closed is not None:
            yield closed

    def after(self, state: RunState, island: int, retired: frozenset[int]) -> Iterator[Record]:
        """The events due after island's experiment was recorded. Each is planned from the state
        the previous one left, so the caller applies each event before asking for the next."""
        for plan in (lambda: self.noise_floor(state), lambda: self.noise_update(state),
                     lambda: plan_migration(state, island, self.migration.interval, self.migration.size,
                                            self.migration.topology, self.rng, retired),
                     lambda: plan_reset(state, self.reset.interval, self.reset.fraction, self.rng, retired),
                     lambda: plan_restart(state, ladder(state.n_islands, self.t_max),
                                          self.descend_window * state.n_islands, self.descend_sigmas, retired)):
            event = plan()
            if event is not None:
                yield event
        yield from self.bets(state, island)
        yield from plan_exchanges(state, self.exchange_interval, ladder(state.n_islands, self.t_max), self.rng,
                                  retired)
