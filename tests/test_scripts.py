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


def _gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_reads_logs_configs_and_overlap():
    gpu_check = _gpu_check_module()
    log = "".join(f"\rstep {i:05d} | tok/s {v:,} | left 1s" for i, v in enumerate([10, 20, 1000, 1100, 1200, 900]))
    assert gpu_check.steady_tokens_per_s(log + "\nstartup 12.5s | eval 3.0s\n") == 1100   # the second half: warm-up left out
    assert gpu_check.log_times("startup 12.5s | eval 3.0s") == (12.5, 3.0)
    assert gpu_check.steady_tokens_per_s("no steps") is None and gpu_check.log_times("") == (None, None)
    assert gpu_check.has_key("ray:\n  gpus_per_island: 1.0\n", "ray.gpus_per_island")
    assert not gpu_check.has_key("ray:\n  gpus_per_island: 1.0\n", "early_stop.enabled")
    assert not gpu_check.has_key("early_stop: null\n", "early_stop.enabled")
    assert gpu_check.overlap_share([(0, 10), (5, 15)]) == 5 / 15
    assert gpu_check.overlap_share([(0, 1), (2, 3)]) == 0.0
    smi = ("0, GPU-aaa, NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15\n"
           "1, GPU-bbb, NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15\n")
    assert gpu_check.gpu_description(smi, "1") == ("NVIDIA H100 80GB HBM3, 81559 MiB, driver 550.54.15 "
                                                   "(GPU 1, one of 2 on the machine)")
    assert gpu_check.gpu_description(smi.splitlines()[0], "GPU-aaa") == "NVIDIA H100 80GB HBM3, 81559 MiB, driver 550.54.15"
    assert gpu_check.gpu_description("", "0").startswith("unknown")


def test_gpu_check_dry_run_runs_every_step_on_cpu(tmp_path, task_cache):
    """scripts/gpu_check.sh --dry-run: the GPU check's steps with the tiny preset on CPU, written to a
    temporary page (docs/gpu.md untouched)."""
    import os

    import yaml

    page = ROOT / "docs" / "gpu.md"
    before = page.read_bytes() if page.exists() else None
    work = tmp_path / "work"
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--work", str(work),
                           "--cache-dir", str(task_cache)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EVOLVE_VENV_PYTHON": sys.executable})
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert (page.read_bytes() if page.exists() else None) == before
    text = (work / "gpu.md").read_text()
    assert f"wrote {work / 'gpu.md'}" in done.stdout
    assert text.startswith("# GPU check (DRY RUN on CPU: not GPU figures)") and "- GPU: none: dry run on CPU" in text
    baseline = text.split("## 1.")[1].split("\n| ")[2].split(" | ")    # the row under the header
    steps, tokens_per_s = int(baseline[0]), float(baseline[1].replace(",", ""))
    assert steps > 0 and tokens_per_s > 0 and float(baseline[6]) > 0      # val_bpb
    assert "| 0 | 2 | 2 " in text and "| 1 | 2 | 2 " in text              # both islands, two experiments each
    islands = yaml.safe_load((work / "islands" / ".hydra" / "config.yaml").read_text())
    assert islands["ray"]["gpus_per_island"] == 0.5 and islands["islands"] == 2
    if "early_stop" in islands:
        assert islands["early_stop"]["enabled"] is True and "early stop on (`early_stop.enabled=true`)" in text
    else:
        assert "early stop not in this version" in text
