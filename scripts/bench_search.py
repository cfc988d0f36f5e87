#!/usr/bin/env python3
"""Search benchmark: islands (migration + resets) against the anchor's ratchet at equal evaluations.

    python scripts/bench_search.py                        # 10 seeds x {ratchet, islands}, 60 evaluations each
    python scripts/bench_search.py --seeds 30             # tighter intervals (about 3x as long)
    python scripts/bench_search.py --configs ratchet,islands,islands-noreset,islands-solo
    python scripts/bench_search.py --task ridge --evaluations 120   # another frozen landscape (ridge, smooth)
    python scripts/bench_search.py --set DEEP_WIDTH=0.3 --set NOISE=0.002   # a variant of one
    python scripts/bench_search.py --simulate 2000        # only the engine-free ratchet check (seconds)

The task (--task) is one of three frozen landscapes in scripts/tasks, each scored instantly by its
train.py from constants of its prepare.py (see there): deceptive (the default: two constants, a
narrow well behind the wall of a bowl), ridge (four constants and a distractor, a wall across all
four, three times the noise) and smooth (one well: the control, where exploring can only cost). Every run uses the offline
operators only (llm=none) and the same total number of evaluations (run.max_experiments,
baselines included; confirmation runs off), so the islands pay for their baselines
(selection.min_baselines: 6 by default, 4 before 2026-12-04) out of the same budget:

    ratchet          islands=1 selection=ratchet                (perturb only, keep any strict gain)
    islands          islands=4 migration.interval=5 reset.interval=10 reset.fraction=0.5
                     (default selection and operator mix: perturb 0.8 / crossover 0.2 without an LLM)
    islands-noreset  the same with reset.interval=0
    islands-solo     the same with migration.interval=0 reset.interval=0 (four independent populations)
    ladder           islands + selection.t_max=100 (island 0 greedy, the others hotter; --t-max changes it)
    exchange         islands + exchange.interval=4 (replica exchange between greedy islands)
    tempering        islands + both (the defaults chosen in docs/benchmarks.md, issue 14)
    ladder-solo, tempering-solo   the same without migration and resets
    ladder-b4        ladder with selection.min_baselines=4 (the default before 2026-12-04; 6 since)
    descend          ladder + selection.descend_window=6 descend_sigmas=2 (2026-12-03: every island greedy on
                     the run's champion while the run descends, then the hot islands restart from the
                     unmodified train.py at their temperatures; --descend W,G changes the two)
    descend-solo, descend-exchange   the same without migration and resets / with exchange.interval=4

Every run passes report.every=0: the live report (a process every 10 experiments) changes nothing
the search does and took a large share of the CPU on a loaded machine.

All runs happen in this one process: one ray.init(), then evolve.engine.Engine(cfg, run_dir, islands,
llm=None).run() per run with the config composed by Hydra from conf/ (the engine reuses an initialized
Ray and leaves it running), which saves the ~5 s Ray start-up of each `python -m evolve`. Seeds are
interleaved (seed 0 of every config, then seed 1, ...) so that machine load drifts hit all configs alike.

Printed per config: success rate (best score below the task's SUCCESS_THRESHOLD) with a Wilson 95%
interval, median best score and median evaluations to reach it with bootstrap 95% intervals, median
evaluations to success among the successful runs, and the success-rate ratio against the ratchet.
Before the engine runs, a pure-Python ratchet with the real perturb operator (no engine) checks
that the landscape is deceptive at this budget (--simulate N runs; 0 skips it); with it, each row
is also compared with that engine-free ratchet's N runs (the same operator and keep rule, hundreds
of runs in seconds, so its rate is estimated where the engine's ratchet found the well in 0 or 1 of
16): rate ratio with a bootstrap over both sets of runs, Wilson lower bound over its Wilson upper
bound, and median evaluations to success against its median.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from operators.constants import find_constants, rewrite_constants  # noqa: E402
from operators.perturb import Perturb  # noqa: E402
from operators.candidate import Parent  # noqa: E402

TASK = ROOT / "scripts" / "tasks" / "deceptive"
# The frozen landscapes (each committed before any default was tuned on it; see their prepare.py):
# deceptive: 2 constants, a narrow well behind the bowl's wall; ridge: 4 constants (+1 distractor),
# a wall across all four, 3x the noise; smooth: one well, nothing to escape (the control case).
LANDSCAPES = ("deceptive", "ridge", "smooth")


def task_dir(name: str) -> Path:
    """--task: a landscape's name, or a task dir."""
    if name in LANDSCAPES:
        return ROOT / "scripts" / "tasks" / name
    path = Path(name)
    if not (path / "prepare.py").is_file() or not (path / "train.py").is_file():
        raise SystemExit(f"--task: {name!r} is neither one of {', '.join(LANDSCAPES)} nor a dir with train.py "
                         f"and prepare.py")
    return path

