#!/usr/bin/env python3
"""Start-up cost of a fitness run with torch.compile: a cold compile cache against a warm one.

    python scripts/bench_startup.py                 # default task, COMPILE=True, budget 5 s, 2 warm runs

The anchor pays compilation and evaluation (25.9 s of every 326 s run) cold each time. Each island
here keeps TorchInductor's and Triton's caches in <run.dir>/cache/island-<k>/ across its
experiments (TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR), so a model that did not change shape
starts warm. This script runs the same train.py (COMPILE rewritten to True) with a fresh cache
directory, then again with the same one, and prints total_seconds - training_seconds of each.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from island.summary import parse_summary  # noqa: E402
from operators.constants import rewrite_constants  # noqa: E402


def run(task: Path, env: dict) -> dict[str, float]:
    done = subprocess.run([sys.executable, "train.py"], cwd=task, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"train.py failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return parse_summary(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=5.0)
    ap.add_argument("--warm-runs", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path, default=None, help="the task's data cache (EVOLVE_CACHE_DIR)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_startup-"))
    try:
        task = work / "task"
        shutil.copytree(ROOT / "evolve" / "task", task, ignore=shutil.ignore_patterns("__pycache__"))
        (task / "train.py").write_text(rewrite_constants((task / "train.py").read_text(), {"COMPILE": True}))
        env = {**os.environ, "EVOLVE_BUDGET_S": str(args.budget), "PYTHONDONTWRITEBYTECODE": "1",
               "EVOLVE_CACHE_DIR": str(args.cache_dir or work / "data"),
               "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor"), "TRITON_CACHE_DIR": str(work / "triton")}
        subprocess.run([sys.executable, "prepare.py"], cwd=task, env=env, check=True, capture_output=True)
        rows = [("cold", run(task, env))] + [(f"warm {i + 1}", run(task, env)) for i in range(args.warm_runs)]
        print(f"{dt.date.today()} | {os.cpu_count()} cores | python {sys.version.split()[0]} | "
              f"budget {args.budget} s | COMPILE=True")
        print("| run | total_seconds | training_seconds | start-up + compile + eval s | num_steps | val_bpb |")
        print("|---|---|---|---|---|---|")
        for name, s in rows:
            print(f"| {name} | {s['total_seconds']:.1f} | {s['training_seconds']:.1f} | "
                  f"{s['total_seconds'] - s['training_seconds']:.1f} | {s['num_steps']:.0f} | {s['val_bpb']:.4f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
