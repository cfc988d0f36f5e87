"""One run, one owner: a second start is refused, a resume keeps the run's settings, exit codes
tell a scheduler what happened, run names never collide, and the same seed makes the same run."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import git
import pytest

from tests.conftest import TEST_ACTOR
from tests.test_engine import ROOT, assert_records_agree_with_git, evolve_cmd, read_tsv, run_evolve


def args(run_dir: Path, task: Path, *extra: str) -> tuple[str, ...]:
    return ("+islands=2", "task=custom", f"task.dir={task}", f"run.dir={run_dir}", "run.live=false", *extra)


def wait_for_experiments(run_dir: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "experiments.tsv").exists() and len(read_tsv(run_dir / "experiments.tsv")) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{run_dir} did not reach {n} experiments in {timeout} s")


def test_a_second_start_on_a_busy_run_dir_is_refused_and_changes_nothing(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "busy"
    first = subprocess.Popen(evolve_cmd(*args(run_dir, landscape, "task.budget_s=1", "run.max_experiments=10")),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_experiments(run_dir, 1)
    config_before = (run_dir / ".hydra" / "config.yaml").read_text()
    started = time.time()
    second = run_evolve(*args(run_dir, landscape, "task.budget_s=1", "run.max_experiments=99"), timeout=60)
    assert second.returncode == 1, second.stderr[-2000:]
    assert time.time() - started < 30
    assert "is in use by pid" in second.stderr and str(first.pid) in second.stderr
    assert (run_dir / ".hydra" / "config.yaml").read_text() == config_before   # the refused start wrote nothing
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == 10
    assert len({e.seq for e in state.experiments}) == 10


def test_a_resume_with_a_changed_pinned_setting_stops_unless_accepted(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "pinned"
    done = run_evolve(*args(run_dir, landscape, "task.budget_s=0.05", "run.max_experiments=4"))
    assert done.returncode == 0, done.stderr[-3000:]
    journal = (run_dir / "journal.jsonl").read_bytes()
    changed = run_evolve(*args(run_dir, landscape, "task.budget_s=0.1", "selection.noise_k=2", "selection.t_max=5",
                               "early_stop.enabled=true", "run.max_experiments=6"))
    assert changed.returncode == 2
    assert "task.budget_s: the run has 0.05, this start has 0.1" in changed.stderr
    assert "selection.noise_k: the run has 1.0, this start has 2" in changed.stderr
    assert "selection.t_max: the run has " in changed.stderr and "this start has 5" in changed.stderr
    assert "early_stop.enabled: the run has False, this start has True" in changed.stderr
    renamed = run_evolve(*args(run_dir, landscape, "task.budget_s=0.05", "run.name=other", "run.max_experiments=6",
                               "run.accept_changed_settings=true"))
    assert renamed.returncode == 2 and "run.name cannot change on resume" in renamed.stderr
    more_islands = run_evolve("+islands=3", *args(run_dir, landscape, "task.budget_s=0.05")[1:])
    assert more_islands.returncode == 2 and "islands=3 does not match" in more_islands.stderr
    assert "islands=2" in more_islands.stderr
    assert (run_dir / "journal.jsonl").read_bytes() == journal              # nothing ran
    limits_only = run_evolve(*args(run_dir, landscape, "task.budget_s=0.05", "run.max_experiments=5"))
    assert limits_only.returncode == 0, limits_only.stderr[-3000:]         # limits may change
    accepted = run_evolve(*args(run_dir, landscape, "task.budget_s=0.1", "run.max_experiments=6",
                                "run.accept_changed_settings=true"))
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert "resuming with changed settings" in accepted.stdout
    assert len(assert_records_agree_with_git(run_dir, 2).experiments) == 6
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["settings"]["task.budget_s"] == 0.1
    assert manifest["setting_changes"][0]["task.budget_s"] == [0.05, 0.1]


def test_exit_codes_after_sigterm_and_when_every_baseline_fails(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "preempted"
    proc = subprocess.Popen(evolve_cmd(*args(run_dir, landscape, "task.budget_s=2", "run.max_experiments=20")),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_experiments(run_dir, 2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)        # a second one (a scheduler's impatience) must not break the stop
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "interrupted" in out
    assert len(assert_records_agree_with_git(run_dir, 2).experiments) < 20
    broken = tmp_path / "broken-task"
    shutil.copytree(landscape, broken)
    (broken / "train.py").write_text("raise SystemExit('this task is broken')\n")
    # selection.min_baselines=6 baselines, each failed one re-run: up to 12 attempts. A limit that
    # comes first (8 experiments) must not pass a broken task off as a finished run (exit 0).
    cut = run_evolve(*args(tmp_path / "broken", broken, "task.budget_s=0.05", "run.max_experiments=8"))
    assert cut.returncode == 1 and "the unmodified train.py failed on every island (8 runs)" in cut.stdout
    assert len(read_tsv(tmp_path / "broken" / "experiments.tsv")) == 8
    again = run_evolve(*args(tmp_path / "broken", broken, "task.budget_s=0.05", "run.max_experiments=8"))
    assert again.returncode == 1 and "failed on every island" in again.stdout     # a resume (a requeue) too
    # with room for them, the re-runs end generation 0; nothing is judged after it
    failed = run_evolve(*args(tmp_path / "broken", broken, "task.budget_s=0.05", "run.max_experiments=20"))
    assert failed.returncode == 1
    assert "the unmodified train.py failed on every island (crash" in failed.stdout
    rows = read_tsv(tmp_path / "broken" / "experiments.tsv")
    assert len(rows) == 12 and all(r["operator"] == "baseline" for r in rows)
    last = run_evolve(*args(tmp_path / "broken", broken, "task.budget_s=0.05", "run.max_experiments=20"))
    assert last.returncode == 1 and "failed on every island" in last.stdout      # a resume after generation 0
    assert len(read_tsv(tmp_path / "broken" / "experiments.tsv")) == 12           # judged nothing


def test_sigterm_during_start_up_exits_143_and_the_run_resumes(tmp_path: Path, landscape: Path):
    """Ray installs its own SIGTERM handler (exit 15, nothing graceful); ours stays in charge."""
    run_dir = tmp_path / "early"
    proc = subprocess.Popen(evolve_cmd(*args(run_dir, landscape, "task.budget_s=0.05", "run.max_experiments=6")),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run_dir / "run.json").exists() and time.time() < deadline:   # the run is open; the fleet starts
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out[-2000:], err[-2000:])
    assert not (run_dir / "experiments.tsv").exists() or len(read_tsv(run_dir / "experiments.tsv")) < 6
    again = run_evolve(*args(run_dir, landscape, "task.budget_s=0.05", "run.max_experiments=6"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(assert_records_agree_with_git(run_dir, 2).experiments) == 6


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"])
def test_a_hydra_multirun_stops_its_sweep_on_sigterm_or_ctrl_c(tmp_path: Path, landscape: Path, sig, code):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(evolve_cmd("-m", *args(sweep, landscape, "task.budget_s=2", "run.max_experiments=30",
                                                   "migration.interval=1,2")),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_experiments(sweep / "0", 2)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == code
    assert not (sweep / "1").exists()      # the second job never started


def test_run_names_never_collide_in_a_users_repository(tmp_path: Path, landscape: Path):
    checkout = tmp_path / "checkout"
    shutil.copytree(landscape, checkout)
    repo = git.Repo.init(checkout)
    repo.git.add("--", ".")
    repo.index.commit("task", author=TEST_ACTOR, committer=TEST_ACTOR)
    first = run_evolve(*args(tmp_path / "a" / "night1", checkout, "task.budget_s=0.05", "run.max_experiments=3"))
    assert first.returncode == 0, first.stderr[-3000:]
    refs_before = repo.git.for_each_ref("refs/evolve/")
    clash = run_evolve(*args(tmp_path / "b" / "night1", checkout, "task.budget_s=0.05", "run.max_experiments=3"))
    assert clash.returncode == 2 and "already has branches or refs of a run named 'night1'" in clash.stderr
    assert repo.git.for_each_ref("refs/evolve/") == refs_before            # the other run's refs are untouched
    named = run_evolve(*args(tmp_path / "b" / "night1", checkout, "task.budget_s=0.05", "run.max_experiments=3",
                             "run.name=night1-b"))
    assert named.returncode == 0, named.stderr[-3000:]
    assert "evolve/night1-b/island-0" in [h.name for h in repo.heads]
    resumed = run_evolve(*args(tmp_path / "a" / "night1", checkout, "task.budget_s=0.05", "run.max_experiments=4"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(repo.git.for_each_ref("refs/evolve/night1-b/exp/").splitlines()) == 3   # never deleted by the other


def test_the_same_seed_makes_the_same_choices(tmp_path: Path, landscape: Path):
    runs = []
    for name in ("one", "two"):
        done = run_evolve("+islands=1", "task=custom", f"task.dir={landscape}", "task.budget_s=0.05", "llm=none",
                          "run.max_experiments=10", f"run.dir={tmp_path / name}", "run.live=false", "seed=3")
        assert done.returncode == 0, done.stderr[-3000:]
        # commit hashes differ (commit times do); every choice and every score must not
        runs.append([(r["operator"], re.sub(r"\b[0-9a-f]{7}\b", "<commit>", r["description"]), r["status"],
                      r["val_bpb"]) for r in read_tsv(tmp_path / name / "experiments.tsv")])
    assert runs[0] == runs[1] and len(runs[0]) == 10
    assert len({description for _, description, _, _ in runs[0]}) > 3     # real, varied choices


def test_run_hours_count_every_start_of_the_run(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "hours"
    limit = ("task.budget_s=1", "run.max_experiments=500", "run.hours=0.003")    # 10.8 s of running
    first = run_evolve(*args(run_dir, landscape, *limit))
    assert first.returncode == 0, first.stderr[-3000:]
    ran = len(read_tsv(run_dir / "experiments.tsv"))
    assert 2 <= ran < 500
    time.sleep(2)                                               # time between starts does not count
    again = run_evolve(*args(run_dir, landscape, *limit))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "run.hours=0.003 counts every start" in again.stdout
    assert len(read_tsv(run_dir / "experiments.tsv")) == ran     # nothing left of the 0.003 h
    more = run_evolve(*args(run_dir, landscape, "task.budget_s=1", "run.max_experiments=500", "run.hours=0.006"))
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(read_tsv(run_dir / "experiments.tsv")) > ran     # a larger limit goes on
    assert [r["kind"] for r in read_tsv(run_dir / "events.tsv")].count("start") == 3
