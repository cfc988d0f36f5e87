"""Confirmation runs end to end: a would-be keep near the noise floor, or implausibly far beyond it,
runs again with another seed before it is kept, and the mean of its runs decides.

The candidates come from the scripted LLM server (real litellm over HTTP) so that each one's
behaviour per seed is known exactly: one is lucky on its first seed only, one reports an absurd
gain on its first seed only, one is genuinely (but marginally) better on every seed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import fmean, stdev

import git

from tests.llm_server import Reply, ScriptedLLM
from tests.test_engine import LANDSCAPE, ROOT, assert_records_agree_with_git, read_tsv
from tests.test_engine_llm import ONLY_LLM_MUTATION


def landscape_baselines() -> list[float]:
    """The unmodified landscape train.py's val_bpb for generation 0's seeds (0 and 1 on one island)."""
    sys.path.insert(0, str(LANDSCAPE))
    try:
        import prepare
        params = {"LEARNING_RATE": 0.004, "WIDTH": 64, "DECAY": 0.1}
        return [float(f"{prepare.evaluate(params, seed):.6f}") for seed in (0, 1)]
    finally:
        sys.path.remove(str(LANDSCAPE))
        sys.modules.pop("prepare", None)


def candidate(description: str, first_seed_bpb: float, other_seeds_bpb: float) -> Reply:
    """A train.py that reports one val_bpb on seed 0 (the island's first run) and another on any
    other seed: what seed luck looks like, made deterministic."""
    source = (LANDSCAPE / "train.py").read_text().replace(
        'val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "WIDTH": WIDTH, "DECAY": DECAY}, seed)',
        f"val_bpb = {first_seed_bpb!r} if seed == 0 else {other_seeds_bpb!r}")
    assert "if seed == 0" in source
    return Reply(f"DESCRIPTION: {description}\n\n```python\n{source}```\n")


def test_lucky_and_implausible_gains_are_rerun_and_the_mean_decides(tmp_path: Path):
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "confirm"
    baselines = landscape_baselines()
    parent, sigma = fmean(baselines), stdev(baselines)
    with ScriptedLLM() as server:
        server.script(
            candidate("lucky on one seed", parent - 2 * sigma, parent + 3 * sigma),
            candidate("absurd on one seed", parent - 50 * sigma, parent),
            candidate("marginally better on every seed", parent - 2 * sigma, parent - 2.5 * sigma),
        )
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "+islands=1", "task=custom", f"task.dir={task}", "task.budget_s=0.2",
             "run.max_experiments=5", f"run.dir={run_dir}", "run.live=false", "llm=local",
             f"llm.api_base={server.api_base}", "llm.model=openai/test-model", "llm.num_retries=0",
             "selection.noise_k=1", "selection.confirm_sigmas=3", "selection.implausible_sigmas=20",
             "migration.interval=0", "reset.interval=0", *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"})
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 1)
    assert abs(state.sigma - sigma) < 1e-6
    by_name = {e.description: e for e in state.experiments if not e.is_baseline}
    assert set(by_name) == {"lucky on one seed", "absurd on one seed", "marginally better on every seed"}

    lucky = by_name["lucky on one seed"]
    assert lucky.status == "discard" and "within selection.confirm_sigmas=3" in lucky.rerun_reason
    assert lucky.first_bpb == round(parent - 2 * sigma, 6)          # one run alone would have kept it
    assert [(seed, outcome) for seed, _, outcome, _ in lucky.reruns] == [(10000, "ok")]
    assert abs(lucky.val_bpb - fmean([parent - 2 * sigma, parent + 3 * sigma])) < 1e-5
    assert "not confirmed" in lucky.reason
    assert (run_dir / lucky.reruns[0][3]).exists()                  # the re-run has its own log

    absurd = by_name["absurd on one seed"]
    assert absurd.status == "discard" and "implausibly large" in absurd.rerun_reason
    assert "not reproducible" in absurd.reason                       # its mean alone (25 sigma) would keep it

    marginal = by_name["marginally better on every seed"]
    assert marginal.status == "keep" and len(marginal.reruns) == 1
    assert abs(marginal.val_bpb - (parent - 2.25 * sigma)) < 1e-5   # the mean of both runs
    member = state.islands[0].population.get(marginal.commit)
    assert member is not None and len(member.observations) == 2

    # the island's branch points at the confirmed child, never at a lucky one
    assert state.islands[0].champion().commit == marginal.commit
    repo = git.Repo(run_dir / "lab")
    assert repo.commit(f"evolve/{run_dir.name}/island-0").hexsha == marginal.commit
    rows = {r["description"]: r for r in read_tsv(run_dir / "experiments.tsv")}
    assert rows["lucky on one seed"]["reruns"].startswith("0=") and "10000=" in rows["lucky on one seed"]["reruns"]
    assert len(state.experiments) == 5                               # re-runs are not extra experiments