# Every knob a config depends on is spelled out, so that the configs stay what their names say
# whatever the defaults are (issue 14 changed selection.t_max and exchange.interval).
_PLAIN = ["selection.t_max=0", "exchange.interval=0", "selection.descend_window=0"]
_MIGRATE = ["migration.interval=5", "reset.interval=10", "reset.fraction=0.5"]
_SOLO = ["migration.interval=0", "reset.interval=0"]
_LADDER = ["selection.t_max=100"]          # --t-max replaces the value
_EXCHANGE = ["exchange.interval=4"]
_NO_DESCEND = ["selection.descend_window=0"]
_DESCEND = ["selection.descend_window=6", "selection.descend_sigmas=2"]   # --descend replaces the values
CONFIGS: dict[str, tuple[int, list[str]]] = {
    "ratchet": (1, ["selection=ratchet"]),
    "islands": (4, [*_MIGRATE, *_PLAIN]),
    "islands-noreset": (4, ["migration.interval=5", "reset.interval=0", *_PLAIN]),
    "islands-solo": (4, [*_SOLO, *_PLAIN]),
    # issue 14's ablation: the temperature ladder, replica exchange, both; with and without migration/resets
    "ladder": (4, [*_MIGRATE, *_LADDER, "exchange.interval=0", *_NO_DESCEND]),
    "exchange": (4, [*_MIGRATE, "selection.t_max=0", *_EXCHANGE, *_NO_DESCEND]),
    "tempering": (4, [*_MIGRATE, *_LADDER, *_EXCHANGE, *_NO_DESCEND]),
    "ladder-solo": (4, [*_SOLO, *_LADDER, "exchange.interval=0", *_NO_DESCEND]),
    # 2026-12-04: the ladder with four baselines, the default before selection.min_baselines became 6
    "ladder-b4": (4, [*_MIGRATE, *_LADDER, "exchange.interval=0", *_NO_DESCEND, "selection.min_baselines=4"]),
    "tempering-solo": (4, [*_SOLO, *_LADDER, *_EXCHANGE, *_NO_DESCEND]),
    # 2026-12-03: descend first (selection.descend_window), then the ladder from the unmodified train.py
    "descend": (4, [*_MIGRATE, *_LADDER, "exchange.interval=0", *_DESCEND]),
    "descend-solo": (4, [*_SOLO, *_LADDER, "exchange.interval=0", *_DESCEND]),
    "descend-exchange": (4, [*_MIGRATE, *_LADDER, *_EXCHANGE, *_DESCEND]),
}


# ---- statistics -------------------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_median(values: list[float], resamples: int, rng: random.Random) -> tuple[float, float, float]:
    """(median, 2.5th, 97.5th percentile of the bootstrap distribution of the median)."""
    if not values:
        return (math.nan, math.nan, math.nan)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    lo = medians[int(0.025 * (resamples - 1))]
    hi = medians[int(math.ceil(0.975 * (resamples - 1)))]
    return (statistics.median(values), lo, hi)


