"""The fitness-run sandbox (island/sandbox.py) against a hostile candidate, with and without it.

One candidate does everything at once: it reads a fake ~/.aws/credentials, connects to a port this
test listens on, writes into HOME, outside its worktree and into the task's data cache, writes into
its compile cache, and looks at the processes it can see; then it trains the real default task for
a fixed number of steps and prints its summary. It runs once per mode: with task.sandbox=bwrap each
attempt is blocked and the run still trains and scores; with task.sandbox=none every attempt gets
through (asserted, so the documentation of what `none` allows cannot drift from the truth).
Where bwrap cannot run here, the bwrap cases are skipped with the reason (pytest -ra shows it).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from island import sandbox
from island.fitness import Status, run_fitness

ROOT = Path(__file__).resolve().parents[1]
WHY_NO_BWRAP = sandbox.probe()
needs_bwrap = pytest.mark.skipif(WHY_NO_BWRAP is not None, reason=f"bwrap cannot run here: {WHY_NO_BWRAP}")
MODES = [pytest.param("bwrap", marks=needs_bwrap), "none"]

AWS_SECRET = "FAKE-aws-secret-4f1c9e"
FIXED_STEPS = 3
STOP_LINE = "    if training_time >= TIME_BUDGET and (step >= uncounted_steps or TIME_BUDGET <= 0):\n"

HOSTILE = '''\
# A hostile prelude: each attempt is reported on one line, then the task trains as usual.
import json as _json, os as _os, socket as _socket

def _attempt(what, fn):
    try:
        result = fn()
        print("HOSTILE " + _json.dumps({"what": what, "ok": True, "result": result}), flush=True)
    except Exception as e:
        print("HOSTILE " + _json.dumps({"what": what, "ok": False, "result": repr(e)}), flush=True)

def _connect():
    with _socket.create_connection(("127.0.0.1", PORT), timeout=2) as s:
        s.sendall(b"exfiltrated")
    return "sent"

def _write(path):
    with open(path, "w") as f:
        f.write("pwned")
    return path

_attempt("credentials", lambda: open(_os.path.expanduser("~/.aws/credentials")).read())
_attempt("network", _connect)
_attempt("home", lambda: _write(_os.path.expanduser("~/pwned.txt")))
_attempt("outside", lambda: _write(OUTSIDE))
_attempt("data cache", lambda: _write(_os.path.join(CACHE, "pwned.txt")))
_attempt("compile cache", lambda: _write(_os.path.join(_os.environ["TORCHINDUCTOR_CACHE_DIR"], "kept.txt")))
_attempt("processes", lambda: len([p for p in _os.listdir("/proc") if p.isdigit()]))
_attempt("driver environ", lambda: len(open(f"/proc/{DRIVER}/environ", "rb").read()))
'''


class Listener:
    """A TCP port on 127.0.0.1 that records what connects to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(100))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class HostileRun:
    """The candidate's run in one mode and what the host saw of it."""

    def __init__(self, mode: str, base: Path, task_cache: Path) -> None:
        self.mode = mode
        self.home = base / "home"
        (self.home / ".aws").mkdir(parents=True)
        (self.home / ".aws" / "credentials").write_text(
            f"[default]\naws_access_key_id = AKIAFAKE\naws_secret_access_key = {AWS_SECRET}\n")
        (base / "outside").mkdir()
        self.outside = base / "outside" / "pwned.txt"
        self.cache_file = task_cache / "pwned.txt"
        self.inductor = base / "compile-cache" / "inductor"
        self.inductor.mkdir(parents=True)
        self.workdir = base / "task"
        self.workdir.mkdir()
        task = ROOT / "evolve" / "task"
        train = (task / "train.py").read_text()
        assert STOP_LINE in train, "the default train.py's stopping rule changed; update this test"
        train = train.replace(STOP_LINE, f"    if step >= {FIXED_STEPS}:  # the test's fixed number of steps\n")
        listener = Listener()
        try:
            prelude = (f"PORT = {listener.port}\nOUTSIDE = {str(self.outside)!r}\nCACHE = {str(task_cache)!r}\n"
                       f"DRIVER = {os.getpid()}\n") + HOSTILE
            (self.workdir / "train.py").write_text(prelude + train)
            (self.workdir / "prepare.py").write_text((task / "prepare.py").read_text())
            # A budget far beyond the run keeps the LR schedule at 1.0: the fixed steps are then
            # deterministic, so both modes must score exactly the same.
            self.result = run_fitness(
                self.workdir, budget_s=100000, grace_s=0, log_path=base / "run.log", seed=5, num_threads=1,
                sandbox=mode, extra_env={"HOME": str(self.home), "EVOLVE_CACHE_DIR": str(task_cache),
                                         "TORCHINDUCTOR_CACHE_DIR": str(self.inductor)})
        finally:
            listener.close()
        self.received = listener.received
        self.log = Path(self.result.log_path).read_text()
        self.attempts = {}
        for line in self.log.splitlines():
            if line.startswith("HOSTILE "):
                entry = json.loads(line[len("HOSTILE "):])
                self.attempts[entry["what"]] = entry
        self.home_file = self.home / "pwned.txt"
        self.home_written = self.home_file.exists()
        self.outside_written = self.outside.exists()
        self.cache_written = self.cache_file.exists()
        self.cache_file.unlink(missing_ok=True)   # the shared data cache stays as it was


