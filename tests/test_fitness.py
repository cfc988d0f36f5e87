"""The fitness run end to end: real subprocesses, real git repos, fake train.py scripts."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from island.environment import is_secret_name, scrubbed_env
from island.fitness import SUPERVISOR, FitnessResult, Status, kill_stale, run_fitness
from island.summary import classify, last_exception, log_tail, parse_summary
from island.supervise import is_alive

REPO_ROOT = Path(__file__).resolve().parents[1]
PREPARE = "# the evaluator\nVALUE = 1\n"

SUMMARY = textwrap.dedent("""
    print("---")
    print("val_bpb: 1.234567")
    print("training_seconds: 0.1")
    print("peak_vram_mb: 0.0")
    print("depth: 4")
""")


def _src(body: str, summary: bool = False) -> str:
    return "import os, sys, time, subprocess, json\n" + textwrap.dedent(body) + (SUMMARY if summary else "")


@pytest.fixture
def task(make_git_repo, tmp_path):
    """Factory: a task repo whose train.py is ``body``; returns (workdir, log_path)."""

    def make(body: str, summary: bool = False):
        root = make_git_repo({"train.py": _src(body, summary), "prepare.py": PREPARE})
        return root, tmp_path / "logs" / "run.log"

    return make


def _wait_for(pred, timeout=5.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def _read_pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


# --- classification of finished runs -----------------------------------------------------------

def test_ok_run_parses_summary(task):
    wd, log = task("""
        import stat
        assert stat.S_ISREG(os.fstat(1).st_mode), "stdout must be the log file"
        for i in range(3):
            print(f"step {i}", end="\\r", flush=True)
        print()
    """, summary=True)
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert isinstance(r, FitnessResult)
    assert r.status is Status.OK and r.status == "ok", r
    assert r.val_bpb == pytest.approx(1.234567)
    assert r.metrics["depth"] == 4.0 and r.metrics["peak_vram_mb"] == 0.0
    assert r.returncode == 0
    assert r.log_path == str(log) and "val_bpb: 1.234567" in log.read_text()
    assert 0 < r.wall_s < 5
    with pytest.raises(Exception):
        r.status = Status.CRASH  # frozen
    assert json.loads(json.dumps(r.to_dict()))["status"] == "ok"


def test_exception_is_a_crash_with_the_exception_line(task):
    wd, log = task("""
        print("step 1", flush=True)
        def f():
            raise ValueError("bad shapes 3 vs 4")
        f()
    """)
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.CRASH
    assert "ValueError: bad shapes 3 vs 4" in r.reason
    assert r.returncode == 1 and r.val_bpb is None
    assert "Traceback" in r.log_tail


def test_exit_zero_without_summary_is_a_crash(task):
    wd, log = task('print("all done, no summary")\n')
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.CRASH and r.reason == "no val_bpb in summary"
    assert r.returncode == 0


def test_fail_line_is_nan(task):
    wd, log = task("""
        print("step 00001 loss 3.2", end="\\r", flush=True)
        print("step 00002 loss nan", end="\\r", flush=True)
        print("FAIL")
        sys.exit(1)
    """)
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.NAN, r
    assert r.log_tail.splitlines()[-1] == "FAIL"


def test_nan_val_bpb_is_nan(task):
    wd, log = task('print("---"); print("val_bpb: nan"); print("depth: 4")\n')
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.NAN and r.val_bpb is None
    assert "val_bpb" not in r.metrics and r.metrics["depth"] == 4.0  # metrics stay JSON-safe


def test_memory_error_is_oom(task):
    wd, log = task('raise MemoryError("cannot allocate 80 GiB")\n')
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.OOM and "MemoryError" in r.reason


def test_sigkill_not_from_us_is_oom_other_signals_crash(task, tmp_path):
    wd, log = task("os.kill(os.getpid(), 9)\n")
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.OOM and r.returncode == -9
    (wd / "train.py").write_text(_src("import signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"))
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.CRASH and "SIGSEGV" in r.reason


def test_missing_interpreter_is_a_crash(task):
    wd, log = task("", summary=True)
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log, python="/nonexistent/python3")
    assert r.status is Status.CRASH and "cannot execute" in r.reason


# --- no process outlives its run ---------------------------------------------------------------

def test_hanging_run_and_its_setsid_child_are_killed_at_the_deadline(task, tmp_path):
    pids = tmp_path / "pids"
    wd, log = task(f"""
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        with open({str(pids)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        print("training forever", flush=True)
        time.sleep(1000)
    """)
    budget, grace = 1.0, 0.5
    t0 = time.monotonic()
    r = run_fitness(wd, budget_s=budget, grace_s=grace, log_path=log)
    elapsed = time.monotonic() - t0
    assert r.status is Status.TIMEOUT, r
    assert "deadline" in r.reason
    assert budget + grace - 0.05 <= elapsed < budget + grace + 2.0
    train_pid, child_pid = _read_pids(pids)
    for pid in (train_pid, child_pid):
        assert not is_alive(pid), f"pid {pid} survived the run"
    with pytest.raises(ProcessLookupError):
        os.kill(train_pid, 0)


def test_setsid_leftovers_are_killed_after_a_normal_exit(task, tmp_path):
    pids = tmp_path / "pids"
    # A setsid child that lingers, and a daemonised grandchild whose parent exits at once.
    wd, log = task(f"""
        lingering = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        mid = os.fork()
        if mid == 0:
            os.setsid()
            grand = os.fork()
            if grand == 0:
                os.execvp("sleep", ["sleep", "1000"])
            with open({str(pids)!r}, "w") as f:
                f.write(f"{{lingering.pid}} {{grand}}")
            os._exit(0)
        os.waitpid(mid, 0)
    """, summary=True)
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log)
    assert r.status is Status.OK, r
    assert r.wall_s < 3
    for pid in _read_pids(pids):
        assert not is_alive(pid), f"pid {pid} outlived its fitness run"


def test_pidfile_is_written_during_the_run_and_removed_after(task, tmp_path):
    seen = tmp_path / "pidfile_seen.json"
    pidfile = tmp_path / "run" / "island-0.pid"
    wd, log = task(f"""
        with open({str(pidfile)!r}) as f:
            info = json.load(f)
        info["me"] = os.getpid()
        info["my_pgid"], info["my_sid"] = os.getpgid(0), os.getsid(0)
        with open({str(seen)!r}, "w") as f:
            json.dump(info, f)
    """, summary=True)
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=log, pidfile=pidfile)
    assert r.status is Status.OK, r
    info = json.loads(seen.read_text())
    assert info["child_pid"] == info["me"]
    # train.py runs in its own process group and session, apart from the supervisor's
    assert info["my_pgid"] == info["me"] == info["my_sid"]
    assert info["supervisor_pgid"] == info["supervisor_pid"] != info["me"]
    assert not pidfile.exists()


def test_killing_the_callers_process_kills_the_run(task, tmp_path):
    """The island actor dies mid-run (SIGKILL): supervisor, train.py and its setsid child go too."""
    pids = tmp_path / "pids"
    pidfile = tmp_path / "island.pid"
    wd, log = task(f"""
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        with open({str(pids)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(1000)
    """)
    caller = subprocess.Popen(
        [sys.executable, "-c",
         f"from island.fitness import run_fitness; run_fitness({str(wd)!r}, budget_s=60, grace_s=0, "
         f"log_path={str(log)!r}, pidfile={str(pidfile)!r})"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert _wait_for(lambda: pids.exists() and pids.read_text().count(" ") == 1 and pidfile.exists(), 10)
        supervisor = json.loads(pidfile.read_text())["supervisor_pid"]
        victims = [supervisor, *_read_pids(pids)]
        assert all(is_alive(p) for p in victims)
        caller.kill()
        caller.wait()
        assert _wait_for(lambda: not any(is_alive(p) for p in victims), 5), \
            [p for p in victims if is_alive(p)]
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()


def test_a_supervisor_stopped_from_outside_is_reported_as_such(task, tmp_path):
    """SIGTERM to the supervisor (e.g. an operator's kill): the tree goes, the result says why."""
    from concurrent.futures import ThreadPoolExecutor

    pids = tmp_path / "pids"
    pidfile = tmp_path / "run.pid"
    wd, log = task(f"""
        with open({str(pids)!r}, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(1000)
    """)
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(run_fitness, wd, budget_s=60, grace_s=0, log_path=log, pidfile=pidfile)
        assert _wait_for(lambda: pids.exists() and pids.read_text() and pidfile.exists(), 10)
        os.kill(json.loads(pidfile.read_text())["supervisor_pid"], signal.SIGTERM)
        r = fut.result(timeout=10)
    assert r.status is Status.CRASH and "SIGTERM" in r.reason and "outside" in r.reason
    assert not is_alive(_read_pids(pids)[0])
    assert not pidfile.exists()


def test_kill_stale_stops_a_run_left_by_a_crashed_engine(make_git_repo, tmp_path):
    pids = tmp_path / "pids"
    pidfile = tmp_path / "stale.pid"
    wd = make_git_repo({"train.py": _src(f"""
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        with open({str(pids)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(1000)
    """), "prepare.py": PREPARE})
    sup = subprocess.Popen([sys.executable, "-I", "-S", SUPERVISOR, "--deadline", "60", "--pidfile", str(pidfile),
                            "--", sys.executable, "train.py"], cwd=wd, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: pids.exists() and pids.read_text().count(" ") == 1 and pidfile.exists(), 10)
        victims = [sup.pid, *_read_pids(pids)]
        assert kill_stale(pidfile) is True
        sup.wait(timeout=5)
        assert sup.returncode == 128 + signal.SIGTERM
        assert not any(is_alive(p) for p in victims)
        assert not pidfile.exists()
        assert kill_stale(pidfile) is False  # nothing left to do
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()


def test_concurrent_runs_from_threads_do_not_interfere(make_git_repo, tmp_path):
    """Islands may share a process (threads): each run gets its own supervisor, log and result."""
    from concurrent.futures import ThreadPoolExecutor

    dirs = [make_git_repo({"train.py": _src(f"time.sleep(0.3)\nprint('---'); print('val_bpb: {k}.5')\n"),
                           "prepare.py": PREPARE}, name=f"repo{k}") for k in range(3)]

    def one(k: int) -> FitnessResult:
        return run_fitness(dirs[k], budget_s=5, grace_s=5, log_path=tmp_path / f"{k}.log", seed=k)

    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, range(3)))
    assert [r.val_bpb for r in results] == [0.5, 1.5, 2.5]
    assert time.monotonic() - t0 < 3


# --- the environment ---------------------------------------------------------------------------

SECRETS = {
    "OPENAI_API_KEY": "sk-test",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "MY_TOKEN": "tok",
    "HF_TOKEN": "hf_test",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "AWS_REGION": "eu-west-1",
    "LITELLM_MASTER_KEY": "lk",
    "OPENROUTER_BASE_URL": "https://openrouter.example",
    "GOOGLE_APPLICATION_CREDENTIALS": "/root/gcp.json",
    "db_password": "hunter2",
    "GITHUB_AUTH": "gh",
    "PIP_INDEX_URL": "https://user:s3cret@pypi.example/simple",
}


def test_child_sees_no_secrets_but_sees_what_it_needs(task, tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("LANG", "C.UTF-8")
    out = tmp_path / "env.json"
    wd, log = task(f"""
        with open({str(out)!r}, "w") as f:
            json.dump(dict(os.environ), f)
        print(json.dumps(dict(os.environ)))
    """, summary=True)
    r = run_fitness(wd, budget_s=7, grace_s=5, log_path=log, seed=11, num_threads=2,
                    extra_env={"EVOLVE_CACHE_DIR": "/tmp/cache"})
    assert r.status is Status.OK, r
    env = json.loads(out.read_text())
    leaked = sorted(set(SECRETS) & set(env))
    assert not leaked
    text = log.read_text()
    for v in SECRETS.values():
        assert v not in text
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["EVOLVE_BUDGET_S"] == "7" and env["EVOLVE_SEED"] == "11"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["EVOLVE_NUM_THREADS"] == "2"
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["EVOLVE_CACHE_DIR"] == "/tmp/cache"
    assert env["PATH"] == os.environ["PATH"] and env["LANG"] == "C.UTF-8"


def test_scrubbed_env_rules():
    base = {**SECRETS, "PATH": "/bin", "HOME": "/root", "CUDA_VISIBLE_DEVICES": "0,1",
            "OMP_NUM_THREADS": "1", "PYTHONINSPECT": "1", "VIRTUAL_ENV": "/venv"}
    env = scrubbed_env(base, budget_s=2.5, seed=0)
    assert set(env) == {"PATH", "HOME", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "VIRTUAL_ENV",
                        "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "EVOLVE_BUDGET_S", "EVOLVE_SEED"}
    assert env["EVOLVE_BUDGET_S"] == "2.5" and env["OMP_NUM_THREADS"] == "1"
    assert "EVOLVE_NUM_THREADS" not in env
    for bad in ({"OPENAI_API_KEY": "x"}, {"Session_Token": "x"}, {"ANTHROPIC_BASE_URL": "x"},
                {"INDEX": "https://u:p@host/"}):
        with pytest.raises(ValueError):
            scrubbed_env(base, bad)
    assert scrubbed_env({}, {"CUDA_VISIBLE_DEVICES": "2"})["CUDA_VISIBLE_DEVICES"] == "2"
    assert not is_secret_name("CUDA_VISIBLE_DEVICES") and is_secret_name("cohere_api_key")


# --- summary parsing and classification (pure functions) ---------------------------------------

def test_parse_summary_uses_the_last_anchor():
    text = ("---\nval_bpb: 9.0\n"
            "step 1 loss 3.0\rstep 2 loss 2.9\r\n"
            "---\r\n"
            "val_bpb: 0.997900\ntraining_seconds: 300.1\nnote: not a number\nmfu_percent: 39.80\n"
            "  indented: 1\nbad key: 2\n")
    s = parse_summary(text)
    assert s == {"val_bpb": 0.9979, "training_seconds": 300.1, "mfu_percent": 39.8, "indented": 1.0}
    assert parse_summary("no anchor\nval_bpb: 1.0\n") == {}
    assert math.isnan(parse_summary("---\nval_bpb: nan\n")["val_bpb"])


def test_classify_rules():
    ok = "---\nval_bpb: 1.0\n"
    assert classify(0, ok, False)[0] is Status.OK
    assert classify(-9, ok, True)[0] is Status.TIMEOUT
    assert classify(1, "loss 3\rFAIL\n", False)[0] is Status.NAN
    assert classify(0, "---\nval_bpb: inf\n", False)[0] is Status.NAN
    assert classify(1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n", False) == \
        (Status.OOM, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB")
    assert classify(-6, "terminate called after throwing an instance of 'std::bad_alloc'\n", False)[0] is Status.OOM
    assert classify(-9, "step 5\n", False)[0] is Status.OOM
    assert classify(0, "done\n", False) == (Status.CRASH, "no val_bpb in summary")
    st, reason = classify(2, "usage: train.py [-h]\ntrain.py: error: unrecognized arguments\n", False)
    assert st is Status.CRASH and "unrecognized arguments" in reason and "exit 2" in reason


def test_last_exception_takes_the_final_chained_exception():
    text = textwrap.dedent("""\
        Traceback (most recent call last):
          File "train.py", line 3, in <module>
        KeyError: 'a'

        During handling of the above exception, another exception occurred:

        Traceback (most recent call last):
          File "train.py", line 5, in <module>
            x = y @ z
                ~~^~~
        RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x8 and 16x4)
    """)
    assert last_exception(text) == "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x8 and 16x4)"


def test_log_tail_collapses_progress_lines_and_is_bounded():
    text = "".join(f"step {i}\r" for i in range(10000)) + "\n" + "\n".join(f"line {i}" for i in range(100)) + "\n"
    tail = log_tail(text)
    assert tail.splitlines()[-1] == "line 99" and len(tail.splitlines()) == 50
    assert len(log_tail("x" * 100 + "\n" + "y" * 10000)) <= 4096
    assert log_tail("a\rb\rc\n") == "c"
