"""The benchmarks in scripts/ still run end to end and print their tables (tiny settings): they
import engine internals, so a refactor can break them without any other test noticing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def test_bench_search_prints_its_comparison_table():
    out = run_script("scripts/bench_search.py", "--seeds", "1", "--evaluations", "10", "--simulate", "0")
    assert "| config | islands | success [Wilson 95%]" in out
    assert "| ratchet | 1 |" in out and "| islands | 4 |" in out


def test_bench_throughput_prints_scaling_and_the_clone_path():
    out = run_script("scripts/bench_throughput.py", "--no-llm", "--clones", "--budget", "0.3", "--per-island", "2")
    assert "| 2 islands, node-local clones | 2 |" in out
    assert "scaling efficiency at N=2" in out and "node-local clones vs worktrees" in out


def test_bench_fitness_prints_the_sandbox_cost_and_its_pairs():
    from island import sandbox

    out = run_script("scripts/bench_fitness.py", "--fake", "--budget", "0.3", "--runs", "1", "--versus", "unsandboxed")
    if sandbox.probe() is None:
        assert "sandbox start-up, trivial fitness run, median of 20:" in out and "ms with bwrap (+" in out
    else:
        assert "sandbox: not measured, bwrap cannot run here" in out
    assert "'bare' runs: run_fitness with task.sandbox=none" in out
    assert "| pairs | median wall bare s |" in out
