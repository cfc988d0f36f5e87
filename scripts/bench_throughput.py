#!/usr/bin/env python3
"""Throughput benchmark: experiments per hour for 1 and N islands, the engine's overhead per
experiment, and what a slow LLM costs with and without prefetching.

    python scripts/bench_throughput.py                     # N=2, budget 3 s, 10 children per island
    python scripts/bench_throughput.py --islands 4 --budget 5 --per-island 12
    python scripts/bench_throughput.py --no-llm            # only the islands-scaling runs
    python scripts/bench_throughput.py --hold busy         # train.py busy-waits a core instead of sleeping
    python scripts/bench_throughput.py --repeats 2         # every run twice, in alternating order
    python scripts/bench_throughput.py --no-llm --clones   # also N islands on node-local clones

The task is scripts/tasks/fixedtime, copied to a temporary folder outside any git repository: its
train.py holds the 'accelerator' (sleeps, or busy-waits with --hold busy) for exactly the budget and
then scores its constants. Every run is a real `python -m evolve ... task=custom task.dir=<copy>
task.budget_s=S run.max_experiments=M` subprocess (confirmation runs off: one fitness run per
experiment); all figures come from its journal.jsonl:

  cycle       median time between the starts of consecutive experiments of one island (children
              only: Python/Ray start-up, generation 0 and shutdown are excluded and reported apart)
  rate        steady-state children (non-baseline experiments) per hour: islands x 3600 / cycle;
              'window rate' is children / (end of generation 0 -> end of the last experiment), which
              also counts one-offs (the first LLM proposal, litellm's import) and the tail of the run
  overhead    cycle minus train.py's own total_seconds (from its summary, parsed from the log):
              everything the engine adds per experiment, split into 'in actor' (checkout, guards,
              the supervisor and interpreter start-up of train.py, post-run guard, cleanup) and
              'driver' (Ray round trip, commit, journal, TSVs, refs, next proposal, dispatch)
  scaling     rate(N islands) / (N x rate(1 island))

The LLM runs point llm=local at tests/llm_server.py's scripted OpenAI-compatible server (started in
this process), which answers every request after --llm-delay x budget with a whole-file ```python
block that changes LEARNING_RATE to a new value (so no reply is a duplicate); only llm_mutation is
enabled. llm.prefetch=true (proposal overlaps the previous training) is compared with
llm.prefetch=false (propose, then train: the anchor's serial loop), both against the no-LLM run with
the same number of islands, measured in the same invocation. --clones adds N islands with
ray.checkouts=clone: the multi-node path (git bundles into node-local clones, logs sent back to the
driver) on this one node, against the worktrees of the N-island run. Runs of one invocation share the
machine's load, so compare within one table, not across invocations.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from evolve.config import SelectionConfig  # noqa: E402

TASK = ROOT / "scripts" / "tasks" / "fixedtime"
REFERENCE_BUDGET_S = 300.0   # the anchor's 5-minute budget, for the extrapolated overhead


@dataclass
class Run:
    name: str
    islands: int
    llm: str                      # "none", "prefetch", "serial"
    launched: float = 0.0
    exited: float = 0.0
    returncode: int | None = None
    experiments: list[dict] = field(default_factory=list)
    llm_requests: int = 0

    # ---- derived figures ----------------------------------------------------------------------
    @property
    def children(self) -> list[dict]:
        return [e for e in self.experiments if e["operator"] != "baseline"]

    @property
    def baselines(self) -> list[dict]:
        return [e for e in self.experiments if e["operator"] == "baseline"]

    def gen0_end(self) -> float:
        return max(e["finished"] for e in self.baselines)

    def window(self) -> float:
        """End of generation 0 to the end of the last experiment."""
        return max(e["finished"] for e in self.experiments) - self.gen0_end()

    def rate(self) -> float:
        """Steady-state children per hour: islands x 3600 / median cycle."""
        return self.islands * 3600 / self.cycle()

    def window_rate(self) -> float:
        """Children per hour over the whole window after generation 0 (one-offs and tails included)."""
        return len(self.children) / self.window() * 3600

    def startup(self) -> float:
        return min(e["started"] for e in self.experiments) - self.launched

    def generation0(self) -> float:
        return self.gen0_end() - min(e["started"] for e in self.baselines)

    def first_child_wait(self) -> float:
        """Last baseline's end to first child's start: includes an LLM proposal that was not prefetched."""
        return min(e["started"] for e in self.children) - self.gen0_end()

    def teardown(self) -> float:
        return self.exited - max(e["finished"] for e in self.experiments)

    def pairs(self) -> list[tuple[dict, dict]]:
        """Consecutive children of the same island (the steady state)."""
        out = []
        for k in range(self.islands):
            mine = sorted((e for e in self.children if e["island"] == k), key=lambda e: e["started"])
            out += list(zip(mine, mine[1:]))
        return out

    def train_s(self, e: dict) -> float:
        return float(e["metrics"].get("total_seconds", e["wall_s"]))

    def cycle(self) -> float:
        return statistics.median(b["started"] - a["started"] for a, b in self.pairs())

    def overhead(self) -> float:
        return statistics.median(b["started"] - a["started"] - self.train_s(a) for a, b in self.pairs())

    def in_actor(self) -> float:
        return statistics.median(a["finished"] - a["started"] - self.train_s(a) for a, _ in self.pairs())

    def driver(self) -> float:
        return statistics.median(b["started"] - a["finished"] for a, b in self.pairs())

    def mean_overhead(self) -> float:
        """Island-seconds after generation 0 per child, minus the mean train.py time (one-offs and tails
        included, e.g. the first LLM proposal that nothing could overlap)."""
        kids = self.children
        return self.window() * self.islands / len(kids) - statistics.fmean(self.train_s(e) for e in kids)


def machine() -> str:
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, no GPU visible to this script, "
            f"load average {load}, Python {platform.python_version()}")


def whole_file(template: str, i: int) -> str:
    value = f"{0.004 + 0.00001 * (i + 1):.5f}"
    source = template.replace("LEARNING_RATE = 0.004", f"LEARNING_RATE = {value}", 1)
    return f"DESCRIPTION: set LEARNING_RATE to {value}\n\n```python\n{source}```\n"


def time_ray_init() -> tuple[float, float]:
    """ray.init and ray.shutdown of a private local cluster, as the engine starts it (separately timed)."""
    code = (
        "import os, time\n"
        "os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0'); os.environ.setdefault('RAY_AUTH_MODE', 'disabled')\n"
        "import ray\n"
        "t0 = time.time()\n"
        "ray.init(include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level='warning',"
        " object_store_memory=256 * 1024 * 1024)\n"
        "t1 = time.time(); ray.shutdown(); t2 = time.time()\n"
        "print(f'{t1 - t0:.3f} {t2 - t1:.3f}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    try:
        init, shut = (float(x) for x in out.stdout.split()[-2:])
    except ValueError:
        return float("nan"), float("nan")
    return init, shut


def run_evolve(run: Run, task: Path, workdir: Path, budget: float, per_island: int, extra: list[str],
               env: dict[str, str], timeout: float) -> None:
    run_dir = workdir / run.name
    baselines = max(run.islands, SelectionConfig().min_baselines)   # generation 0 before any child
    total = baselines + per_island * run.islands
    cmd = [sys.executable, "-m", "evolve", f"islands={run.islands}", "task=custom", f"task.dir={task}",
           f"task.budget_s={budget}", "task.grace_s=60", f"run.max_experiments={total}", f"run.dir={run_dir}",
           "run.live=false", "selection.confirm_sigmas=0", "selection.implausible_sigmas=0", "selection.champion_runs=0",
           "report.every=0", *extra]
    print(f"[bench_throughput] {run.name}: {' '.join(cmd[1:])}", flush=True)
    with open(workdir / f"{run.name}.out", "w") as out:
        run.launched = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout)
        run.exited = time.time()
    run.returncode = proc.returncode
    if proc.returncode != 0:
        tail = (workdir / f"{run.name}.out").read_text()[-3000:]
        raise SystemExit(f"{run.name} failed with exit code {proc.returncode}:\n{tail}")
    for line in (run_dir / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "experiment":
            run.experiments.append(record)
    bad = [e for e in run.experiments if e["outcome"] != "ok"]
    if bad:
        print(f"[bench_throughput] warning: {run.name} has {len(bad)} failed experiments: "
              f"{[(e['outcome'], e['reason'][:80]) for e in bad[:3]]}", flush=True)


def llm_overrides(api_base: str, prefetch: bool) -> list[str]:
    return ["llm=local", f"llm.api_base={api_base}", "llm.model=openai/test-model", "llm.num_retries=0",
            "operators.weights.llm_mutation=1", "operators.weights.llm_crossover=0",
            "operators.weights.perturb=0", "operators.weights.crossover=0", f"llm.prefetch={str(prefetch).lower()}"]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--islands", type=int, default=2, help="N for the scaling run (default 2)")
    ap.add_argument("--budget", type=float, default=3.0, help="task.budget_s in seconds (default 3)")
    ap.add_argument("--per-island", type=int, default=10, help="children per island after the baselines (default 10)")
    ap.add_argument("--hold", choices=("sleep", "busy"), default="sleep", help="how train.py holds the budget")
    ap.add_argument("--llm-delay", type=float, default=0.4, help="LLM answer delay as a fraction of the budget")
    ap.add_argument("--llm-islands", type=int, default=1, help="islands of the LLM runs (default 1)")
    ap.add_argument("--no-llm", action="store_true", help="skip the slow-LLM runs")
    ap.add_argument("--clones", action="store_true", help="add N islands on node-local clones (ray.checkouts=clone)")
    ap.add_argument("--repeats", type=int, default=1, help="repeat every run (alternating order)")
    ap.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temporary dir)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    args = ap.parse_args()

    started = time.time()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        task = workdir / "task"
        shutil.copytree(TASK, task, ignore=shutil.ignore_patterns("__pycache__"))
        if args.hold != "sleep":
            prepare = task / "prepare.py"
            prepare.write_text(prepare.read_text().replace('HOLD = "sleep"', f'HOLD = "{args.hold}"', 1))
        from evolve.workspace import _git_toplevel
        if _git_toplevel(task) is not None:  # the engine would use it in place and put its branches in that repository
            raise SystemExit(f"{task} is inside a git repository; pass a --workdir outside one")
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "RAY_USAGE_STATS_ENABLED": "0"}
        timeout = 600 + 3 * args.budget * (args.per_island + 4)

        print(f"[bench_throughput] {dt.date.today()} {machine()}", flush=True)
        init_s, shutdown_s = time_ray_init()
        print(f"[bench_throughput] ray.init {init_s:.2f} s, ray.shutdown {shutdown_s:.2f} s (a bare local cluster)",
              flush=True)

        plan: list[tuple[str, int, str]] = [("1 island", 1, "none"), (f"{args.islands} islands", args.islands, "none")]
        clones = f"{args.islands} islands, node-local clones"
        if args.clones:
            plan.append((clones, args.islands, "none"))
        if not args.no_llm:
            n = args.llm_islands
            if n not in (1, args.islands):
                plan.append((f"{n} islands", n, "none"))
            label = f"{n} island{'s' if n > 1 else ''}"
            plan += [(f"{label}, LLM prefetch", n, "prefetch"), (f"{label}, LLM serial", n, "serial")]

        runs: list[Run] = []
        template = (TASK / "train.py").read_text()
        for r in range(args.repeats):
            order = plan if r % 2 == 0 else list(reversed(plan))
            for name, islands, llm in order:
                slug = f"r{r}-" + name.replace(" ", "-").replace(",", "")
                run_named = Run(name=slug, islands=islands, llm=llm)
                if llm == "none":
                    extra = ["llm=none"]
                    if name == clones:
                        extra += ["ray.checkouts=clone", f"ray.node_dir={workdir / 'nodes'}"]
                    run_evolve(run_named, task, workdir, args.budget, args.per_island, extra, env, timeout)
                else:
                    from tests.llm_server import Delay, Reply, ScriptedLLM

                    with ScriptedLLM() as server:
                        replies = max(islands, 2) + args.per_island * islands + 2 * islands + 5
                        server.script(*(Delay(args.llm_delay * args.budget, Reply(whole_file(template, i)))
                                        for i in range(replies)))
                        run_evolve(run_named, task, workdir, args.budget, args.per_island,
                                   llm_overrides(server.api_base, llm == "prefetch"), env, timeout)
                        run_named.llm_requests = len(server.chat_requests)
                    llm_ops = [e for e in run_named.children if e["operator"] != "llm_mutation"]
                    if llm_ops:
                        print(f"[bench_throughput] warning: {slug}: {len(llm_ops)} children were not LLM proposals",
                              flush=True)
                run_named.name = name
                runs.append(run_named)
                print(f"[bench_throughput]   {len(run_named.children)} children, {run_named.rate():.0f}/h, cycle "
                      f"{run_named.cycle():.3f} s, overhead {run_named.overhead() * 1000:.0f} ms", flush=True)
            if not args.keep:
                for path in workdir.iterdir():
                    if path.is_dir() and path.name.startswith(f"r{r}-"):
                        shutil.rmtree(path, ignore_errors=True)

        by_name: dict[str, list[Run]] = {}
        for run in runs:
            by_name.setdefault(run.name, []).append(run)

        def fig(name: str, f) -> float:
            return med([f(run) for run in by_name[name]])

        one, many = "1 island", f"{args.islands} islands"
        print()
        print(f"## Throughput ({dt.date.today()}): budget {args.budget:g} s ({args.hold}), {args.per_island} children "
              f"per island, {args.repeats} repeat(s); medians over repeats")
        print(f"machine: {machine()}; total {time.time() - started:.0f} s")
        print(f"ray.init {init_s:.2f} s + ray.shutdown {shutdown_s:.2f} s measured alone; per run below: "
              "launch -> first "
              "experiment (Python, Hydra, lab, Ray, actors) and last experiment -> exit")
        print()
        rows = []
        for name, group in by_name.items():
            rows.append([
                name, str(group[0].islands), str(len(group[0].children)),
                f"{fig(name, Run.rate):.0f}", f"{fig(name, Run.window_rate):.0f}", f"{fig(name, Run.cycle):.3f}",
                f"{fig(name, Run.overhead) * 1000:.0f}", f"{fig(name, Run.in_actor) * 1000:.0f}",
                f"{fig(name, Run.driver) * 1000:.0f}", f"{fig(name, Run.mean_overhead) * 1000:.0f}",
                f"{fig(name, Run.overhead) / args.budget:.2%}",
                # an LLM's latency scales with nothing here, so only the no-LLM overhead is extrapolated
                f"{fig(name, Run.overhead) / REFERENCE_BUDGET_S:.3%}" if group[0].llm == "none" else "-",
                f"{fig(name, Run.startup):.1f}", f"{fig(name, Run.generation0):.1f}",
                f"{fig(name, Run.first_child_wait):.2f}", f"{fig(name, Run.teardown):.1f}",
            ])
        print(table(["run", "islands", "children", "children/h (steady)", "children/h (window)", "cycle s",
                     "overhead ms (median)", "in actor ms",
                     "driver ms", "overhead ms (mean, tails incl.)", "overhead / budget",
                     f"overhead / {REFERENCE_BUDGET_S:.0f} s", "start-up s", "gen 0 s", "first child wait s",
                     "teardown s"], rows))

        print()
        summary = []
        eff = fig(many, Run.rate) / (args.islands * fig(one, Run.rate))
        eff_window = fig(many, Run.window_rate) / (args.islands * fig(one, Run.window_rate))
        summary.append([f"scaling efficiency at N={args.islands} (steady; window rate in brackets)",
                        f"{eff:.3f} ({eff_window:.3f})", ">= 0.95", "met" if eff >= 0.95 else "NOT met"])
        worst = max(fig(name, Run.overhead) for name in (one, many))
        summary.append([f"engine overhead per experiment / {REFERENCE_BUDGET_S:.0f} s budget "
                        "(worst of the no-LLM runs)",
                        f"{worst / REFERENCE_BUDGET_S:.3%} ({worst * 1000:.0f} ms)", "<= 1%",
                        "met" if worst / REFERENCE_BUDGET_S <= 0.01 else "NOT met"])
        if args.clones:
            extra_ms = (fig(clones, Run.overhead) - fig(many, Run.overhead)) * 1000
            summary.append([f"node-local clones vs worktrees, {args.islands} islands: extra overhead per experiment "
                            f"(rate ratio in brackets)",
                            f"{extra_ms:+.0f} ms ({fig(clones, Run.rate) / fig(many, Run.rate):.3f})",
                            f"<= 1% of {REFERENCE_BUDGET_S:.0f} s",
                            "met" if extra_ms / 1000 <= 0.01 * REFERENCE_BUDGET_S else "NOT met"])
        if not args.no_llm:
            n = args.llm_islands
            label = f"{n} island{'s' if n > 1 else ''}"
            base = fig(one if n == 1 else f"{n} islands", Run.rate)
            base_window = fig(one if n == 1 else f"{n} islands", Run.window_rate)
            for mode, goal in (("prefetch", 0.03), ("serial", None)):
                name = f"{label}, LLM {mode}"
                loss = 1 - fig(name, Run.rate) / base
                loss_window = 1 - fig(name, Run.window_rate) / base_window
                summary.append([f"throughput loss vs no LLM, LLM answering after {args.llm_delay:.0%} of the budget, "
                                f"{mode} (steady; window rate in brackets)", f"{loss:.1%} ({loss_window:.1%})",
                                "<= 3%" if goal else
                                f"reference: 1 - 1/(1+{args.llm_delay:g}) = {1 - 1 / (1 + args.llm_delay):.1%} "
                                f"(+{args.llm_delay:.0%} time per experiment)",
                                ("met" if loss <= goal else "NOT met") if goal else "-"])
        print(table(["figure", "measured", "goal", ""], summary))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"\nruns kept in {workdir}")


if __name__ == "__main__":
    main()
