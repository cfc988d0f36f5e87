#!/usr/bin/env python3
"""Acceptance benchmark: are the kept changes real? Precision, power and champion optimism of the
engine's keep rule on a task whose true effects are known.

    python scripts/bench_acceptance.py                       # 6 seeds x 3 configs x 2 noise cases
    python scripts/bench_acceptance.py --seeds 12 --cases seeded
    python scripts/bench_acceptance.py --configs default,ratchet --evaluations 96

The task is scripts/tasks/acceptance: only two constants of its train.py matter, each a step of
3 sigma (a real gain or a real loss) when it crosses a threshold; every other change is noise only.
The benchmark reads each candidate's constants and those of the parent it was judged against (for a
crossover, the parent the engine compared it with, which need not be its first) from the run's lab
repository and knows its true effect. Runs go through the real engine in this process (llm=none;
`operators.weights={perturb: 1.0}` merges into the default weights, so the offline crossover keeps
its 0.05: about 3% of candidates), like scripts/bench_search.py.

    python scripts/bench_acceptance.py --seeds 24 --workdir DIR --reanalyse   # tally DIR's runs again

Cases (frozen before any default of the keep rule was chosen; prepare.py's noise constants):
    seeded   SEED_SHARED=0.008 SEED_CODE=0.006 JITTER=0      noise fixed by the seed (sigma 0.01)
    jitter   SEED_SHARED=0 SEED_CODE=0 JITTER=0.01           a seed changes nothing (sigma 0.01),
                                                             like the anchor's hard-coded seed
Configs:
    default  islands=2, the islands preset as shipped
    ratchet  islands=1 selection=ratchet (the anchor's rule: any strict gain, one run)
    noise_k0 islands=2 selection.noise_k=0 (keep any gain, confirmation as shipped)

Per config, pooled over seeds (children only; baselines are not candidates):
    precision       keeps that are real gains / keeps                         (Wilson 95%)
    power           real gains kept / real gains proposed                     (Wilson 95%)
    false keeps     keeps among null or worse changes / null or worse changes (Wilson 95%)
    optimism        (true value - recorded value) of each run's champion, in sigma (mean, +- 2 se);
                    positive = the recorded number flatters the champion
    runs/candidate  fitness runs (first, confirmation and parent re-runs, and the champion's
                    re-measurements) per candidate
Goals for the default (issue 18): precision >= 90%, power >= 80%, optimism <= 0.25 sigma, at most
1.5 fitness runs per candidate.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_search import copy_task, load_prepare, machine, parse_sets, run_engine, table, wilson  # noqa: E402

TASK = ROOT / "scripts" / "tasks" / "acceptance"
CASES = {
    "seeded": {"SEED_SHARED": 0.008, "SEED_CODE": 0.006, "JITTER": 0.0},
    "jitter": {"SEED_SHARED": 0.0, "SEED_CODE": 0.0, "JITTER": 0.01},
}
CONFIGS: dict[str, tuple[int, list[str]]] = {
    "default": (2, []),
    "ratchet": (1, ["selection=ratchet"]),
    "noise_k0": (2, ["selection.noise_k=0"]),
}
REQUEUED = "queued to train again in the new epoch"   # evolve/engine.py
GOALS = {"precision": 0.90, "power": 0.80, "optimism": 0.25, "runs": 1.5}


@dataclass
class Tally:
    keeps: int = 0
    real_keeps: int = 0
    gains: int = 0
    gains_kept: int = 0
    nulls: int = 0
    null_keeps: int = 0
    candidates: int = 0
    fitness_runs: int = 0
    optimism: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    explained: list[str] = field(default_factory=list)   # --explain: lost real gains and false keeps

    def add(self, other: "Tally") -> None:
        for name in ("keeps", "real_keeps", "gains", "gains_kept", "nulls", "null_keeps", "candidates",
                     "fitness_runs", "wall_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.optimism += other.optimism
        self.explained += other.explained


def constants_at(repo, commit: str, names: tuple[str, ...]) -> dict:
    from operators.constants import find_constants

    found = find_constants(repo.git.show(f"{commit}:train.py"))
    return {n: found[n].value for n in names}


def run_one(config: str, case: str, seed: int, task: Path, evaluations: int, workdir: Path, log_dir: Path,
            reanalyse: bool = False) -> Tally:
    import git

    islands, extra = CONFIGS[config]
    overrides = ["task=custom", f"task.dir={task}", "task.budget_s=1", "task.grace_s=30", "llm=none",
                 "operators.weights={perturb: 1.0}", f"run.max_experiments={evaluations}", "run.live=false",
                 f"seed={seed}", *extra]
    run_dir = workdir / f"{case}-{config}-seed{seed}"
    if reanalyse:    # the run is there already: tally its journal again (read only, as the report reads it)
        from evolve.report.data import read_run

        state, wall = read_run(run_dir).state, 0.0
    else:
        state, wall = run_engine(islands, overrides, run_dir, log_dir / f"{case}-{config}-seed{seed}.log")
    prepare = load_prepare(task)
    sigma = prepare.sigma()
    repo = git.Repo(run_dir / "lab")
    truth = {}

    def true_value(commit: str) -> float:
        if commit not in truth:
            truth[commit] = prepare.landscape(constants_at(repo, commit, prepare.PARAMS))
        return truth[commit]

    tally = Tally(wall_s=wall)
    noise = noise_history(state)
    for e in state.experiments:
        if e.is_baseline or e.outcome != "ok":
            continue
        tally.fitness_runs += 1 + len(e.reruns) + len(getattr(e, "parent_reruns", ()))
        if e.reason.endswith(REQUEUED):
            continue     # stale (its island changed while it ran): the same code is judged on its next row
        effect = true_value(e.commit) - true_value(e.parent)    # against the parent it was judged against
        kept = e.status == "keep"
        tally.candidates += 1
        tally.keeps += kept
        if effect < -sigma:          # a real gain (a step of 3 sigma)
            tally.gains += 1
            tally.gains_kept += kept
            tally.real_keeps += kept
        else:
            tally.nulls += 1
            tally.null_keeps += kept
        if (effect < -sigma) != kept:
            tally.explained.append(explain(e, effect, sigma, noise, f"{case} {config} seed {seed}"))
    # the champion's re-measurements (selection.champion_runs) cost fitness runs too
    tally.fitness_runs += len(state.remeasures)
    champion = state.champion()
    if champion is not None:
        tally.optimism.append((true_value(champion.commit) - champion.val_bpb) / sigma)
        tally.explained.append(f"{case} {config} seed {seed}: champion {champion.commit[:8]} on "
                               f"{len(champion.observations)} runs, optimism {tally.optimism[-1]:+.2f} sigma")
    return tally


def noise_history(state) -> list[tuple[int, float, int]]:
    """(after_seq, sigma, dof) of every noise estimate the run recorded, the baselines' first."""
    from evolve.records import NoiseFloor, NoiseUpdate

    history = []
    for event in state.events:
        if isinstance(event, NoiseFloor):
            history.append((-1, event.sigma, event.dof))
        elif isinstance(event, NoiseUpdate):
            history.append((event.after_seq, event.sigma, event.dof))
    return history


