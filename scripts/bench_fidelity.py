#!/usr/bin/env python3
"""Multi-fidelity benchmark: early stop on against off, side by side at equal wall time.

    python scripts/bench_fidelity.py                         # 20 minutes per side, the default tiny task
    python scripts/bench_fidelity.py --minutes 40 --budget 10 --sample 30

Both runs start together and run for the same wall-clock minutes (run.hours), so machine load hits
them alike: `python -m evolve islands=1 llm=none` on the default task (task=tiny) with early stop on
(the islands preset's default) and off (early_stop.enabled=false), same seed, offline operators.
Then every early-stopped candidate of the `on` run (up to --sample of them) is run again to the end
with its own seed (evolve.rescore, the run's pinned budget) and judged the way its first run would
have been (selection.decide against its parent's runs with the run's final sigma): a stopped
candidate that would have been kept is a false stop. Its parent runs again right after it on the
same seed, and the paired verdict (child re-run against parent re-run) is printed beside it: the
parent's recorded runs were made under another machine load, which the first verdict mixes in.

Printed: candidates judged, keeps and early stops per hour of each side, and their ratio; the
false-stop rate as a fraction of would-be keeps (the `on` run's keeps plus its false stops, scaled
to all its stops when only a sample was re-run), with Wilson 95% intervals.
Goal (issue #16): at least 1.5x candidates judged per hour with false stops under 5% of would-be keeps.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from evolve.curves import CurveBook  # noqa: E402
from evolve.journal import Journal  # noqa: E402
from evolve.records import KEEP  # noqa: E402
from evolve.rescore import rescore  # noqa: E402
from evolve.selection import decide  # noqa: E402
from evolve.state import RunState  # noqa: E402

SIDES = {"on": ["early_stop.enabled=true"], "off": ["early_stop.enabled=false"]}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def start(side: str, run_dir: Path, args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "evolve", "islands=1", "llm=none", f"run.dir={run_dir}", f"seed={args.seed}",
           f"task.budget_s={args.budget}", f"run.hours={args.minutes / 60}", "run.max_experiments=100000",
           "run.live=false", *SIDES[side], *args.set]
    log = open(run_dir.parent / f"{side}.out", "w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def replay(run_dir: Path) -> RunState:
    return RunState.replay(1, 4, Journal(run_dir, 1).load())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall minutes of each side (they run together)")
    ap.add_argument("--budget", type=float, default=10.0, help="task.budget_s of every fitness run")
    ap.add_argument("--sample", type=int, default=40, help="early-stopped candidates re-run to the end, at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="another Hydra override for both sides")
    ap.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temp dir, kept)")
    ap.add_argument("--replay", type=Path, default=None,
                    help="only replay the rule on an earlier benchmark's `off` run (its --out dir)")
    ap.add_argument("--ks", default="1.5,2,2.5,3,4", help="early_stop.k values of the replay")
    args = ap.parse_args()
    ks = [float(k) for k in args.ks.split(",")]
    if args.replay:
        replay_rule(args.replay / "off", args.budget, ks, 0.3)
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-fidelity-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"# bench_fidelity {dt.datetime.now():%Y-%m-%d %H:%M} on {platform.node()} ({os.cpu_count()} cpus); "
          f"runs in {out}", flush=True)
    t0 = time.time()
    procs = {side: start(side, out / side, args) for side in SIDES}
    codes = {side: p.wait() for side, p in procs.items()}
    print(f"# both sides ended after {(time.time() - t0) / 60:.1f} min; exit codes {codes}", flush=True)

    rows = {}
    for side in SIDES:
        state = replay(out / side)
        exps = state.experiments
        hours = (max(e.finished for e in exps) - min(e.started for e in exps)) / 3600
        candidates = [e for e in exps if not e.is_baseline]
        rows[side] = dict(state=state, hours=hours, judged=len(candidates),
                          keeps=sum(e.status == KEEP for e in candidates),
                          stopped=[e for e in candidates if e.outcome == "early-stopped"],
                          fitness_s=sum(e.wall_s for e in candidates))

    on = rows["on"]
    stopped = on["stopped"]
    sample = random.Random(args.seed).sample(stopped, min(args.sample, len(stopped)))
    state = on["state"]
    false_stops, paired_false, rerun_failed = [], [], 0
    noise_k = state_noise_k(out / "on")
    for e in sample:
        parent = e.parent or e.parents[0]
        # The parent runs again right after the child, on the same seed: the paired verdict compares
        # two runs made under the same machine load, which the parent's recorded runs were not.
        child_run, parent_run = rescore(out / "on", [e.commit, parent], seed=e.seed)
        if child_run["val_bpb"] is None or parent_run["val_bpb"] is None:
            rerun_failed += 1
            continue
        verdict = decide("ok", [child_run["val_bpb"]], state.runs_of(parent), state.sigma or 0.0, noise_k)
        paired = decide("ok", [child_run["val_bpb"]], [parent_run["val_bpb"]], state.sigma or 0.0, noise_k)
        print(f"  re-run {e.commit[:7]} stopped at {100 * (e.stopped_at or 0):.0f}%: val_bpb "
              f"{child_run['val_bpb']:.4f} against its parent's recorded mean "
              f"{sum(state.runs_of(parent)) / len(state.runs_of(parent)):.4f} -> {verdict}; "
              f"against its parent re-run on the same seed {parent_run['val_bpb']:.4f} -> {paired}", flush=True)
        if verdict == KEEP:
            false_stops.append(e)
        if paired == KEEP:
            paired_false.append(e)

    print()
    print(f"| side | wall h | candidates judged | per hour | keeps | keeps per hour | early stops | "
          f"fitness s per candidate |")
    print("|---|---|---|---|---|---|---|---|")
    for side, r in rows.items():
        per = r["judged"] / r["hours"] if r["hours"] else 0.0
        print(f"| {side} | {r['hours']:.2f} | {r['judged']} | {per:.1f} | {r['keeps']} | "
              f"{r['keeps'] / r['hours'] if r['hours'] else 0:.1f} | {len(r['stopped'])} | "
              f"{r['fitness_s'] / max(1, r['judged']):.1f} |")
    ratio = ((rows["on"]["judged"] / rows["on"]["hours"]) / (rows["off"]["judged"] / rows["off"]["hours"])
             if rows["off"]["judged"] and rows["on"]["hours"] else float("nan"))
    print(f"\ncandidates judged per hour, on / off: {ratio:.2f}x (goal >= 1.5x)")
    checked = len(sample) - rerun_failed
    scale = len(stopped) / checked if checked else 0.0
    est_false = len(false_stops) * scale
    would_keep = on["keeps"] + est_false
    lo, hi = wilson(len(false_stops), checked)
    print(f"false stops: {len(false_stops)} of {checked} re-run stops would have been kept "
          f"({100 * len(false_stops) / checked if checked else 0:.0f}%, Wilson 95% [{100 * lo:.0f}%, {100 * hi:.0f}%]); "
          f"{len(stopped)} stops in all, so about {est_false:.1f} false stops against {would_keep:.1f} would-be keeps = "
          f"{100 * est_false / would_keep if would_keep else 0:.1f}% of would-be keeps (goal < 5%)"
          + (f"; {rerun_failed} re-runs failed" if rerun_failed else ""))
    est_paired = len(paired_false) * scale
    would_keep_paired = on["keeps"] + est_paired
    lo, hi = wilson(len(paired_false), checked)
    print(f"paired (child and parent re-run together, same seed): {len(paired_false)} of {checked} would have been kept "
          f"(Wilson 95% [{100 * lo:.0f}%, {100 * hi:.0f}%]), about "
          f"{100 * est_paired / would_keep_paired if would_keep_paired else 0:.1f}% of would-be keeps (goal < 5%)")
    replay_rule(out / "off", args.budget, ks, 0.3)


def replay_rule(run_dir: Path, budget_s: float, ks: list[float], min_fraction: float) -> None:
    """The early-stop rule replayed on the `off` run's full curves: for each k, which candidates it
    would have stopped (with the parent's and baselines' curves recorded before each candidate),
    how many of them were kept (false stops, known exactly here), and the fitness time saved."""
    state = replay(run_dir)
    book = CurveBook(run_dir)
    base = state.experiments[0].commit
    candidates = [e for e in state.experiments if not e.is_baseline and e.outcome == "ok"
                  and e.seed in book.curves.get(e.commit, {})]
    total_s = sum(e.wall_s for e in state.experiments if not e.is_baseline)
    keeps = sum(e.status == KEEP for e in candidates)
    print(f"\nreplay on the `off` run's {len(candidates)} full candidate curves ({keeps} kept), "
          f"early_stop.min_fraction={min_fraction}:")
    print("| early_stop.k | stopped | kept among stopped (false stops) | false stops / keeps | fitness time saved | "
          "candidates per hour, x |")
    print("|---|---|---|---|---|---|")
    for k in ks:
        stopped, false, saved = 0, 0, 0.0
        for e in candidates:
            rule = book.before(e.seq).early_stop_rule(e.parent or e.parents[0], base, k, min_fraction, None)
            if rule is None:
                continue
            points = book.curves[e.commit][e.seed]
            hit = next((p for i, p in enumerate(points) if rule.check(points[:i + 1])), None)
            if hit is not None:
                stopped += 1
                false += e.status == KEEP
                saved += (1 - hit[1]) * budget_s
        print(f"| {k:g} | {stopped}/{len(candidates)} | {false} | {false}/{keeps} | {100 * saved / total_s:.0f}% | "
              f"{total_s / (total_s - saved):.2f} |")


def state_noise_k(run_dir: Path) -> float:
    from evolve.rescore import config_value, run_config

    return float(config_value(run_config(run_dir), "selection.noise_k", 1.0))


if __name__ == "__main__":
    main()