_RUNS: dict[str, HostileRun] = {}


def _hostile(mode: str, tmp_path_factory, task_cache) -> HostileRun:
    if mode not in _RUNS:
        _RUNS[mode] = HostileRun(mode, tmp_path_factory.mktemp(f"hostile-{mode}"), task_cache)
    return _RUNS[mode]


@pytest.fixture(scope="module", params=MODES)
def run(request, tmp_path_factory, task_cache) -> HostileRun:
    return _hostile(request.param, tmp_path_factory, task_cache)


def test_candidate_still_trains_and_scores(run):
    assert run.result.status is Status.OK, (run.result, run.log[-3000:])
    assert run.result.metrics["num_steps"] == FIXED_STEPS
    assert 0 < run.result.val_bpb < 20
    assert len(run.attempts) == 8, run.attempts  # every attempt ran and reported


def test_reading_aws_credentials_in_home(run):
    if run.mode == "bwrap":
        assert not run.attempts["credentials"]["ok"] and "No such file" in run.attempts["credentials"]["result"]
        assert AWS_SECRET not in run.log
    else:
        assert run.attempts["credentials"]["ok"] and AWS_SECRET in run.log


def test_connecting_to_a_local_port(run):
    if run.mode == "bwrap":
        assert run.received == [] and not run.attempts["network"]["ok"]
    else:
        assert run.received == [b"exfiltrated"] and run.attempts["network"]["ok"]


def test_writing_into_home(run):
    # sandboxed, HOME is a private tmpfs at the same path: the write succeeds there and vanishes
    assert run.home_written is (run.mode == "none")
    assert (run.home / ".aws" / "credentials").read_text().endswith(f"{AWS_SECRET}\n")


def test_writing_outside_the_worktree(run):
    assert run.outside_written is (run.mode == "none")
    assert run.attempts["outside"]["ok"] is (run.mode == "none")


def test_writing_into_the_data_cache(run):
    assert run.cache_written is (run.mode == "none")
    if run.mode == "bwrap":
        assert "Read-only file system" in run.attempts["data cache"]["result"]


def test_compile_cache_stays_writable_and_kept(run):
    assert (run.inductor / "kept.txt").read_text() == "pwned"


def test_seeing_other_processes(run):
    seen = run.attempts["processes"]["result"]
    if run.mode == "bwrap":
        assert seen <= 3, seen  # bwrap's init, train.py (and at most one helper)
        assert not run.attempts["driver environ"]["ok"]  # the driver's /proc entry does not exist
    else:
        assert seen > 3 and run.attempts["driver environ"]["ok"]


@needs_bwrap
def test_score_is_the_same_with_and_without_the_sandbox(tmp_path_factory, task_cache):
    with_sandbox, without = (_hostile(m, tmp_path_factory, task_cache) for m in ("bwrap", "none"))
    assert with_sandbox.result.status is Status.OK and without.result.status is Status.OK
    assert with_sandbox.result.val_bpb == without.result.val_bpb


# --- modes, network, errors ------------------------------------------------------------------------

def _probe_task(tmp_path: Path, listener: Listener) -> Path:
    wd = tmp_path / "task"
    wd.mkdir()
    (wd / "prepare.py").write_text("# no evaluator\n")
    (wd / "train.py").write_text(
        "import os, socket\n"
        f"socket.create_connection(('127.0.0.1', {listener.port}), timeout=2).sendall(b'hello')\n"
        "print('---')\nprint('val_bpb: 1.0')\n")
    return wd


@needs_bwrap
def test_network_true_keeps_the_network(tmp_path):
    listener = Listener()
    try:
        wd = _probe_task(tmp_path, listener)
        blocked = run_fitness(wd, budget_s=5, grace_s=5, log_path=tmp_path / "a.log", sandbox="bwrap")
        allowed = run_fitness(wd, budget_s=5, grace_s=5, log_path=tmp_path / "b.log", sandbox="bwrap", network=True)
    finally:
        listener.close()
    assert blocked.status is Status.CRASH and "Connection refused" in blocked.reason  # its own loopback only
    assert allowed.status is Status.OK and listener.received == [b"hello"]


