"""Confirmation runs end to end: a would-be keep near the noise floor, or implausibly far beyond it,
runs again, and so does its parent, both on the same fresh seed; the runs of both decide.

The candidates come from the scripted LLM server (real litellm over HTTP) so that each one's
behaviour per seed is known exactly. Each scores like the unmodified train.py on the same seed
(the seed's noise is shared, as a seed shares the initialisation and the data order of a real
run), plus an offset: one is lucky on its first seed only, one reports an absurd gain on its first
seed only, one is genuinely (but marginally) better on every seed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import fmean, stdev

import git

from evolve.records import NoiseFloor, NoiseUpdate, Remeasure
from tests.llm_server import Reply, ScriptedLLM
from tests.test_engine import LANDSCAPE, ROOT, assert_records_agree_with_git, read_tsv
from tests.test_engine_llm import ONLY_LLM_MUTATION

BASELINE_SEEDS = (0, 1, 2, 3)


def landscape_at(seed: int) -> float:
    """The unmodified landscape train.py's val_bpb on a seed, as its summary prints it."""
    sys.path.insert(0, str(LANDSCAPE))
    try:
        import prepare
        return float(f"{prepare.evaluate({'LEARNING_RATE': 0.004, 'WIDTH': 64, 'DECAY': 0.1}, seed):.6f}")
    finally:
        sys.path.remove(str(LANDSCAPE))
        sys.modules.pop("prepare", None)


def candidate(description: str, first_seed_offset: float, other_seeds_offset: float) -> Reply:
    """A train.py that scores like its parent on the same seed, plus one offset on seed 0 (the
    island's first run) and another on any other seed: seed luck, made deterministic."""
    source = (LANDSCAPE / "train.py").read_text().replace(
        'val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "WIDTH": WIDTH, "DECAY": DECAY}, seed)',
        'val_bpb = evaluate({"LEARNING_RATE": LEARNING_RATE, "WIDTH": WIDTH, "DECAY": DECAY}, seed) + '
        f"({first_seed_offset!r} if seed == 0 else {other_seeds_offset!r})")
    assert "if seed == 0" in source
    return Reply(f"DESCRIPTION: {description}\n\n```python\n{source}```\n")


def landscape_run(tmp_path: Path, name: str) -> tuple[Path, Path, list[float], float]:
    """A copy of the landscape task, a run dir, the baselines' values on BASELINE_SEEDS and their sigma."""
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    baselines = [landscape_at(seed) for seed in BASELINE_SEEDS]
    return task, tmp_path / name, baselines, stdev(baselines)


def test_lucky_and_implausible_gains_are_rerun_and_the_mean_decides(tmp_path: Path):
    task, run_dir, baselines, sigma = landscape_run(tmp_path, "confirm")
    with ScriptedLLM() as server:
        server.script(
            candidate("lucky on one seed", -2 * sigma, +3 * sigma),
            candidate("absurd on one seed", -50 * sigma, 0.0),
            candidate("marginally better on every seed", -3 * sigma, -3 * sigma),
        )
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "+islands=1", "task=custom", f"task.dir={task}", "task.budget_s=0.2",
             "run.max_experiments=7", f"selection.baseline_runs={len(BASELINE_SEEDS)}",
             f"selection.min_baselines={len(BASELINE_SEEDS)}", f"run.dir={run_dir}", "run.live=false", "llm=local",
             f"llm.api_base={server.api_base}", "llm.model=openai/test-model", "llm.num_retries=0",
             "selection.noise_k=1", "selection.confirm_sigmas=3", "selection.implausible_sigmas=20",
             "selection.paired_sigmas=1",
             "selection.first_seed=island",   # every first run on seed 0 (the candidates' seed luck is on it)
             "selection.champion_runs=0",     # the champion's re-measurement: test_the_champion_is_re_measured...
             "migration.interval=0", "reset.interval=0", *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"})
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 1)
    floor = next(e for e in state.events if isinstance(e, NoiseFloor))
    assert abs(floor.sigma - sigma) < 1e-6 and floor.dof == len(BASELINE_SEEDS) - 1
    updates = [e for e in state.events if isinstance(e, NoiseUpdate)]
    assert updates and updates[-1].dof > floor.dof            # the noise model learned from the re-runs
    by_name = {e.description: e for e in state.experiments if not e.is_baseline}
    assert set(by_name) == {"lucky on one seed", "absurd on one seed", "marginally better on every seed"}

    lucky = by_name["lucky on one seed"]
    assert lucky.status == "discard" and "within selection.confirm_sigmas=3" in lucky.rerun_reason
    assert abs(lucky.first_bpb - (baselines[0] - 2 * sigma)) < 2e-6   # one run alone would have kept it
    assert [(seed, outcome) for seed, _, outcome, _ in lucky.reruns] == [(10000, "ok")]
    assert [(seed, outcome) for seed, _, outcome, _ in lucky.parent_reruns] == [(10000, "ok")]   # paired
    assert lucky.parent == by_name["lucky on one seed"].parents[0]
    assert abs(lucky.val_bpb - fmean([baselines[0] - 2 * sigma, landscape_at(10000) + 3 * sigma])) < 2e-6
    assert "not confirmed" in lucky.reason
    assert (run_dir / lucky.reruns[0][3]).exists() and (run_dir / lucky.parent_reruns[0][3]).exists()

    absurd = by_name["absurd on one seed"]
    assert absurd.status == "discard" and "implausibly large" in absurd.rerun_reason
    assert "not reproducible" in absurd.reason                       # its mean alone (25 sigma) would keep it

    assert absurd.outlier and absurd.commit not in state.measurements   # a fault, kept out of sigma

    marginal = by_name["marginally better on every seed"]
    assert marginal.status == "keep" and len(marginal.reruns) == 1 and len(marginal.parent_reruns) == 1
    paired_seed = marginal.reruns[0][0]
    assert paired_seed == marginal.parent_reruns[0][0] and paired_seed not in (10000,)   # a fresh seed
    expected = fmean([baselines[0] - 3 * sigma, landscape_at(paired_seed) - 3 * sigma])
    assert abs(marginal.val_bpb - expected) < 2e-6                  # the mean of both runs
    member = state.islands[0].population.get(marginal.commit)
    assert member is not None and len(member.observations) == 2
    assert len(state.runs_of(marginal.parent)) == len(BASELINE_SEEDS) + 3   # every paired run of the parent

    # the island's branch points at the confirmed child, never at a lucky one
    assert state.islands[0].champion().commit == marginal.commit
    repo = git.Repo(run_dir / "lab")
    assert repo.commit(f"evolve/{run_dir.name}/island-0").hexsha == marginal.commit
    rows = {r["description"]: r for r in read_tsv(run_dir / "experiments.tsv")}
    assert rows["lucky on one seed"]["reruns"].startswith("0=") and "10000=" in rows["lucky on one seed"]["reruns"]
    assert len(state.experiments) == 7                               # re-runs are not extra experiments


