"""Islands on other Ray nodes: several raylets on this machine (ray.cluster_utils.Cluster), the
driver on a head node without CPUs, so every island lands on a worker node and keeps a
node-local clone in its own directory. Then a node is removed mid-run."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import git
import pytest

from tests.test_engine import ROOT, assert_records_agree_with_git, evolve_cmd
from tests.test_faults import ONE_RUN_EACH, sigma_recorded, wait_for

EXPERIMENTS = 24
RETIRE_EXPERIMENTS = 44


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(3):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        cluster.shutdown()


def start(run_dir: Path, node_dir: Path, task: Path, cluster, *extra: str,
          experiments: int = EXPERIMENTS) -> subprocess.Popen:
    args = ("islands=2", f"ray.address={cluster.address}", f"ray.node_dir={node_dir}", "task=custom",
            f"task.dir={task}", "task.budget_s=1", f"run.max_experiments={experiments}", f"run.dir={run_dir}",
            "run.live=false", "llm=none",
            *ONE_RUN_EACH, *extra)
    return subprocess.Popen(evolve_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def island_homes(node_dir: Path, run_name: str) -> dict[int, set[str]]:
    """island -> the node ids (12 hex digits) whose node-local directory holds a clone of it."""
    homes: dict[int, set[str]] = {}
    for repo in (node_dir / run_name).glob("node-*/island-*/repo"):
        homes.setdefault(int(repo.parent.name.split("-")[1]), set()).add(repo.parent.parent.name[5:])
    return homes


def worker_of(cluster, node_prefix: str):
    return next(n for n in cluster.worker_nodes if n.node_id.startswith(node_prefix))


def test_islands_on_other_nodes_keep_node_local_clones_and_move_when_their_node_is_lost(
        tmp_path: Path, landscape: Path, cluster):
    run_dir, node_dir = tmp_path / "spread", tmp_path / "nodes"
    proc = start(run_dir, node_dir, landscape, cluster)
    wait_for(lambda: sigma_recorded(run_dir), 180, "generation 0")
    homes = island_homes(node_dir, run_dir.name)
    assert set(homes) == {0, 1} and all(len(h) == 1 for h in homes.values())
    first_home = next(iter(homes[0]))
    assert first_home != next(iter(homes[1]))        # one island per worker node (1 CPU each)
    cluster.remove_node(worker_of(cluster, first_home))
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    assert "islands [0, 1] run on other nodes with node-local clones" in out
    assert "island 0 failed" in out and "restarting it" in out

    state = assert_records_agree_with_git(run_dir, 2)  # records and branches as on one node
    assert len(state.experiments) == EXPERIMENTS
    candidates = [e for e in state.experiments if not e.is_baseline]
    assert len({e.commit for e in candidates}) == len(candidates)  # none twice
    assert all(e.outcome == "ok" for e in state.experiments), [(e.outcome, e.reason) for e in state.experiments]
    homes = island_homes(node_dir, run_dir.name)
    assert first_home in homes[0] and len(homes[0]) == 2     # island 0 moved to the spare node
    # Each island wrote its log on its own node; the driver wrote the copy that came back through Ray.
    node_logs = {p.name for p in (node_dir / run_dir.name).glob("node-*/island-*/logs/**/*.log")}
    for exp in state.experiments:
        assert "val_bpb:" in (run_dir / exp.log).read_text()
        assert Path(exp.log).name in node_logs
    # A remote island's clone holds every parent it measured a candidate on, fetched from bundles.
    clone = git.Repo(next((node_dir / run_dir.name).glob(f"node-{next(iter(homes[1]))}/island-1/repo")))
    parents = {e.parents[0] for e in state.experiments if e.island == 1 and e.parents}
    assert parents and all(clone.is_valid_object(c, "commit") for c in parents)


def test_with_on_node_loss_retire_the_run_goes_on_with_fewer_islands(tmp_path: Path, landscape: Path, cluster):
    run_dir, node_dir = tmp_path / "retire", tmp_path / "nodes"
    # enough experiments that island 0 still runs some well after the node's loss is noticed
    proc = start(run_dir, node_dir, landscape, cluster, "ray.on_node_loss=retire", experiments=RETIRE_EXPERIMENTS)
    wait_for(lambda: sigma_recorded(run_dir), 180, "generation 0")
    homes = island_homes(node_dir, run_dir.name)
    cluster.remove_node(worker_of(cluster, next(iter(homes[1]))))
    removed_at = time.time()
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    assert "island 1 is retired: it lost its node" in out and "(ray.on_node_loss=retire); 1 islands go on" in out
    state = assert_records_agree_with_git(run_dir, 2)
    assert len(state.experiments) == RETIRE_EXPERIMENTS
    late = [e for e in state.experiments if e.started > removed_at + 30]
    assert late and {e.island for e in late} == {0}, [(e.island, round(e.started - removed_at)) for e in state.experiments]


def test_default_task_in_node_local_clones_builds_its_data_on_the_node(tmp_path: Path):
    """ray.checkouts=clone on one node: the clone path with the real tiny task, whose data each
    island's node builds itself (into a fresh cache) before its first experiment."""
    run_dir, node_dir, cache = tmp_path / "clones", tmp_path / "nodes", tmp_path / "fresh-cache"
    done = subprocess.run(evolve_cmd("+islands=2", "ray.checkouts=clone", f"ray.node_dir={node_dir}",
                                     f"task.cache_dir={cache}", "task.budget_s=3", "run.max_experiments=3",
                                     f"run.dir={run_dir}", "run.live=false", "llm=none"),
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "islands [0, 1] run on other nodes with node-local clones" in done.stdout
    state = assert_records_agree_with_git(run_dir, 2)
    assert [e.outcome for e in state.experiments] == ["ok"] * 3, [(e.outcome, e.reason) for e in state.experiments]
    assert any(cache.rglob("*.npy"))                               # the data was built on the node
    assert len(list((node_dir / run_dir.name).glob("node-*/island-*/repo/.git"))) == 2
