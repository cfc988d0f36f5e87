"""End-to-end runs of `python -m evolve`: real Hydra, real Ray, real git, real fitness subprocesses.

Most runs use tests/tasks/landscape (a train.py that scores its constants instantly) so that the
engine's behaviour, not training speed, sets the pace; one run trains the real tiny task.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest

from evolve.journal import Journal
from evolve.records import Migration, NoiseFloor, Reset
from evolve.state import RunState

ROOT = Path(__file__).resolve().parents[1]
LANDSCAPE = ROOT / "tests" / "tasks" / "landscape"


# The live report is rebuilt by a background process every report.every experiments and once at
# the end (evolve/live_report.py); on 2 cores that competes with the islands' training. The suite's
# engine runs leave it off unless a test sets report.every itself: tests/test_report.py and
# tests/test_live_report.py build reports from real runs.
NO_REPORT = "report.every=0"


def evolve_cmd(*overrides: str) -> list[str]:
    if not any(o.lstrip("+").startswith("report.every=") for o in overrides):
        overrides = (*overrides, NO_REPORT)
    return [sys.executable, "-m", "evolve", *overrides]


def run_evolve(*overrides: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(evolve_cmd(*overrides), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load_state(run_dir: Path, islands: int, population_size: int = 4) -> RunState:
    return RunState.replay(islands, population_size, Journal(run_dir, islands).load())


def trailers(repo: git.Repo, commit: str) -> dict[str, str]:
    body = repo.commit(commit).message
    return dict(line.split(": ", 1) for line in body.splitlines() if line.startswith("Evolve-"))


def assert_records_agree_with_git(run_dir: Path, islands: int, population_size: int = 4) -> RunState:
    state = load_state(run_dir, islands, population_size)
    rows = read_tsv(run_dir / "experiments.tsv")
    assert [int(r["seq"]) for r in rows] == list(range(len(state.experiments)))
    repo = git.Repo(run_dir / "lab")
    run_name = run_dir.name
    refs = {r.path.rsplit("/", 1)[1]: r.commit.hexsha for r in repo.refs if r.path.startswith(f"refs/evolve/{run_name}/exp/")}
    assert len(refs) == len(state.experiments)
    for exp in state.experiments:
        assert refs[f"{exp.seq:05d}"] == exp.commit
        if not exp.is_baseline:
            t = trailers(repo, exp.commit)
            assert t["Evolve-Status"] == exp.status
            assert t["Evolve-Island"] == str(exp.island)
            assert t["Evolve-Parents"].split() == list(exp.parents)
            assert [p.hexsha for p in repo.commit(exp.commit).parents] == list(exp.parents)
    for isl in state.islands:
        champion = isl.champion()
        assert repo.commit(f"evolve/{run_name}/island-{isl.index}").hexsha == champion.commit
        results = read_tsv(run_dir / "islands" / str(isl.index) / "results.tsv")
        assert len(results) == isl.experiments
        assert list(results[0].keys()) == ["commit", "val_bpb", "memory_gb", "status", "description"]
    return state


def test_bad_override_names_the_key_and_allowed_values(tmp_path: Path):
    run_dir = tmp_path / "run"
    bad_enum = run_evolve("+islands=2", f"run.dir={run_dir}", "migration.topology=star")
    assert bad_enum.returncode != 0
    assert "migration.topology" in bad_enum.stderr and "ring" in bad_enum.stderr
    bad_range = run_evolve("+islands=2", f"run.dir={run_dir}", "reset.fraction=1.5")
    assert bad_range.returncode == 2
    assert "reset.fraction=1.5" in bad_range.stderr and "[0, 1)" in bad_range.stderr
    bad_operator = run_evolve("islands=2", f"run.dir={run_dir}", "+operators.weights.magic=1")
    assert bad_operator.returncode == 2 and "perturb" in bad_operator.stderr
    assert not (run_dir / "run.json").exists()


def test_two_islands_migrate_reset_and_records_agree_with_git(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "night"
    done = run_evolve("+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.1",
                      "task.grace_s=20", "run.max_experiments=14", "migration.interval=3", "reset.interval=4",
                      "reset.fraction=0.5", f"run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == 14
    baselines = [e for e in state.experiments if e.is_baseline]
    # selection.min_baselines=6 baselines, spread over both islands, each with its own seed
    assert sorted(e.island for e in baselines) == [0, 0, 0, 1, 1, 1] and len({e.seed for e in baselines}) == 6
    sigma = [e for e in state.events if isinstance(e, NoiseFloor)]
    assert len(sigma) == 1 and sigma[0].sigma > 0
    # Migration after every 3rd experiment of an island, reset every 4 x 2 experiments in total.
    for isl in state.islands:
        rounds = [e for e in state.events if isinstance(e, Migration) and e.source == isl.index]
        assert len(rounds) == isl.experiments // 3
        for e in rounds:
            assert e.targets == (1 - isl.index,)
    resets = [e for e in state.events if isinstance(e, Reset)]
    assert len(resets) == 14 // 8
    assert all(len(r.resets) == 1 for r in resets)
    events = read_tsv(run_dir / "events.tsv")
    kinds = {e["kind"] for e in events}   # "noise": sigma learned from confirmation and paired runs
    assert {"start", "sigma", "migration", "reset"} <= kinds <= {"start", "sigma", "noise", "migration", "reset",
                                                         "operator_fallback",   # a crossover without 2 parents
                                                         "remeasure"}           # the champion's extra runs
    # Every fitness run left its full log behind.
    for row in read_tsv(run_dir / "experiments.tsv"):
        assert "val_bpb:" in (run_dir / row["log"]).read_text()
    assert "champion" in done.stdout


def test_a_candidate_that_trained_while_migrants_arrived_is_not_admitted_but_trained_again(tmp_path: Path,
                                                                                         landscape: Path):
    """Migrants after every experiment: an island's population changes under the candidate it is
    training (a new epoch). Such a would-be keep is a row, never a member; its idea is trained
    again as a new experiment of the new epoch, and admitted only on that run."""
    run_dir = tmp_path / "migrants"
    done = run_evolve("+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.1", "task.grace_s=20",
                      "run.max_experiments=24", "migration.interval=1", "reset.interval=0", f"run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    stale = [e for e in state.experiments if e.reason.startswith("not admitted: island")]
    assert stale and all("received migrants from island" in e.reason for e in stale), \
        [(e.seq, e.status, e.reason[:80]) for e in state.experiments]
    members = {m.commit for isl in state.islands for m in isl.population.members}
    assert all(e.status == "discard" and e.commit not in members for e in stale)
    again = [e for e in stale if e.reason.endswith("queued to train again in the new epoch")]
    assert again
    for e in again:
        later = [x for x in state.experiments[e.seq + 1:] if x.island == e.island and x.source_sha256 == e.source_sha256]
        if e.seq < len(state.experiments) - 2:        # the last rows may have ended the run first
            assert len(later) == 1 and later[0].commit != e.commit and later[0].parents == e.parents
        assert all(not x.reason.endswith("queued to train again in the new epoch") for x in later)   # once only


def test_ratchet_keeps_only_strict_gains_and_resets_otherwise(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "ratchet"
    done = run_evolve("islands=1", "selection=ratchet", "task=custom", f"task.dir={landscape}",
                      "task.budget_s=0.05", "run.max_experiments=12", f"run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 1, population_size=1)
    best = None
    for exp in state.experiments:
        if exp.is_baseline:
            best = exp
            continue
        assert exp.parents == (best.commit,), "the ratchet always mutates the current head"
        assert exp.status == ("keep" if exp.val_bpb < best.val_bpb else "discard")
        if exp.status == "keep":
            best = exp
    assert not [e for e in state.events if isinstance(e, (Migration, Reset))]
    repo = git.Repo(run_dir / "lab")
    assert repo.commit(f"evolve/{run_dir.name}/island-0").hexsha == best.commit
    # discarded commits stay reachable under refs/evolve/
    discarded = [e for e in state.experiments if e.status == "discard"]
    for exp in discarded:
        assert repo.git.for_each_ref("--points-at", exp.commit, f"refs/evolve/{run_dir.name}/")


def test_resume_after_sigkill_yields_exactly_n_experiments(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "killed"
    args = ("+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.4",
            "run.max_experiments=10", f"run.dir={run_dir}", "run.live=false")
    proc = subprocess.Popen(evolve_cmd(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    journal = run_dir / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and sum(1 for line in journal.read_text().splitlines() if '"experiment"' in line) >= 4:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"run did not reach 4 experiments: {proc.stderr.read()[-2000:]}")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its session, mid-experiment
    proc.wait()
    before = load_state(run_dir, 2).experiments
    assert 4 <= len(before) < 10
    done = run_evolve(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == 10
    assert state.experiments[: len(before)] == before
    children = [e.commit for e in state.experiments if not e.is_baseline]
    assert len(children) == len(set(children))
    # Every first run of the night, over both starts, had a seed of its own (selection.first_seed=
    # fresh): never a baseline's, a re-run's or another candidate's, so what a seed fixes is
    # independent noise whenever a first run is compared with its parent's runs.
    first_seeds = [e.seed for e in state.experiments if not e.is_baseline]
    other_seeds = {e.seed for e in state.experiments if e.is_baseline} | {
        seed for e in state.experiments for seed, *_ in (*e.reruns, *e.parent_reruns)} | {
        r.seed for r in state.remeasures}
    assert len(set(first_seeds)) == len(first_seeds) and not set(first_seeds) & other_seeds, first_seeds
    # a third call has nothing left to do and changes nothing
    again = run_evolve(*args)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len(load_state(run_dir, 2).experiments) == 10


def test_task_in_a_git_repo_gets_island_branches_in_that_repo(tmp_path: Path, landscape: Path):
    repo = git.Repo.init(landscape)
    repo.index.add(["train.py", "prepare.py"])
    repo.index.commit("my task")
    run_dir = tmp_path / "runs" / "mine"
    done = run_evolve("+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.05",
                      "run.max_experiments=6", f"run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (run_dir / "lab").exists()
    branches = {h.name for h in repo.heads}
    assert {"evolve/mine/island-0", "evolve/mine/island-1"} <= branches
    assert repo.is_dirty(untracked_files=True) is False


def test_multirun_gives_each_job_its_own_run_dir(tmp_path: Path, landscape: Path):
    sweep = tmp_path / "sweep"
    done = run_evolve("-m", "+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.05",
                      "run.max_experiments=4", f"run.dir={sweep}", "migration.interval=1,2")
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("0", "1"):
        rows = read_tsv(sweep / job / "experiments.tsv")
        assert len(rows) == 4
    assert (sweep / "0" / "lab").exists() and (sweep / "1" / "lab").exists()


def test_tiny_task_two_islands_real_training(tmp_path: Path, task_cache: Path):
    run_dir = tmp_path / "tiny"
    done = run_evolve("+islands=2", "task.budget_s=2", "run.max_experiments=4", f"run.dir={run_dir}",
                      f"task.cache_dir={task_cache}", timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == 4
    ok = [e for e in state.experiments if e.outcome == "ok"]
    assert len(ok) >= 3, [(e.outcome, e.reason) for e in state.experiments]
    for exp in ok:
        assert 0.5 < exp.val_bpb < 20 and exp.metrics["num_steps"] > 0


def test_ctrl_c_stops_gracefully_and_leaves_clean_worktrees(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "interrupted"
    args = ("+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=3",
            "run.max_experiments=20", f"run.dir={run_dir}", "run.live=false")
    # SIGINT at its default in the child: a suite started in the background (`nohup ... &`) hands
    # its processes an ignored SIGINT, which Ctrl-C could then never reach
    proc = subprocess.Popen(evolve_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = run_dir / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (journal.exists() and '"sigma"' in journal.read_text()):
        time.sleep(0.1)
    time.sleep(1.0)  # children of generation 1 are now training
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]      # a scheduler (or a Hydra sweep) sees the interrupt
    assert "interrupted" in out and "champion" in out
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) < 20
    for k in range(2):
        status = subprocess.run(["git", "-C", str(run_dir / "worktrees" / f"island-{k}"), "status", "--porcelain",
                                 "--ignored"], capture_output=True, text=True, check=True).stdout
        assert status == ""
    # no fitness process of this run survives the driver
    time.sleep(1.0)
    leftovers = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_joins_an_existing_ray_cluster(tmp_path: Path, landscape: Path):
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        run_dir = tmp_path / "joined"
        done = run_evolve("islands=2", f"ray.address={cluster.address}", "task=custom", f"task.dir={landscape}",
                          "task.budget_s=0.05", "run.max_experiments=6", f"run.dir={run_dir}", "llm=none")
        assert done.returncode == 0, done.stderr[-3000:]
        assert len(assert_records_agree_with_git(run_dir, 2).experiments) == 6
        assert "starting" in done.stdout
        # Without ray.address the run starts its own private cluster, even with this one running.
        private = run_evolve("islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=0.05",
                             "run.max_experiments=4", f"run.dir={tmp_path / 'private'}", "llm=none")
        assert private.returncode == 0, private.stderr[-3000:]
    finally:
        cluster.shutdown()


def test_one_gpu_per_island_on_a_cluster_with_gpus(tmp_path: Path, landscape: Path):
    """Ray accepts declared GPUs on a CPU machine: islands get num_gpus=1 and distinct devices."""
    from ray.cluster_utils import Cluster

    train = landscape / "train.py"
    train.write_text("import os\nprint('device:', os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
                     "print('inductor:', os.environ.get('TORCHINDUCTOR_CACHE_DIR'))\n" + train.read_text())
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2,
                                                             "include_dashboard": False})
    try:
        too_many = run_evolve("islands=3", f"ray.address={cluster.address}", "task=custom",
                              f"task.dir={landscape}", f"run.dir={tmp_path / 'three'}", "llm=none")
        assert too_many.returncode == 2 and "error: islands=3" in too_many.stderr
        assert "needs 3 GPUs; the cluster has 2" in too_many.stderr and "Traceback" not in too_many.stderr
        run_dir = tmp_path / "gpus"
        done = run_evolve("islands=2", f"ray.address={cluster.address}", "task=custom", f"task.dir={landscape}",
                          "task.budget_s=0.05", "run.max_experiments=4", f"run.dir={run_dir}", "llm=none")
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        cluster.shutdown()
    state = assert_records_agree_with_git(run_dir, 2)
    devices = {}
    for exp in state.experiments:
        line = next(x for x in (run_dir / exp.log).read_text().splitlines() if x.startswith("device:"))
        devices.setdefault(exp.island, set()).add(line.split()[1])
    assert all(len(d) == 1 for d in devices.values()), devices  # an island keeps its GPU
    assert devices[0] != devices[1] and devices[0] | devices[1] <= {"0", "1"}
    caches = {exp.island: next(x for x in (run_dir / exp.log).read_text().splitlines()
                               if x.startswith("inductor:")).split()[1] for exp in state.experiments}
    assert caches == {k: str(run_dir / "cache" / f"island-{k}" / "inductor") for k in (0, 1)}
