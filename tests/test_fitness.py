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
#
# Inside the sandbox train.py sees its own PID namespace, so the pids it could report are not the
# host's. These tests find a run's processes from outside instead: every process of the run carries
# RUN_VAR=<token> in its environment (bwrap included). A candidate signals progress with files in its
# own worktree, which is writable with or without the sandbox.

RUN_VAR = "EVOLVE_TEST_RUN"


def _processes_of(token: str) -> dict[int, str]:
    """Host pid -> command line of every live process of the run marked with ``token`` (its supervisor
    included)."""
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if f"{RUN_VAR}={token}".encode() in environ.split(b"\0") and is_alive(int(name)):
            found[int(name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def _sleepers(procs: dict[int, str]) -> list[int]:
    return [pid for pid, cmd in procs.items() if cmd.startswith("sleep 1000")]


def _in_thread(pool, wd, log, token, **kw):
    kw.setdefault("budget_s", 5)
    kw.setdefault("grace_s", 5)
    return pool.submit(run_fitness, wd, log_path=log, extra_env={RUN_VAR: token}, **kw)


def test_hanging_run_and_its_setsid_child_are_killed_at_the_deadline(task, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    wd, log = task("""
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        open("started", "w").close()
        print("training forever", flush=True)
        time.sleep(1000)
    """)
    budget, grace = 1.0, 1.0
    with ThreadPoolExecutor(1) as pool:
        t0 = time.monotonic()
        fut = _in_thread(pool, wd, log, "hang", budget_s=budget, grace_s=grace)
        assert _wait_for(lambda: (wd / "started").exists() and _sleepers(_processes_of("hang")), 10)
        victims = _processes_of("hang")
        r = fut.result(timeout=30)
        elapsed = time.monotonic() - t0
    assert r.status is Status.TIMEOUT, r
    assert "deadline" in r.reason
    assert budget + grace - 0.05 <= elapsed < budget + grace + 2.0
    assert any("train.py" in cmd for cmd in victims.values()) and len(_sleepers(victims)) == 1, victims
    assert not [p for p in victims if is_alive(p)], f"{victims} survived the run"


def test_setsid_leftovers_are_killed_after_a_normal_exit(task, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    # A setsid child that lingers, and a daemonised grandchild whose parent exits at once; train.py
    # waits for the test to have seen them, then exits normally.
    wd, log = task("""
        lingering = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        mid = os.fork()
        if mid == 0:
            os.setsid()
            grand = os.fork()
            if grand == 0:
                os.execvp("sleep", ["sleep", "1000"])
            os._exit(0)
        os.waitpid(mid, 0)
        open("started", "w").close()
        while not os.path.exists("go"):
            time.sleep(0.01)
    """, summary=True)
    with ThreadPoolExecutor(1) as pool:
        fut = _in_thread(pool, wd, log, "leftovers")
        assert _wait_for(lambda: (wd / "started").exists() and len(_sleepers(_processes_of("leftovers"))) == 2, 10)
        victims = _processes_of("leftovers")
        t_go = time.monotonic()
        (wd / "go").touch()
        r = fut.result(timeout=30)
        after_go = time.monotonic() - t_go
    assert r.status is Status.OK, r
    assert after_go < 3  # killed as soon as train.py exited, not at the deadline
    assert not [p for p in victims if is_alive(p)], f"{victims} outlived their fitness run"


def test_pidfile_is_written_during_the_run_and_removed_after(task, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    pidfile = tmp_path / "run" / "island-0.pid"
    wd, log = task("""
        open("started", "w").close()
        while not os.path.exists("go"):
            time.sleep(0.01)
    """, summary=True)
    with ThreadPoolExecutor(1) as pool:
        fut = _in_thread(pool, wd, log, "pidfile", pidfile=pidfile)
        assert _wait_for(lambda: (wd / "started").exists() and pidfile.exists(), 10)
        info = json.loads(pidfile.read_text())
        procs = {p: cmd for p, cmd in _processes_of("pidfile").items() if p != info["supervisor_pid"]}
        groups = {(os.getpgid(pid), os.getsid(pid)) for pid in procs}
        supervisor_alive = is_alive(info["supervisor_pid"])
        (wd / "go").touch()
        r = fut.result(timeout=30)
    assert r.status is Status.OK, r
    assert info["child_pid"] in procs and supervisor_alive
    # everything of the run (train.py, and bwrap when sandboxed) is in the child's own process group
    # and session, apart from the supervisor's
    assert groups == {(info["child_pid"], info["child_pid"])}
    assert info["child_pgid"] == info["child_sid"] == info["child_pid"]
    assert info["supervisor_pgid"] == info["supervisor_pid"] != info["child_pid"]
    assert any("train.py" in cmd for cmd in procs.values())
    assert not pidfile.exists()


def test_killing_the_callers_process_kills_the_run(task, tmp_path):
    """The island actor dies mid-run (SIGKILL): supervisor, train.py and its setsid child go too."""
    pidfile = tmp_path / "island.pid"
    wd, log = task("""
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        open("started", "w").close()
        time.sleep(1000)
    """)
    caller = subprocess.Popen(
        [sys.executable, "-c",
         f"from island.fitness import run_fitness; run_fitness({str(wd)!r}, budget_s=60, grace_s=0, "
         f"log_path={str(log)!r}, pidfile={str(pidfile)!r}, extra_env={{{RUN_VAR!r}: 'caller'}})"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert _wait_for(lambda: (wd / "started").exists() and pidfile.exists()
                         and _sleepers(_processes_of("caller")), 10)
        supervisor = json.loads(pidfile.read_text())["supervisor_pid"]
        victims = [supervisor, *_processes_of("caller")]
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

    pidfile = tmp_path / "run.pid"
    wd, log = task("""
        open("started", "w").close()
        time.sleep(1000)
    """)
    with ThreadPoolExecutor(1) as pool:
        fut = _in_thread(pool, wd, log, "stopped", budget_s=60, grace_s=0, pidfile=pidfile)
        assert _wait_for(lambda: (wd / "started").exists() and pidfile.exists(), 10)
        victims = _processes_of("stopped")
        os.kill(json.loads(pidfile.read_text())["supervisor_pid"], signal.SIGTERM)
        r = fut.result(timeout=10)
    assert r.status is Status.CRASH and "SIGTERM" in r.reason and "outside" in r.reason
    assert any("train.py" in cmd for cmd in victims.values())
    assert not [p for p in victims if is_alive(p)]
    assert not pidfile.exists()


def test_kill_stale_stops_a_run_left_by_a_crashed_engine(make_git_repo, tmp_path):
    from island import sandbox

    pidfile = tmp_path / "stale.pid"
    wd = make_git_repo({"train.py": _src("""
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        open("started", "w").close()
        time.sleep(1000)
    """), "prepare.py": PREPARE})
    argv, env = [sys.executable, "train.py"], scrubbed_env(extra={RUN_VAR: "stale"})
    if sandbox.probe() is None:  # the run as the engine would have started it
        argv, env = sandbox.wrap(argv, workdir=wd, env=env, python=sys.executable)
    sup = subprocess.Popen([sys.executable, "-I", "-S", SUPERVISOR, "--deadline", "60", "--pidfile", str(pidfile),
                            "--", *argv], cwd=wd, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: (wd / "started").exists() and pidfile.exists() and _sleepers(_processes_of("stale")),
                         10)
        victims = [sup.pid, *_processes_of("stale")]
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
    wd, log = task("""
        with open("env.json", "w") as f:
            json.dump(dict(os.environ), f)
        print(json.dumps(dict(os.environ)))
    """, summary=True)
    r = run_fitness(wd, budget_s=7, grace_s=5, log_path=log, seed=11, num_threads=2,
                    extra_env={"EVOLVE_CACHE_DIR": "/tmp/cache"})
    assert r.status is Status.OK, r
    env = json.loads((wd / "env.json").read_text())
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


def test_a_restarted_island_first_ends_its_predecessors_fitness_run(make_git_repo, tmp_path):
    """An island actor that dies leaves its train.py running (it may hold a GPU); the island that
    replaces it (island/actor.py Island.__init__) kills what the island's pidfile names before it
    runs anything, so two trainings never share a device."""
    from island import sandbox
    from island.actor import Island, IslandSettings

    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    pidfile = pid_dir / "island-0.pid"
    wd = make_git_repo({"train.py": _src("""
        open("started", "w").close()
        time.sleep(1000)
    """), "prepare.py": PREPARE})
    argv, env = [sys.executable, "train.py"], scrubbed_env(extra={RUN_VAR: "predecessor"})
    if sandbox.probe() is None:
        argv, env = sandbox.wrap(argv, workdir=wd, env=env, python=sys.executable)
    sup = subprocess.Popen([sys.executable, "-I", "-S", SUPERVISOR, "--deadline", "60", "--pidfile", str(pidfile),
                            "--", *argv], cwd=wd, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: (wd / "started").exists() and pidfile.exists(), 10)
        victims = [sup.pid, *_processes_of("predecessor")]
        Island(0, str(wd), "", IslandSettings(budget_s=1, grace_s=1, pinned_prepare_sha256="", log_dir=str(tmp_path),
                                               pid_dir=str(pid_dir)))
        sup.wait(timeout=10)
        assert not any(is_alive(p) for p in victims) and not pidfile.exists()
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