def test_bwrap_mode_fails_clearly_where_bwrap_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "BWRAP", "bwrap-not-installed-here")
    wd = tmp_path / "task"
    wd.mkdir()
    (wd / "train.py").write_text("import os\nprint('---')\nprint(f'val_bpb: {len(os.listdir(\"/proc\"))}')\n")
    with pytest.raises(sandbox.SandboxUnavailable) as err:
        run_fitness(wd, budget_s=5, grace_s=5, log_path=tmp_path / "run.log", sandbox="bwrap")
    message = str(err.value)
    assert "task.sandbox=bwrap" in message and "not installed" in message
    assert "apt install bubblewrap" in message and "task.sandbox=none" in message
    # auto goes on unsandboxed (the run sees the machine's /proc), and says so at start
    r = run_fitness(wd, budget_s=5, grace_s=5, log_path=tmp_path / "run.log", sandbox="auto")
    assert r.status is Status.OK and r.val_bpb > 20
    assert "NOT sandboxed" in sandbox.notice("auto") and "pacman -S bubblewrap" in sandbox.notice("auto")
    assert sandbox.notice("none") is None
    with pytest.raises(ValueError, match="expected one of auto, bwrap, none"):
        sandbox.resolve("docker")


def test_evolve_refuses_to_start_with_sandbox_bwrap_where_it_cannot_run(tmp_path):
    bin_dir = tmp_path / "bin"   # a PATH with git but no bwrap
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip())
    done = subprocess.run([sys.executable, "-m", "evolve", "task.sandbox=bwrap", f"run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": str(bin_dir)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: task.sandbox=bwrap, but bwrap is not installed" in done.stderr
    assert not (tmp_path / "run" / "journal.jsonl").exists()


def test_config_knobs_name_their_allowed_values():
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from evolve.config import Config, ConfigError, Sandbox, validate
    from island.actor import IslandSettings

    cfg = OmegaConf.structured(Config)
    assert cfg.task.sandbox == Sandbox.auto and cfg.task.network is False and list(cfg.task.sandbox_read_only) == []
    with pytest.raises(ValidationError, match=r"Invalid value 'docker', expected one of \[auto, bwrap, none\]"):
        cfg.task.sandbox = "docker"
    cfg.task.sandbox_read_only = ["relative/data"]
    with pytest.raises(ConfigError, match=r"task.sandbox_read_only=\['relative/data'\] is not allowed; "
                                          r"expected a list of absolute paths"):
        validate(cfg, 1)
    cfg.task.sandbox, cfg.task.sandbox_read_only = Sandbox.bwrap, ["~/.cache/autoresearch"]
    validate(cfg, 1)
    # what reaches the islands (through Ray) is plain values
    settings = IslandSettings(budget_s=1, grace_s=1, pinned_prepare_sha256="x", log_dir="l", pid_dir="p",
                              sandbox=cfg.task.sandbox, network=cfg.task.network,
                              sandbox_read_only=cfg.task.sandbox_read_only)
    assert type(settings.sandbox) is str and settings.sandbox == "bwrap"
    assert settings.sandbox_read_only == ("~/.cache/autoresearch",)


@needs_bwrap
def test_the_sandbox_dies_with_its_supervisor(tmp_path):
    """SIGKILL of the supervisor, with nobody left to sweep (no run_fitness around it): bwrap has
    PDEATHSIG, what is inside has --die-with-parent, and the PID namespace goes with its init."""
    import time

    from island.environment import scrubbed_env
    from island.fitness import SUPERVISOR
    from island.supervise import is_alive
    from tests.test_fitness import RUN_VAR, _processes_of, _wait_for

    wd = tmp_path / "task"
    wd.mkdir()
    (wd / "train.py").write_text("import subprocess, time\n"
                                 "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
                                 "open('started', 'w').close()\ntime.sleep(1000)\n")
    argv, env = sandbox.wrap([sys.executable, "train.py"], workdir=wd, env=scrubbed_env(extra={RUN_VAR: "orphaned"}),
                             python=sys.executable)
    sup = subprocess.Popen([sys.executable, "-I", "-S", SUPERVISOR, "--deadline", "60", "--", *argv], cwd=wd, env=env,
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: (wd / "started").exists()
                         and any("sleep 1000" in c for c in _processes_of("orphaned").values()), 10)
        victims = [p for p in _processes_of("orphaned") if p != sup.pid]
        assert len(victims) >= 4  # bwrap, its init, train.py, sleep
        t0 = time.monotonic()
        sup.kill()
        sup.wait()
        assert _wait_for(lambda: not any(is_alive(p) for p in victims), 5), [p for p in victims if is_alive(p)]
        assert time.monotonic() - t0 < 5
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
