"""A full disk in the run dir, for real: the run goes into a 64 MB tmpfs (in a private user and
mount namespace, so no root is needed and nothing outside the test sees it), the disk is filled
mid-run, the engine must stop with a clear error and a journal without any partial line, and the
same command must resume to exactly the planned number of experiments once there is space again."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evolve.records import from_json
from tests.test_engine import ROOT, assert_records_agree_with_git
from tests.test_faults import ONE_RUN_EACH

EXPERIMENTS = 30


def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-r", "-m", "sh", "-c", "mount -t tmpfs -o size=1m probe /mnt 2>/dev/null "
                            "|| mount -t tmpfs -o size=1m probe /tmp"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not namespaces_work(), reason="needs unshare with user and mount namespaces")
def test_full_disk_stops_cleanly_then_the_same_command_resumes(tmp_path: Path, landscape: Path):
    disk, out = tmp_path / "small-disk", tmp_path / "out"
    disk.mkdir()
    (out / "after-full").mkdir(parents=True)
    (out / "final").mkdir()
    run_dir = disk / "run"
    evolve = " ".join(shlex.quote(a) for a in (
        sys.executable, "-m", "evolve", "+islands=2", "task=custom", f"task.dir={landscape}", "task.budget_s=1",
        f"run.max_experiments={EXPERIMENTS}", f"run.dir={run_dir}", "run.live=false", "llm=none",
        "run.min_free_mb=16", *ONE_RUN_EACH))
    script = f"""
        set -u
        mount -t tmpfs -o size=64m evolve-test {disk}
        cd {ROOT}
        {evolve} > {out}/first.out 2> {out}/first.err &
        pid=$!
        until grep -qs '"sigma"' {run_dir}/journal.jsonl; do sleep 0.1; done
        sleep 3
        dd if=/dev/zero of={disk}/filler bs=1M 2> /dev/null   # until the disk is full
        wait $pid; echo $? > {out}/first.rc
        cp -a {run_dir} {out}/after-full/
        rm {disk}/filler
        {evolve} > {out}/second.out 2> {out}/second.err; echo $? > {out}/second.rc
        cp -a {run_dir} {out}/final/
    """
    subprocess.run(["unshare", "-r", "-m", "bash", "-c", script], timeout=600, check=True)

    first_err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "1", first_err[-3000:]
    assert f"the disk of {run_dir} is full" in first_err and "run.min_free_mb=16" in first_err
    assert "run the same command again to resume" in first_err
    assert "Traceback" not in first_err

    stopped = out / "after-full" / "run"
    raw = (stopped / "journal.jsonl").read_bytes()
    assert raw.endswith(b"\n")                                    # no partial line
    records = [from_json(line) for line in raw.decode().splitlines()]
    experiments = [r for r in records if r.kind == "experiment"]
    assert 2 < len(experiments) < EXPERIMENTS                     # it stopped mid-run
    assert [e.seq for e in experiments] == list(range(len(experiments)))
    assert all(e.outcome == "ok" for e in experiments), [(e.outcome, e.reason) for e in experiments]

    second_err = (out / "second.err").read_text()
    assert (out / "second.rc").read_text().strip() == "0", second_err[-3000:]
    state = assert_records_agree_with_git(out / "final" / "run", 2)
    assert len(state.experiments) == EXPERIMENTS
    assert state.experiments[: len(experiments)] == experiments   # what was recorded stays as it was
    assert all(e.outcome == "ok" for e in state.experiments)     # no crash blamed on a candidate


def test_a_run_does_not_start_on_a_disk_below_min_free_mb(tmp_path: Path, landscape: Path):
    run_dir = tmp_path / "never"
    done = subprocess.run([sys.executable, "-m", "evolve", "+islands=1", "task=custom", f"task.dir={landscape}",
                           f"run.dir={run_dir}", "llm=none", "run.min_free_mb=100000000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "is full" in done.stderr and "run.min_free_mb=100000000" in done.stderr
    assert not (run_dir / "journal.jsonl").exists() and not (run_dir / "lab").exists()