def test_the_champion_is_re_measured_until_its_number_is_the_mean_of_enough_runs(tmp_path: Path):
    """selection.champion_runs: a champion kept on one lucky run runs again on fresh seeds; when
    the re-runs show it is no better than the unmodified train.py, the title goes back; a real gain
    is re-measured until it has champion_runs runs, and the number the run reports for it is their mean."""
    task, run_dir, baselines, sigma = landscape_run(tmp_path, "champion")
    with ScriptedLLM() as server:
        server.script(
            candidate("lucky on one seed", -4 * sigma, +9 * sigma),
            candidate("better on every seed", -20 * sigma, -20 * sigma),
        )
        args = [sys.executable, "-m", "evolve", "+islands=1", "task=custom", f"task.dir={task}", "task.budget_s=0.2",
                "run.max_experiments=6", f"selection.min_baselines={len(BASELINE_SEEDS)}",   # 4 baselines, 2 candidates
                f"run.dir={run_dir}", "run.live=false", "llm=local",
                f"llm.api_base={server.api_base}", "llm.model=openai/test-model", "llm.num_retries=0",
                "selection.confirm_sigmas=0",    # no confirmation runs: a keep on one run is what is re-measured
                "selection.first_seed=island",   # every first run on seed 0 (the candidates' seed luck is on it)
                "selection.champion_runs=4", "migration.interval=0", "reset.interval=0", *ONLY_LLM_MUTATION]
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"})
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 1)
    assert len(state.experiments) == 6                        # re-measurements are not experiments
    by_name = {e.description: e for e in state.experiments if not e.is_baseline}
    lucky, better = by_name["lucky on one seed"], by_name["better on every seed"]
    assert lucky.status == "keep" and better.status == "keep" and not lucky.reruns and not better.reruns
    base = lucky.parent

    remeasures = [e for e in state.events if isinstance(e, Remeasure)]
    of_lucky = [r for r in remeasures if r.commit == lucky.commit]
    assert of_lucky and [r.commit for r in remeasures] == [lucky.commit] * len(of_lucky) + [better.commit] * 3
    # the lucky keep ran again while it was the champion; once the re-runs showed it no better than
    # the base, the title went back (before it had its 4 runs) and nothing re-measured it again
    base_bpb = fmean(state.runs_of(base))
    assert all(r.mean_bpb < base_bpb for r in of_lucky[:-1]) and of_lucky[-1].mean_bpb > base_bpb
    assert of_lucky[-1].runs < 4 and len(state.runs_of(lucky.commit)) == of_lucky[-1].runs
    assert all(abs(r.val_bpb - (landscape_at(r.seed) + 9 * sigma)) < 2e-6 for r in of_lucky)
    # the real gain ran until it had 4 runs; the run's number for it is their mean, everywhere
    champion = state.champion()
    assert champion.commit == better.commit and len(champion.observations) == 4 == remeasures[-1].runs
    expected = fmean([baselines[0] - 20 * sigma] + [landscape_at(r.seed) - 20 * sigma for r in remeasures[len(of_lucky):]])
    assert abs(champion.val_bpb - expected) < 2e-6 and abs(remeasures[-1].mean_bpb - expected) < 2e-6
    assert f"champion {better.commit[:7]} val_bpb {expected:.6f}" in done.stdout
    # every re-measurement ran on a seed no other run of the night used
    seeds = [r.seed for r in remeasures]
    others = {seed for e in state.experiments for seed, *_ in ((e.seed,), *e.reruns, *e.parent_reruns)}
    assert len(set(seeds)) == len(seeds) and not set(seeds) & others
    rows = [r for r in read_tsv(run_dir / "events.tsv") if r["kind"] == "remeasure"]
    assert len(rows) == 4 and better.commit[:7] in rows[-1]["detail"] and "mean of its 4 runs" in rows[-1]["detail"]
    from evolve.report.data import read_run
    from evolve.report.page import render_events
    assert render_events(read_run(run_dir)).count("champion re-measured") == 4     # the report's events table
    assert "champions re-measured: 4 runs of 2 commits" in done.stdout              # the closing summary
    # the sigma of the night learned from the re-measurements (repeated runs of identical code)
    assert state.sigma_dof == len(BASELINE_SEEDS) - 1 + len(of_lucky) + 3
    # a second start finds nothing left to do
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout
