#!/usr/bin/env python3
"""Overhead of the fitness harness: a bare `python train.py` against run_fitness() on the same code.

    python scripts/bench_fitness.py                      # default task, budget 20 s, 3 pairs
    python scripts/bench_fitness.py --budget 5 --runs 2
    python scripts/bench_fitness.py --cache-dir ~/.cache/evolve --threads 2
    python scripts/bench_fitness.py --fake               # a stdlib busy-loop train.py, no torch
    python scripts/bench_fitness.py --sandbox none       # the harness runs without the bwrap sandbox
    python scripts/bench_fitness.py --versus unsandboxed # pairs: run_fitness without vs with the sandbox

The task (train.py + prepare.py [+ program.md]) is copied into a temporary git repository, its data
cache is built once (`python prepare.py`, EVOLVE_CACHE_DIR = --cache-dir or a temporary folder),
then N pairs run alternately (bare first in even pairs, harness first in odd ones, so drift in
machine load hits both equally). Both get the same scrubbed environment. Printed: the machine,
every run, the medians, and the ratio harness/bare (goal: under 1.02).

The sandbox (island/sandbox.py, where bwrap works): the start-up of a trivial fitness run with and
without it, alternating, 20 each (goal: under 50 ms added per run), and, with the real task, the
score of a fixed number of training steps (same seed, one thread) with and without it, which must
be identical.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import git  # noqa: E402

from island import sandbox  # noqa: E402
from island.environment import scrubbed_env  # noqa: E402
from island.fitness import SUPERVISOR, run_fitness  # noqa: E402
from island.summary import classify, parse_summary, read_log  # noqa: E402

FAKE_TRAIN = '''\
import os, time
t0 = time.time()
budget = float(os.environ.get("EVOLVE_BUDGET_S", "20"))
x, n = 0, 0
while time.time() - t0 < budget:
    for i in range(10000):
        x = (x * 31 + i) % 1000003
    n += 1
    if n % 200 == 0:
        print(f"\\rstep {n} elapsed {time.time() - t0:.1f}s", end="", flush=True)
print()
print("---")
print(f"val_bpb: {1 + (x % 1000) / 1e6:.6f}")
print(f"training_seconds: {time.time() - t0:.1f}")
print(f"total_seconds: {time.time() - t0:.3f}")
print(f"num_steps: {n}")
'''
FAKE_PREPARE = "# fake evaluator for the harness benchmark\nprint('nothing to prepare')\n"


def machine_line() -> str:
    try:
        torch_v = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_v = "not installed"
    return (f"{dt.datetime.now().astimezone().isoformat(timespec='seconds')} | {platform.node()} | "
            f"{platform.platform()} | {os.cpu_count()} cores | python {platform.python_version()} | "
            f"torch {torch_v} | load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def make_repo(task: Path | None, dest: Path) -> Path:
    dest.mkdir(parents=True)
    if task is None:
        (dest / "train.py").write_text(FAKE_TRAIN)
        (dest / "prepare.py").write_text(FAKE_PREPARE)
    else:
        for name in ("train.py", "prepare.py", "program.md"):
            if (task / name).exists():
                shutil.copy2(task / name, dest / name)
    with git.Repo.init(dest) as repo:
        repo.index.add([p.name for p in dest.iterdir() if p.is_file()])
        who = git.Actor("bench", "bench@example.invalid")
        repo.index.commit("task", author=who, committer=who)
    return dest


def bare_run(workdir: Path, env: dict[str, str], python: str, log_path: Path) -> tuple[float, str, dict]:
    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.run([python, "train.py"], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                              stdout=log, stderr=subprocess.STDOUT)
        wall = time.monotonic() - t0
    text = read_log(log_path)
    status, _ = classify(proc.returncode, text, False)
    return wall, status.value, parse_summary(text)


def supervisor_startup_ms(n: int = 20) -> tuple[float, float]:
    """Median wall ms of `true` bare and under the supervisor."""
    true = shutil.which("true") or "/bin/true"
    bare, sup = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([true])
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", SUPERVISOR, "--deadline", "10", "--", true])
        sup.append(time.perf_counter() - t0)
    return 1000 * statistics.median(bare), 1000 * statistics.median(sup)


TRIVIAL_TRAIN = 'print("---")\nprint("val_bpb: 1.0")\n'
STOP_LINE = "    if training_time >= TIME_BUDGET and (step >= uncounted_steps or TIME_BUDGET <= 0):\n"


def sandbox_startup_ms(tmp: Path, python: str, n: int = 20) -> dict[str, float]:
    """Median wall ms of a trivial fitness run (python prints a summary) without and with the sandbox
    (alternating, after one warm-up each), of the first sandboxed run in a process (it also asks the
    interpreter for its paths), and of `true` bare and under the same bwrap command."""
    wd = tmp / "trivial"
    wd.mkdir()
    (wd / "train.py").write_text(TRIVIAL_TRAIN)
    (wd / "prepare.py").write_text("# nothing\n")
    log = tmp / "trivial.log"

    def once(mode: str) -> float:
        t0 = time.perf_counter()
        r = run_fitness(wd, budget_s=10, grace_s=10, log_path=log, python=python, sandbox=mode)
        assert r.ok, r
        return 1000 * (time.perf_counter() - t0)

    out = {"first_bwrap": once("bwrap"), "first_none": once("none")}
    runs: dict[str, list[float]] = {"none": [], "bwrap": []}
    for i in range(n):
        for mode in (("none", "bwrap") if i % 2 == 0 else ("bwrap", "none")):
            runs[mode].append(once(mode))
    out.update({mode: statistics.median(v) for mode, v in runs.items()})
    true = shutil.which("true") or "/bin/true"
    argv, env = sandbox.wrap([true], workdir=wd, env=scrubbed_env(), python=python)
    bare, wrapped = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([true])
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, cwd=wd)
        wrapped.append(time.perf_counter() - t0)
    out["true"], out["true_bwrap"] = 1000 * statistics.median(bare), 1000 * statistics.median(wrapped)
    return out


def fixed_step_scores(task: Path, tmp: Path, extra: dict[str, str], python: str, seed: int,
                      steps: int = 3) -> dict[str, float | None] | None:
    """val_bpb of the task trained for a fixed number of steps (one thread, a budget far beyond the run so
    the LR schedule stays at 1.0) without and with the sandbox; None when train.py has no such loop."""
    train = (task / "train.py").read_text()
    if STOP_LINE not in train:
        return None
    wd = make_repo(task, tmp / "fixed-steps")
    (wd / "train.py").write_text(train.replace(STOP_LINE, f"    if step >= {steps}:  # fixed steps (benchmark)\n"))
    scores = {}
    for mode in ("none", "bwrap"):
        r = run_fitness(wd, budget_s=100000, grace_s=0, log_path=tmp / f"fixed-{mode}.log", seed=seed,
                        extra_env=extra, python=python, num_threads=1, sandbox=mode)
        scores[mode] = r.val_bpb if r.ok else None
        print(f"fixed {steps} steps, sandbox={mode}: {r.status.value} val_bpb {r.val_bpb!r} "
              f"({r.metrics.get('num_steps', '?')} steps, {r.wall_s:.1f} s)", flush=True)
    return scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=20.0, help="EVOLVE_BUDGET_S of each run (default 20)")
    ap.add_argument("--runs", type=int, default=3, help="number of (bare, harness) pairs (default 3)")
    ap.add_argument("--grace", type=float, default=None,
                    help="harness grace seconds on top of the budget (default: max(120, 2 x budget))")
    ap.add_argument("--task", type=Path, default=ROOT / "evolve" / "task", help="task folder (train.py, prepare.py)")
    ap.add_argument("--fake", action="store_true", help="use a stdlib busy-loop train.py instead of the task")
    ap.add_argument("--cache-dir", type=Path, default=None, help="EVOLVE_CACHE_DIR (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=None, help="num_threads for both runs (default: unset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--python", default=sys.executable, help="interpreter for train.py")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print it")
    ap.add_argument("--sandbox", choices=sandbox.MODES, default="auto",
                    help="task.sandbox of the harness runs in the pairs (default auto)")
    ap.add_argument("--versus", choices=("bare", "unsandboxed"), default="bare",
                    help="what each harness run is paired with: a bare `python train.py` (default), or "
                         "run_fitness without the sandbox (then the pairs measure the sandbox alone)")
    args = ap.parse_args()
    if args.runs < 1 or args.budget < 0:
        ap.error("--runs must be >= 1 and --budget >= 0")
    grace = args.grace if args.grace is not None else max(120.0, 2 * args.budget)

    task = None if args.fake else args.task.resolve()
    if task is not None and not (task / "train.py").is_file():
        print(f"note: {task}/train.py not found, benchmarking the fake train.py instead")
        task = None

    tmp = Path(tempfile.mkdtemp(prefix="bench_fitness-"))
    try:
        cache = (args.cache_dir or tmp / "cache").resolve()
        cache.mkdir(parents=True, exist_ok=True)
        extra = {"EVOLVE_CACHE_DIR": str(cache)}
        workdir = make_repo(task, tmp / "task")
        env = scrubbed_env(os.environ, extra, budget_s=args.budget, seed=args.seed, num_threads=args.threads)
        logs = tmp / "logs"
        logs.mkdir()

        print("machine:", machine_line())
        print(f"task: {task or 'fake (stdlib busy loop)'} | budget {args.budget:g} s | grace {grace:g} s | "
              f"pairs {args.runs} | threads {args.threads or 'unset'} | cache {cache}")
        t0 = time.monotonic()
        prep = subprocess.run([args.python, "prepare.py"], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        if prep.returncode != 0:
            print(prep.stdout[-2000:], prep.stderr[-2000:], sep="\n")
            print("prepare.py failed", file=sys.stderr)
            return 1
        print(f"prepare.py: {time.monotonic() - t0:.1f} s (data cache ready)")
        b_ms, s_ms = supervisor_startup_ms()
        print(f"process start-up: `true` {b_ms:.1f} ms bare, {s_ms:.1f} ms under the supervisor "
              f"(+{s_ms - b_ms:.1f} ms)")
        why_not = sandbox.probe()
        if why_not is not None:
            print(f"sandbox: not measured, bwrap cannot run here ({why_not})")
        else:
            ms = sandbox_startup_ms(tmp, args.python)
            added = ms["bwrap"] - ms["none"]
            print(f"sandbox start-up, trivial fitness run, median of 20: {ms['none']:.1f} ms without, "
                  f"{ms['bwrap']:.1f} ms with bwrap (+{added:.1f} ms; goal < 50 ms: "
                  f"{'meets' if added < 50 else 'MISSES'}); first sandboxed run in a process "
                  f"{ms['first_bwrap']:.1f} ms (asks the interpreter for its paths once); "
                  f"`true` {ms['true']:.1f} ms bare, {ms['true_bwrap']:.1f} ms in the same bwrap sandbox")
            if task is not None:
                scores = fixed_step_scores(task, tmp, extra, args.python, args.seed)
                if scores is None:
                    print("score check: skipped (train.py has no budget loop to fix the steps of)")
                else:
                    same = scores["none"] is not None and scores["none"] == scores["bwrap"]
                    print(f"score check (fixed steps, same seed): {'identical' if same else 'DIFFERENT'} "
                          f"({scores['none']!r} without, {scores['bwrap']!r} with the sandbox)")
        print(f"harness runs: task.sandbox={args.sandbox} "
              f"({'sandboxed' if sandbox.resolve(args.sandbox) else 'not sandboxed'}); 'bare' runs: "
              f"{'python train.py' if args.versus == 'bare' else 'run_fitness with task.sandbox=none'}")
        print()

        rows = []
        hdr = (f"{'pair':>4}  {'kind':<8} {'wall_s':>8} {'outside_s':>9} {'status':<8} {'val_bpb':>9} "
               f"{'train_s':>8} {'steps':>6}")
        print(hdr)
        print("-" * len(hdr))
        for i in range(args.runs):
            order = ("bare", "harness") if i % 2 == 0 else ("harness", "bare")
            for kind in order:
                log = logs / f"{i}-{kind}.log"
                if kind == "bare" and args.versus == "bare":
                    wall, status, summary = bare_run(workdir, env, args.python, log)
                elif kind == "bare":  # run_fitness without the sandbox
                    r = run_fitness(workdir, budget_s=args.budget, grace_s=grace, log_path=log, seed=args.seed,
                                    extra_env=extra, python=args.python, num_threads=args.threads, sandbox="none")
                    wall, status, summary = r.wall_s, r.status.value, r.metrics
                else:
                    r = run_fitness(workdir, budget_s=args.budget, grace_s=grace, log_path=log, seed=args.seed,
                                    extra_env=extra, python=args.python, num_threads=args.threads,
                                    sandbox=args.sandbox)
                    wall, status, summary = r.wall_s, r.status.value, r.metrics
                # wall seconds outside train.py's own clock (total_seconds starts at its first line):
                # interpreter start-up and tear-down plus whatever the harness adds; far less noisy
                # than the wall time, which a loaded machine or a step overshooting the budget moves.
                outside = wall - summary["total_seconds"] if "total_seconds" in summary else float("nan")
                rows.append((i, kind, wall, outside))
                vb = summary.get("val_bpb")
                print(f"{i:>4}  {kind:<8} {wall:>8.2f} {outside:>9.3f} {status:<8} "
                      f"{(f'{vb:.6f}' if vb is not None else '-'):>9} "
                      f"{summary.get('training_seconds', float('nan')):>8.1f} "
                      f"{int(summary.get('num_steps', -1)):>6}", flush=True)

        bare = sorted(r for r in rows if r[1] == "bare")
        harness = sorted(r for r in rows if r[1] == "harness")
        mb, mh = statistics.median(r[2] for r in bare), statistics.median(r[2] for r in harness)
        pair_ratio = statistics.median(h[2] / b[2] for b, h in zip(bare, harness))
        ob, oh = statistics.median(r[3] for r in bare), statistics.median(r[3] for r in harness)
        print()
        print("| pairs | median wall bare s | median wall run_fitness s | ratio fitness/bare | median per-pair ratio "
              "| median outside bare s | median outside run_fitness s | harness overhead |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {args.runs} | {mb:.2f} | {mh:.2f} | {mh / mb:.4f} | {pair_ratio:.4f} | {ob:.3f} | {oh:.3f} "
              f"| {1000 * (oh - ob):+.0f} ms ({(oh - ob) / mb:+.2%} of a run) |")
        verdict = "meets" if mh / mb < 1.02 else "MISSES"
        print(f"\noverhead goal (ratio < 1.02): {verdict}; load at the end: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.keep:
            print(f"kept: {tmp}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