def explain(e, effect: float, sigma: float, noise: list, where: str) -> str:
    """One line on a lost real gain or a false keep: what the engine saw when it judged it."""
    seen = [(s, d) for after, s, d in noise if after < e.seq] or [(0.0, 0)]
    est, dof = seen[-1]
    what = "lost real gain" if effect < -sigma else "false keep"
    first_bpb = e.first_bpb if e.first_bpb is not None else e.val_bpb
    first = f"{(e.parent_bpb - first_bpb) / sigma:+.1f}" if first_bpb is not None and e.parent_bpb else "?"
    return (f"{where} seq {e.seq} island {e.island}: {what} (true {-effect / sigma:+.1f} sigma, first run "
            f"{first} sigma against the parent's mean of {e.parent_n}, {len(e.reruns)} re-runs; sigma then "
            f"{est / sigma:.2f} x true on {dof} dof): {e.status} {e.reason[:150] or e.rerun_reason[:150]}")


def fmt_rate(k: int, n: int) -> str:
    if n == 0:
        return "n/a (0)"
    lo, hi = wilson(k, n)
    return f"{k / n:.0%} ({k}/{n}; {lo:.0%}-{hi:.0%})"


def fmt_optimism(values: list[float]) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return f"{mean:+.2f} (+- {2 * se:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--evaluations", type=int, default=64, help="run.max_experiments of every run (default 64)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                    help="an engine override added to every config, e.g. --set selection.confirm_sigmas=4")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--explain", action="store_true",
                    help="list, per config, every lost real gain and every false keep with what the engine saw "
                         "then (sigma and its dof, the first run against the parent, the reason), and "
                         "each run's champion with its number of runs")
    ap.add_argument("--reanalyse", action="store_true",
                    help="run nothing: tally the runs already in --workdir (the same --seeds, --configs, --cases)")
    args = ap.parse_args()
    if args.reanalyse and args.workdir is None:
        raise SystemExit("--reanalyse needs --workdir: the directory of the runs to tally again")
    configs = [c for c in args.configs.split(",") if c]
    cases = [c for c in args.cases.split(",") if c]
    for name in configs:
        if name not in CONFIGS:
            raise SystemExit(f"--configs: unknown {name!r}; expected some of {', '.join(CONFIGS)}")
    for name in cases:
        if name not in CASES:
            raise SystemExit(f"--cases: unknown {name!r}; expected some of {', '.join(CASES)}")
    for name in CONFIGS:
        CONFIGS[name] = (CONFIGS[name][0], CONFIGS[name][1] + list(args.set))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="evolve-acceptance-"))
    log_dir = workdir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"## Acceptance ({dt.date.today()}): {args.seeds} seeds, {args.evaluations} experiments per run"
          f"{', ' + ' '.join(args.set) if args.set else ''}", flush=True)
    print(f"machine: {machine()}; runs in {workdir}", flush=True)
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="warning",
             object_store_memory=256 * 2**20)
    try:
        for case in cases:
            task = workdir / f"task-{case}"
            if not args.reanalyse:
                copy_task(TASK, task, parse_sets([f"{k}={v}" for k, v in CASES[case].items()]))
            totals = {c: Tally() for c in configs}
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for config in configs:      # interleaved, so that load drifts hit every config alike
                    t = run_one(config, case, seed, task, args.evaluations, workdir, log_dir, args.reanalyse)
                    totals[config].add(t)
                    print(f"[bench_acceptance] {case} {config} seed {seed}: {t.candidates} candidates, "
                          f"{t.keeps} keeps ({t.real_keeps} real), {t.gains} real gains, {t.wall_s:.0f} s", flush=True)
            rows = []
            for config in configs:
                t = totals[config]
                rows.append([config, fmt_rate(t.real_keeps, t.keeps), fmt_rate(t.gains_kept, t.gains),
                             fmt_rate(t.null_keeps, t.nulls), fmt_optimism(t.optimism),
                             f"{t.fitness_runs / max(1, t.candidates):.2f}", str(t.candidates), f"{t.wall_s:.0f}"])
            print(f"\n### case {case}: {', '.join(f'{k}={v}' for k, v in CASES[case].items())}\n")
            print(table(rows, ["config", "precision", "power", "false keeps", "optimism (sigma)",
                               "runs/candidate", "candidates", "wall s"]))
            if args.explain:
                for config in configs:
                    print("\n".join(["", f"#### {case} {config}: lost real gains and false keeps", "",
                                      *(f"    {line}" for line in totals[config].explained)]))
            print(flush=True)
    finally:
        ray.shutdown()
    print(f"goals for the default: precision >= {GOALS['precision']:.0%}, power >= {GOALS['power']:.0%}, "
          f"optimism <= {GOALS['optimism']} sigma, runs/candidate <= {GOALS['runs']}")


if __name__ == "__main__":
    main()
