"""Faults injected into real runs: the run survives, records every experiment exactly once."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from scripts.soak import pids as pids_matching, train_pids  # one process filter for the soak and these tests
from tests.test_engine import ROOT, assert_records_agree_with_git, evolve_cmd


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def start_run(run_dir: Path, task: Path, *extra: str, llm: str = "none", env: dict | None = None) -> subprocess.Popen:
    args = ("+islands=2", "task=custom", f"task.dir={task}", "task.budget_s=2", "run.max_experiments=6",
            "selection.min_baselines=4",   # four baselines, so that candidates run after generation 0
            f"run.dir={run_dir}", "run.live=false", f"llm={llm}", *extra)
    return subprocess.Popen(evolve_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


# For runs whose subject is not the keep rule: every experiment is one fitness run (no confirmation
# re-runs, no re-measured champion), so the suite's time goes to what they test.
ONE_RUN_EACH = ("selection.confirm_sigmas=0", "selection.implausible_sigmas=0", "selection.champion_runs=0")


def sigma_recorded(run_dir: Path) -> bool:
    journal = run_dir / "journal.jsonl"
    return journal.exists() and '"sigma"' in journal.read_text()


def test_sigkill_of_an_island_actor_restarts_it_and_reruns_the_experiment(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "actor-killed"
    proc = start_run(run_dir, landscape)
    wait_for(lambda: sigma_recorded(run_dir), 120, "generation 0")
    victim = wait_for(lambda: pids_matching("ray::Island.evaluate", cwd=ROOT), 30, "a busy island actor")[0]
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert "restarting it" in out
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == 6
    assert all(e.outcome == "ok" for e in state.experiments), [(e.outcome, e.reason) for e in state.experiments]


def test_sigkill_of_a_fitness_process_is_recorded_and_the_run_goes_on(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "train-killed"
    proc = start_run(run_dir, landscape)
    wait_for(lambda: sigma_recorded(run_dir), 120, "generation 0")
    # train.py itself (not its supervisor), running in a worktree of this run
    os.kill(wait_for(lambda: train_pids(run_dir)[:1], 30, "a training process")[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == 6
    killed = [e for e in state.experiments if e.outcome != "ok"]
    assert len(killed) == 1 and killed[0].status == "crash", [(e.outcome, e.reason) for e in killed]
    assert "SIGKILL" in killed[0].reason, killed[0].reason


def test_llm_endpoint_gone_for_a_minute_islands_go_on_offline_then_use_it_again(tmp_path: Path, landscape: Path):
    from evolve.records import OperatorFailure
    from tests.llm_server import Reply, ScriptedLLM
    from tests.test_engine_llm import ONLY_LLM_MUTATION, whole_file

    run_dir = tmp_path / "llm-outage"
    outage_s = 45.0
    with ScriptedLLM() as server:
        server.script(*[Reply(whole_file(f"learning rate {lr:.4f}", f"{lr:.4f}"))
                        for lr in (0.005 + 0.0005 * i for i in range(50))])
        proc = start_run(run_dir, landscape, "task.budget_s=3", "run.max_experiments=50",
                         f"llm.api_base={server.api_base}", "llm.model=openai/test-model", "llm.num_retries=1",
                         "llm.timeout_s=10", *ONLY_LLM_MUTATION,
                         *ONE_RUN_EACH,   # experiments of a steady length: one fitness run each
                         llm="local",
                         env={"OPENAI_API_KEY": "sk-test-not-a-real-key"})
        journal = run_dir / "journal.jsonl"
        wait_for(lambda: journal.exists() and '"llm_mutation"' in journal.read_text(), 120, "a first LLM experiment")
        server.go_away()
        gone = time.time()
        time.sleep(outage_s)
        server.come_back()
        back = time.time()
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == 50
    # proposals fetched before the outage are used up within two experiments
    during = [e for e in state.experiments if gone + 15 < e.started and e.finished < back]
    # 30 s of two islands at a 3 s budget: 10-20 experiments; islands stalled on the dead endpoint would make 0-2
    assert len(during) >= 8, "the islands did not keep working while the LLM was away"
    # every proposal made during the outage is the offline fallback; an LLM candidate that still
    # trains then was proposed before it (prefetched, or queued to train again after migrants: its
    # train.py was measured before the outage)
    measured_before = {e.source_sha256 for e in state.experiments if e.started < gone}
    late = [e for e in during if e.started > gone + 30 and e.source_sha256 not in measured_before]
    assert late and {e.operator for e in late} == {"perturb"}, [(e.operator, e.reason[:60]) for e in late]
    failures = [e for e in state.events if isinstance(e, OperatorFailure)]
    # every failure is the outage, a prefetched proposal re-planned after a reset, or one still in
    # flight when the run ended (cancelled and recorded with its cost)
    assert failures and all("Connection" in f.reason or "connect" in f.reason or f.reason.startswith("re-planned: ")
                            or f.reason.startswith("cancelled: ") for f in failures), [f.reason for f in failures][:3]
    assert any("Connection" in f.reason or "connect" in f.reason for f in failures)
    after = [e for e in state.experiments if e.started > back + 5 and e.operator == "llm_mutation"]
    assert after, "the LLM was not used again once it came back"