# ---- the task ---------------------------------------------------------------------------------------
def parse_sets(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if not _:
            raise SystemExit(f"--set expects NAME=VALUE, got {pair!r}")
        try:
            value: object = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = text
        out[name.strip()] = value
    return out


def copy_task(src: Path, dest: Path, prepare_sets: dict[str, object]) -> Path:
    """The task copied outside any git repository (a task.dir inside one is used in place: the
    engine would put its branches there), with prepare.py's constants rewritten."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    if prepare_sets:
        prepare = dest / "prepare.py"
        prepare.write_text(rewrite_constants(prepare.read_text(), prepare_sets))
    from evolve.workspace import _git_toplevel
    if _git_toplevel(dest) is not None:
        raise SystemExit(f"{dest} is inside a git repository; choose --workdir outside one")
    return dest


def load_prepare(task: Path):
    spec = importlib.util.spec_from_file_location(f"bench_prepare_{id(task)}", task / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def simulate_ratchet(task: Path, runs: int, evaluations: int, seed: int = 12345) -> tuple[float, float]:
    """A pure-Python ratchet with the engine's perturb operator on the task's train.py: the fraction
    of runs whose best reaches the threshold, and the fraction found within the first 10 evaluations."""
    outcomes = simulate_ratchet_runs(task, runs, evaluations, seed)
    return (sum(o is not None for o in outcomes) / runs, sum(o is not None and o <= 10 for o in outcomes) / runs)


def simulate_ratchet_runs(task: Path, runs: int, evaluations: int, seed: int = 12345) -> list[int | None]:
    """The engine-free ratchet's runs: each one's evaluations to success (1-based, the baseline
    counted, as the engine's evals_to_success), None where it never got there. Many runs in
    seconds, so the anchor's success rate is estimated where the engine's 16 runs see 0 or 1."""
    prepare = load_prepare(task)
    source = (task / "train.py").read_text()
    op = Perturb()
    names = prepare.PARAMS
    out: list[int | None] = []
    for r in range(runs):
        out.append(None)
        rng = random.Random(seed + r)
        head = source
        head_score = None
        for e in range(evaluations):
            if head_score is None:  # the baseline
                consts = find_constants(head)
                head_score = prepare.evaluate({n: consts[n].value for n in names}, 0)
                continue
            cand = op.propose([Parent(commit="x", source=head, val_bpb=head_score, island=0)], rng).source
            consts = find_constants(cand)
            score = prepare.evaluate({n: consts[n].value for n in names}, 0)
            if score < head_score:
                head, head_score = cand, score
                if score < prepare.SUCCESS_THRESHOLD:
                    out[-1] = e + 1
                    break
    return out


def simulate_parallel_greedy(task: Path, runs: int, evaluations: int, in_flight: int, noise_k: float = 1.0,
                             seed: int = 999) -> list[int | None]:
    """The best any engine of `in_flight` concurrently running islands can do on a landscape where
    only descending pays: every child is drawn from the run's champion at the time it starts, and
    in_flight - 1 others are still running when it is judged (so a gain makes them children of an
    older champion); in_flight baselines first, the engine's keep rule (a gain over noise_k * sigma
    * sqrt(2)). Each run's evaluations to success, None where it never got there. in_flight=1 is
    the serial ratchet (with that keep rule)."""
    prepare = load_prepare(task)
    source = (task / "train.py").read_text()
    op = Perturb()
    names = prepare.PARAMS

    def score(text: str, s: int) -> float:
        consts = find_constants(text)
        return prepare.evaluate({n: consts[n].value for n in names}, s)

    out: list[int | None] = []
    margin = noise_k * float(prepare.NOISE) * math.sqrt(2)
    for r in range(runs):
        rng = random.Random(seed + r)
        champion, champion_score = source, score(source, 0)
        running: list[tuple[str, float]] = []
        done, found = in_flight, None
        while done < evaluations and found is None:
            running.append((op.propose([Parent(commit="x", source=champion, val_bpb=champion_score, island=0)],
                                       rng).source, champion_score))
            if len(running) < in_flight:
                continue
            child, parent_score = running.pop(0)
            value = score(child, 0)
            done += 1
            if value < parent_score - margin and value < champion_score:
                champion, champion_score = child, value
                if value < prepare.SUCCESS_THRESHOLD:
                    found = done
        out.append(found)
    return out


# ---- engine runs ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    config: str
    seed: int
    evaluations: int
    best: float
    evals_to_best: int        # 1-based count of evaluations when the final best was first measured
    evals_to_success: int | None
    crashes: int
    wall_s: float
    resets: int
    migrations: int


def compose(islands: int, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from evolve.config import register

    register()  # the structured schema conf/config.yaml builds on (python -m evolve does this at import)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[f"islands={islands}", *overrides])


def run_engine(islands: int, overrides: list[str], run_dir: Path, log_path: Path):
    """One run of the real engine in this process (Ray already started), its output into log_path:
    (the run's final state, its wall seconds)."""
    from omegaconf import OmegaConf

    from evolve.config import validate
    from evolve.engine import Engine

    cfg = compose(islands, overrides)
    OmegaConf.update(cfg, "run.dir", str(run_dir))
    validate(cfg, islands)
    t0 = time.time()
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):
        state = Engine(cfg, run_dir, islands, llm=None).run()
    return state, time.time() - t0


def run_one(config: str, seed: int, task: Path, evaluations: int, workdir: Path, threshold: float,
            log_dir: Path, t_max: float | None = None, descend: tuple[int, float] | None = None) -> Outcome:
    from evolve.records import Migration, Reset

    islands, extra = CONFIGS[config]
    if t_max is not None:
        extra = [f"selection.t_max={t_max:g}" if o in _LADDER else o for o in extra]
    if descend is not None:
        window, gain = descend
        extra = [f"selection.descend_window={window}" if o == _DESCEND[0] else
                 f"selection.descend_sigmas={gain:g}" if o == _DESCEND[1] else o for o in extra]
    # Confirmation runs and the champion's re-measurements are off: they are fitness runs that
    # run.max_experiments does not count, and the comparison is at equal fitness runs.
    overrides = ["task=custom", f"task.dir={task}", "task.budget_s=1", "task.grace_s=30", "llm=none",
                 f"run.max_experiments={evaluations}", "run.live=false", "report.every=0", f"seed={seed}",
                 "selection.confirm_sigmas=0", "selection.implausible_sigmas=0", "selection.champion_runs=0", *extra]
    state, wall = run_engine(islands, overrides, workdir / f"{config}-seed{seed}", log_dir / f"{config}-seed{seed}.log")
    ok = [e for e in state.experiments if e.val_bpb is not None]
    best = min(e.val_bpb for e in ok) if ok else math.inf
    evals_to_best = next(e.seq + 1 for e in state.experiments if e.val_bpb == best) if ok else evaluations
    success = next((e.seq + 1 for e in state.experiments if e.val_bpb is not None and e.val_bpb < threshold), None)
    return Outcome(config=config, seed=seed, evaluations=len(state.experiments), best=best,
                   evals_to_best=evals_to_best, evals_to_success=success,
                   crashes=sum(e.val_bpb is None for e in state.experiments), wall_s=wall,
                   resets=sum(isinstance(e, Reset) for e in state.events),
                   migrations=sum(isinstance(e, Migration) for e in state.events))


# ---- output -----------------------------------------------------------------------------------------
def machine() -> str:
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load average {load}, "
            f"Python {platform.python_version()}")


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="runs per config (default 10)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--evaluations", type=int, default=60, help="run.max_experiments of every run (default 60)")
    ap.add_argument("--configs", default="ratchet,islands",
                    help=f"comma-separated, from {', '.join(CONFIGS)} (default ratchet,islands)")
    ap.add_argument("--task", default="deceptive",
                    help=f"a landscape of scripts/tasks ({', '.join(LANDSCAPES)}) or a task dir (default deceptive)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="rewrite a constant of the task's prepare.py in the benchmark's copy (repeatable)")
    ap.add_argument("--t-max", type=float, default=None,
                    help="selection.t_max of the configs with a temperature ladder (default: theirs, 100)")
    ap.add_argument("--descend", default=None, metavar="WINDOW,SIGMAS",
                    help="selection.descend_window,descend_sigmas of the descend* configs (default: theirs, 6,2)")
    ap.add_argument("--simulate", type=int, default=500,
                    help="runs of the engine-free ratchet check (0 = skip); with --seeds 0 only this runs")
    ap.add_argument("--simulate-parallel", type=int, default=0, metavar="N",
                    help="only print, for 1-4 islands running at once, the median evaluations to success of N runs "
                         "of an engine-free greedy search that always builds on the run's champion (the bound that "
                         "concurrency sets on the smooth landscape), then exit")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for median intervals")
    ap.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temporary dir)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--results", type=Path, default=None,
                    help="JSON-lines file: every finished run is appended; runs already in it (same config, "
                         "seed, evaluations, --set) are not run again, so an interrupted benchmark resumes and "
                         "seeds can be added in later invocations; the table covers the requested seeds")
    ap.add_argument("--table-only", action="store_true",
                    help="print the table from --results without running what it lacks (configs may then differ in seeds)")
    args = ap.parse_args()
    args.task = task_dir(args.task)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"--configs: unknown {c!r}; expected some of {', '.join(CONFIGS)}")

    if args.simulate_parallel:
        prepare = load_prepare(args.task)
        print(f"engine-free greedy search on the run's champion, {args.task.name}, {args.simulate_parallel} runs of "
              f"{args.evaluations} evaluations (baselines counted), success = best < {prepare.SUCCESS_THRESHOLD}:")
        print("| islands at once | reached it | median evals to success [95% boot] |\n|---|---|---|")
        rng = random.Random(0)
        for k in (1, 2, 3, 4):
            runs = simulate_parallel_greedy(args.task, args.simulate_parallel, args.evaluations, k)
            succ = [float(o) for o in runs if o is not None]
            m, lo, hi = bootstrap_median(succ, args.bootstrap, rng)
            print(f"| {k} | {len(succ)}/{len(runs)} | {m:.0f} [{lo:.0f}, {hi:.0f}] |", flush=True)
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-search-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        task = copy_task(args.task.resolve(), workdir / "task", parse_sets(args.set))
        prepare = load_prepare(task)
        threshold = float(prepare.SUCCESS_THRESHOLD)
        started = time.time()
        print(f"[bench_search] {dt.date.today()} {machine()}", flush=True)
        print(f"[bench_search] task {args.task} (copy: {task}); success = best score < {threshold}; "
              f"{args.evaluations} evaluations per run; overrides {args.set or 'none'}", flush=True)

        sim = None
        if args.simulate > 0:
            t0 = time.time()
            sim_runs = simulate_ratchet_runs(task, args.simulate, args.evaluations)
            sim = (sum(o is not None for o in sim_runs) / args.simulate,
                   sum(o is not None and o <= 10 for o in sim_runs) / args.simulate)
            print(f"[bench_search] engine-free ratchet check: {sim[0]:.1%} of {args.simulate} runs find the well in "
                  f"{args.evaluations} evaluations ({sim[1]:.1%} within the first 10) [{time.time() - t0:.1f} s]",
                  flush=True)

        outcomes: list[Outcome] = []
        done: dict[tuple[str, int], Outcome] = {}
        context = {"evaluations": args.evaluations, "sets": sorted(args.set), "task": args.task.name}
        if args.t_max is not None:
            context["t_max"] = args.t_max
        descend = None
        if args.descend is not None:
            window, _, gain = args.descend.partition(",")
            descend = (int(window), float(gain or 2))
            context["descend"] = list(descend)
        if args.results and args.results.exists():
            for line in args.results.read_text().splitlines():
                record = json.loads(line)
                if record.pop("context") == context:
                    o = Outcome(**record)
                    done[(o.config, o.seed)] = o
        todo = [(seed, config) for seed in range(args.first_seed, args.first_seed + args.seeds) for config in configs]
        for seed, config in todo:
            if (config, seed) in done:
                outcomes.append(done[(config, seed)])
        todo = [(seed, config) for seed, config in todo if (config, seed) not in done and not args.table_only]
        if done and args.results:
            print(f"[bench_search] {len(outcomes)} runs taken from {args.results}, {len(todo)} to run", flush=True)
        if todo:
            import ray

            t0 = time.time()
            ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024 * 1024,
                     configure_logging=True, logging_level="warning")
            print(f"[bench_search] ray.init {time.time() - t0:.1f} s (once, not counted in the runs)", flush=True)
            log_dir = workdir / "logs"
            log_dir.mkdir(exist_ok=True)
            try:
                for seed, config in todo:
                    o = run_one(config, seed, task, args.evaluations, workdir, threshold, log_dir, args.t_max, descend)
                    outcomes.append(o)
                    if args.results:
                        with open(args.results, "a") as f:
                            f.write(json.dumps({**asdict(o), "context": context}) + "\n")
                    print(f"  {config:<16} seed {seed:>3}: best {o.best:.4f} after {o.evals_to_best:>3} evals, "
                          f"{'FOUND at ' + str(o.evals_to_success) if o.evals_to_success else 'stuck':<12} "
                          f"({o.evaluations} evals, {o.migrations} migrations, {o.resets} resets, "
                          f"{o.wall_s:.1f} s)", flush=True)
                    if not args.keep:
                        shutil.rmtree(workdir / f"{config}-seed{seed}", ignore_errors=True)
            finally:
                ray.shutdown()

        rng = random.Random(0)
        rows = []
        base_rate = None
        for config in configs:
            runs = [o for o in outcomes if o.config == config]
            if not runs:
                continue
            n = len(runs)
            k = sum(o.evals_to_success is not None for o in runs)
            lo, hi = wilson(k, n)
            rate = k / n
            if config == "ratchet":
                base_rate = rate
            best = bootstrap_median([o.best for o in runs], args.bootstrap, rng)
            to_best = bootstrap_median([float(o.evals_to_best) for o in runs], args.bootstrap, rng)
            succ = [float(o.evals_to_success) for o in runs if o.evals_to_success is not None]
            if len(succ) >= 2:
                m, lo_s, hi_s = bootstrap_median(succ, args.bootstrap, rng)
                to_succ = f"{m:.0f} [{lo_s:.0f}, {hi_s:.0f}]"
            else:
                to_succ = f"{succ[0]:.0f}" if succ else "-"
            islands = CONFIGS[config][0]
            rows.append([
                config, str(islands), f"{k}/{n} = {rate:.0%} [{lo:.0%}, {hi:.0%}]",
                f"{best[0]:.3f} [{best[1]:.3f}, {best[2]:.3f}]",
                f"{to_best[0]:.0f} [{to_best[1]:.0f}, {to_best[2]:.0f}]",
                to_succ,
                f"{statistics.fmean(o.wall_s for o in runs):.1f}",
            ])
        def ratio(rate: float, base: float | None) -> str:
            if base is None:
                return "-"
            if base == 0:
                return "inf" if rate > 0 else "-"
            return f"{rate / base:.2f}x"

        def ratio_interval(found: list[bool], base_found: list[bool]) -> str:
            """Percentile bootstrap of rate/rate_ratchet, resampling both sets of runs."""
            ratios = []
            for _ in range(args.bootstrap):
                a = sum(rng.choices(found, k=len(found))) / len(found)
                b = sum(rng.choices(base_found, k=len(base_found))) / len(base_found)
                ratios.append(math.inf if b == 0 else a / b)
            ratios.sort()
            lo = ratios[int(0.025 * (len(ratios) - 1))]
            hi = ratios[int(math.ceil(0.975 * (len(ratios) - 1)))]
            fmt = lambda x: "inf" if math.isinf(x) else f"{x:.1f}"  # noqa: E731
            return f" [{fmt(lo)}, {fmt(hi)}]"

        ratchet_found = [o.evals_to_success is not None for o in outcomes if o.config == "ratchet"]
        for row, config in zip(rows, [c for c in configs if any(o.config == c for o in outcomes)]):
            runs = [o for o in outcomes if o.config == config]
            found = [o.evals_to_success is not None for o in runs]
            rate = sum(found) / len(runs)
            interval = (ratio_interval(found, ratchet_found) if any(ratchet_found) and config != "ratchet" else
                        " (the ratchet never succeeded)" if ratchet_found and config != "ratchet" and any(found) else "")
            row.append(ratio(rate, base_rate) + interval)
            # Conservative, and defined when the ratchet never succeeded: the config's Wilson lower
            # bound over the ratchet's Wilson upper bound (> 1: better beyond both intervals).
            if ratchet_found and config != "ratchet":
                lo_c = wilson(sum(found), len(found))[0]
                hi_r = wilson(sum(ratchet_found), len(ratchet_found))[1]
                row.append(f"{lo_c / hi_r:.2f}")
            else:
                row.append("-")
            # Evaluations to success against the ratchet's (the smooth landscape's measure), medians
            # over the successful runs, with a percentile bootstrap of the ratio.
            mine = [float(o.evals_to_success) for o in runs if o.evals_to_success is not None]
            base = [float(o.evals_to_success) for o in outcomes if o.config == "ratchet" and o.evals_to_success]
            if mine and base and config != "ratchet":
                boot = sorted(statistics.median(rng.choices(mine, k=len(mine)))
                              / statistics.median(rng.choices(base, k=len(base))) for _ in range(args.bootstrap))
                row.append(f"{statistics.median(mine) / statistics.median(base):.2f}x "
                           f"[{boot[int(0.025 * (len(boot) - 1))]:.2f}, {boot[int(math.ceil(0.975 * (len(boot) - 1)))]:.2f}]")
            else:
                row.append("-")
            if sim:
                # Against the engine-free ratchet's many runs (the same perturb operator and keep rule):
                # the rate ratio with a bootstrap over both sets of runs, the conservative Wilson ratio,
                # and the median evaluations to success against its median.
                sim_found = [o is not None for o in sim_runs]
                row.append(ratio(rate, sim[0]) + (ratio_interval(found, sim_found) if any(sim_found) else ""))
                hi_s = wilson(sum(sim_found), len(sim_found))[1]
                row.append(f"{wilson(sum(found), len(found))[0] / hi_s:.2f}" if hi_s > 0 else "-")
                sim_succ = [float(o) for o in sim_runs if o is not None]
                if mine and sim_succ:
                    boot = sorted(statistics.median(rng.choices(mine, k=len(mine)))
                                  / statistics.median(rng.choices(sim_succ, k=len(sim_succ)))
                                  for _ in range(args.bootstrap))
                    row.append(f"{statistics.median(mine) / statistics.median(sim_succ):.2f}x "
                               f"[{boot[int(0.025 * (len(boot) - 1))]:.2f}, "
                               f"{boot[int(math.ceil(0.975 * (len(boot) - 1)))]:.2f}]")
                else:
                    row.append("-")

        print()
        print(f"## Search benchmark ({dt.date.today()}): {args.seeds} seeds x {args.evaluations} evaluations, "
              f"success = best < {threshold}")
        print(f"machine: {machine()}; total {time.time() - started:.0f} s")
        if sim:
            lo, hi = wilson(round(sim[0] * args.simulate), args.simulate)
            print(f"engine-free ratchet check ({args.simulate} runs, same perturb operator and acceptance, no engine): "
                  f"{sim[0]:.1%} [{lo:.1%}, {hi:.1%}] find the well ({sim[1]:.1%} within 10 evaluations)")
        if rows:
            print()
            header = ["config", "islands", "success [Wilson 95%]", "median best [95% boot]",
                      "median evals to best [95%]", "median evals to success", "s/run", "rate vs ratchet [95% boot]",
                      "Wilson lo / ratchet's Wilson hi", "evals to success vs ratchet [95% boot]"]
            if sim:
                header += ["rate vs engine-free ratchet [95% boot]", "Wilson lo / engine-free's Wilson hi",
                           "evals to success vs engine-free ratchet [95% boot]"]
            print(table(rows, header))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"\nruns kept in {workdir}")


if __name__ == "__main__":
    main()
