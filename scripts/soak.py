#!/usr/bin/env python3
"""A night compressed into minutes: a real run with random faults injected, then an audit.

    python scripts/soak.py                       # 5 minutes, 2 islands, a fault every ~15 s
    python scripts/soak.py --minutes 30 --islands 4 --fault-every 10

The run trains tests/tasks/landscape (a train.py that holds the 'accelerator' for the budget
and scores its constants) with the offline operators. Faults, drawn at random:
    kill-train     SIGKILL of a running train.py
    kill-actor     SIGKILL of a busy island actor (Ray worker)
    kill-driver    SIGKILL of the driver and everything in its session, then a resume
    interrupt      SIGINT (Ctrl-C) of the driver, then a resume
    second-start   the same command started again while the run is going: it must exit 1 at once,
                   naming the holder, and change nothing
    changed-resume Ctrl-C, then a resume with a changed pinned setting (task.budget_s doubled): it
                   must exit 2 and run nothing; then the plain resume
At the end the driver is stopped with SIGINT and the run directory is audited: every experiment
the driver reported as finished is in the journal exactly once ("records lost" = those missing),
seqs are contiguous, the TSVs and git refs agree with the journal, branches sit at the
champions, and no process of the run is left.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import git  # noqa: E402

from evolve.journal import Journal  # noqa: E402
from evolve.state import RunState  # noqa: E402

FINISHED = re.compile(r"^\[(\d+)/\d+\] island (\d+) (keep|discard|crash|explore)\s")
FAULTS = ("kill-train", "kill-actor", "kill-driver", "interrupt", "second-start", "changed-resume")


def pids(pattern: str, cwd: Path | None = None) -> list[int]:
    """Processes whose command line matches; with `cwd`, only those working there (Ray workers
    work in their driver's directory), so a soak never kills another checkout's islands."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    found = [int(p) for p in out.split()]
    if cwd is None:
        return found

    def works_in(pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/cwd") == str(cwd)
        except OSError:
            return False
    return [pid for pid in found if works_in(pid)]


def train_pids(run_dir: Path) -> list[int]:
    found = []
    for pid in pids("train.py"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[1:2] == [b"train.py"] and str(run_dir) in os.readlink(f"/proc/{pid}/cwd"):
                found.append(pid)
        except (OSError, IndexError):
            continue
    return found


class Driver:
    """One incarnation of `python -m evolve` on the run dir; its output is kept for the audit."""

    def __init__(self, args: list[str], log: Path):
        self.log = open(log, "a")
        # SIGINT back to its default: a soak started in the background (`nohup ... &`) inherits it
        # ignored, and a driver that ignores Ctrl-C would make every interrupt fault a hang.
        self.proc = subprocess.Popen([sys.executable, "-m", "evolve", *args], cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill_session(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def interrupt(self, timeout: float = 120) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)


def audit(run_dir: Path, islands: int, reported: dict[int, int]) -> dict[str, int]:
    records = Journal(run_dir, islands).load()
    state = RunState.replay(islands, 4, records)
    exps = state.experiments
    by_seq = {e.seq: e for e in exps}
    lost = sum(1 for seq, island in reported.items() if seq not in by_seq or by_seq[seq].island != island)
    repo = git.Repo(run_dir / "lab")
    name = run_dir.name
    refs = {int(r.path.rsplit("/", 1)[1]): r.commit.hexsha for r in repo.refs
            if r.path.startswith(f"refs/evolve/{name}/exp/")}
    tsv_seqs = [line.split("\t", 1)[0] for line in (run_dir / "experiments.tsv").read_text().splitlines()[1:]]
    tsv_rows = len(tsv_seqs)
    branch_errors = sum(1 for isl in state.islands if isl.champion() and
                        repo.commit(f"evolve/{name}/island-{isl.index}").hexsha != isl.champion().commit)
    children = [e.commit for e in exps if not e.is_baseline]
    return {
        "experiments": len(exps),
        "records lost": lost,
        "seq gaps": sum(1 for i, e in enumerate(exps) if e.seq != i),
        "duplicate commits": len(children) - len(set(children)),
        "duplicate rows": len(tsv_seqs) - len(set(tsv_seqs)),
        "tsv rows != journal": abs(tsv_rows - len(exps)),
        "refs != journal": sum(1 for e in exps if refs.get(e.seq) != e.commit) + len(set(refs) - set(by_seq)),
        "branches off champion": branch_errors,
        "leftover processes": len(pids(str(run_dir))) + len(train_pids(run_dir)),
        "crashes recorded": sum(1 for e in exps if e.status == "crash"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--islands", type=int, default=2)
    ap.add_argument("--budget", type=float, default=1.0, help="task.budget_s of each experiment")
    ap.add_argument("--fault-every", type=float, default=15.0, help="mean seconds between faults")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="evolve-soak-"))
    task, run_dir, log = work / "task", work / "soak", work / "driver.log"
    shutil.copytree(ROOT / "tests" / "tasks" / "landscape", task, dirs_exist_ok=True)
    args = [f"islands={a.islands}", "task=custom", f"task.dir={task}", f"task.budget_s={a.budget}",
            "task.grace_s=20", "run.max_experiments=1000000", f"run.dir={run_dir}", "run.live=false", "llm=none",
            "migration.interval=3", "reset.interval=6"]
    print(f"soak: {dt.datetime.now().isoformat(timespec='seconds')} | {os.cpu_count()} cores | {a.minutes} min | "
          f"{a.islands} islands | budget {a.budget} s | a fault every ~{a.fault_every} s | {work}", flush=True)
    injected, survived = Counter(), Counter()
    driver = Driver(args, log)
    end = time.time() + a.minutes * 60
    while time.time() < end:
        time.sleep(min(rng.expovariate(1 / a.fault_every), max(0.0, end - time.time())))
        if time.time() >= end:
            break
        if not driver.alive():
            print(f"driver exited on its own (code {driver.proc.returncode}); see {log}", flush=True)
            return 1
        fault = rng.choice(FAULTS)
        if fault == "kill-train":
            victims = train_pids(run_dir)
        elif fault == "kill-actor":
            victims = pids("ray::Island.evaluate", cwd=ROOT)
        else:
            victims = [driver.proc.pid]
        if not victims:
            continue
        injected[fault] += 1
        if fault in ("kill-train", "kill-actor"):
            os.kill(rng.choice(victims), signal.SIGKILL)
            survived[fault] += 1  # counted as survived if the driver is still running at the next fault
            continue
        if fault == "second-start":
            journal = (run_dir / "journal.jsonl").read_bytes()
            second = subprocess.run([sys.executable, "-m", "evolve", *args], cwd=ROOT, capture_output=True,
                                    text=True, timeout=60)
            if second.returncode != 1 or "is in use by" not in second.stderr:
                print(f"a second start ended with code {second.returncode}: {second.stderr[-500:]}", flush=True)
                return 1
            if not (run_dir / "journal.jsonl").read_bytes().startswith(journal) or not driver.alive():
                print("a second start changed the run or stopped it", flush=True)
                return 1
            survived[fault] += 1
            continue
        if fault == "kill-driver":
            driver.kill_session()
        elif fault == "changed-resume":
            driver.interrupt()
            journal = (run_dir / "journal.jsonl").read_bytes()
            changed = [f"task.budget_s={2 * a.budget}" if x.startswith("task.budget_s=") else x for x in args]
            resumed = subprocess.run([sys.executable, "-m", "evolve", *changed], cwd=ROOT, capture_output=True,
                                     text=True, timeout=120)
            if resumed.returncode != 2 or "task.budget_s: the run has" not in resumed.stderr:
                print(f"a changed-setting resume ended with code {resumed.returncode}: {resumed.stderr[-500:]}",
                      flush=True)
                return 1
            if (run_dir / "journal.jsonl").read_bytes() != journal:
                print("a refused resume changed the journal", flush=True)
                return 1
        else:
            code = driver.interrupt()
            # Ctrl-C exits 130 once evolve has started; -2 (killed by SIGINT) is Python's own answer
            # to a Ctrl-C that lands while it is still importing, before evolve runs at all.
            if code not in (130, -signal.SIGINT):
                print(f"Ctrl-C ended the driver with code {code}; see {log}", flush=True)
                return 1
        driver = Driver(args, log)
        survived[fault] += 1
    code = driver.interrupt()
    time.sleep(1.0)
    reported = {}
    for line in log.read_text().splitlines():
        m = FINISHED.match(line)
        if m:
            reported[int(m.group(1)) - 1] = int(m.group(2))
    result = audit(run_dir, a.islands, reported)
    print()
    print("| fault | injected | survived |")
    print("|---|---|---|")
    for fault in FAULTS:
        print(f"| {fault} | {injected[fault]} | {survived[fault]} |")
    print()
    print("| audit | value |")
    print("|---|---|")
    print(f"| minutes | {a.minutes:g} |")
    print(f"| final Ctrl-C exit code | {code} |")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    bad = code not in (130, -signal.SIGINT) or any(result[k] for k in result if k not in ("experiments", "crashes recorded"))
    print("\nsoak:", "FAILED" if bad else "ok (records lost: 0)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
