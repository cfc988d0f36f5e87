"""The fitness run: ``python train.py`` in a worktree, under a hard deadline, scored by its summary.

    result = run_fitness(worktree, budget_s=300, grace_s=60, log_path=".../run.log", seed=3)
    result.status, result.val_bpb, result.metrics, result.reason

The run goes through island/supervise.py (a stdlib-only process, a few ms to start) that puts
train.py in its own session, becomes a child subreaper so that nothing the run starts can escape
it, and SIGKILLs every descendant at budget_s + grace_s, when its parent (the island actor) dies,
and when train.py exits leaving something behind. This module adds a last-resort backstop in case
the supervisor itself is killed or stuck, a helper that kills the runs a crashed engine left
behind (``kill_stale``), and the classification of the outcome. Where bubblewrap works, train.py
runs inside a sandbox by default (island/sandbox.py): the supervisor starts bwrap, bwrap starts
train.py, and the supervisor's kill, pidfile and memory limit act on bwrap and everything inside.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from island import curve as _curve
from island import metric as _metric
from island import sandbox as _sandbox
from island import supervise as _sv
from island.environment import SEED_ENV, scrubbed_env
from island.summary import Status, _short, classify, log_tail, parse_summary, read_log

__all__ = ["FitnessResult", "Status", "run_fitness", "kill_stale", "SUPERVISOR"]

SUPERVISOR = str(Path(_sv.__file__).resolve())
_SUPERVISOR_CMD = [sys.executable, "-I", "-S", "-c", _sv.BOOTSTRAP.format(dir=str(Path(SUPERVISOR).parent))]
# How long past the supervisor's own deadline we wait before killing the supervisor itself.
BACKSTOP_S = 15.0
# How long the sandbox's own init gets to end (taking its PID namespace with it) once train.py exited.
SANDBOX_SETTLE_S = 0.5
# How often a run with an early-stop rule has its log read and its curve checked.
CURVE_POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class FitnessResult:
    status: Status
    val_bpb: float | None
    metrics: dict[str, float]
    wall_s: float
    reason: str
    log_path: str
    log_tail: str
    returncode: int | None
    curve: tuple[tuple[int, float, float], ...] = ()   # (step, fraction of the budget, loss), thinned
    stopped_at: float | None = None                     # fraction of the budget where an early stop hit

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def rejected(cls, reason: str, log_path: str | os.PathLike = "",
                 status: Status = Status.REJECTED) -> "FitnessResult":
        """The result of a candidate refused before it ran (by the guards, or over-budget)."""
        return cls(status, None, {}, 0.0, reason, str(log_path), "", None)


def _read_status_pipe(fd: int) -> tuple[int | None, dict[str, Any] | None]:
    """(train.py's pid, the supervisor's final report) from whatever it wrote to its status pipe."""
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    child_pid, report = None, None
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        if line.startswith("child "):
            child_pid = int(line.split()[1])
        elif line.startswith("result "):
            try:
                report = json.loads(line[len("result "):])
            except json.JSONDecodeError:
                pass
    return child_pid, report


def _wait(proc: subprocess.Popen, timeout: float) -> int:
    """Popen.wait(timeout) without its polling (sleeps of up to 50 ms): block on a pidfd."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return proc.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


def _kill_session(sid: int) -> int:
    """SIGKILL every process of session ``sid`` (the train.py session): a last resort for when the
    supervisor could not do its job. Descendants that started their own session escape this."""
    n = 0
    for pid, st in _sv.process_table().items():
        if st[3] == sid and st[0] != "Z" and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except OSError:
                pass
    return n


def _stop_supervisor(proc: subprocess.Popen, child_pid: int | None) -> None:
    """SIGTERM the supervisor (it kills its tree and exits); SIGKILL it and sweep if it will not."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
    if child_pid is not None:
        _kill_session(child_pid)


def run_fitness(
    workdir: str | os.PathLike,
    *,
    budget_s: float,
    grace_s: float,
    log_path: str | os.PathLike,
    seed: int = 0,
    extra_env: dict[str, str] | None = None,
    python: str = sys.executable,
    num_threads: int | None = None,
    pidfile: str | os.PathLike | None = None,
    script: str = "train.py",
    max_memory_mb: int | None = None,
    evaluator: str | None = "auto",
    seed_env: str = SEED_ENV,
    sandbox: str = "auto",
    network: bool = False,
    read_only: Sequence[str | os.PathLike] = (),
    writable: Sequence[str | os.PathLike] = (),
    curve_pattern: str | None = None,
    early_stop: _curve.EarlyStop | None = None,
) -> FitnessResult:
    """Run ``python train.py`` in ``workdir`` and score it.

    stdout and stderr go to ``log_path`` (truncated first). The whole process tree is SIGKILLed at
    ``budget_s + grace_s`` wall seconds after start. ``pidfile``, when given, holds the supervisor's
    and train.py's pids while the run lasts (see kill_stale). Never raises for a failing train.py;
    raises ValueError for a secret-looking ``extra_env`` name and OSError if the log cannot be opened.

    ``max_memory_mb``: RLIMIT_DATA of train.py and of everything it starts (per process), so an
    allocation past it fails (MemoryError, status oom). None: no limit. CPU only in practice: CUDA
    maps large private regions, use cgroups (or rely on CUDA OOM classification) on a GPU.

    ``evaluator``: the name of the task's evaluator function in prepare.py whose returned values are
    captured and checked against the printed val_bpb (island/metric.py); "auto" means
    ``evaluate_bpb`` when prepare.py defines it, and None turns the check off. A mismatch, or a
    val_bpb printed without any evaluation, is status ``metric-mismatch``.

    ``seed_env``: the variable that carries ``seed`` to train.py (task.seed_env).
    ``sandbox``: "auto" runs train.py inside bubblewrap when bwrap works on this machine, "bwrap"
    always (SandboxUnavailable when it cannot), "none" never; see island/sandbox.py for what the run
    then sees. ``network``: keep the host's network in the sandbox. ``read_only`` / ``writable``:
    more paths a sandboxed run may read / write besides its workdir, the interpreter, the task's
    data cache and the compile caches named in its environment.

    ``curve_pattern``: the regular expression that reads the step log's points (island/curve.py;
    None: the default, which reads ours and the anchor's); the result carries the thinned curve.
    ``early_stop``: a rule checked against the curve as it is printed; when it fires the run is
    stopped and its status is ``early-stopped`` (no score), with ``stopped_at`` the fraction reached.
    """
    workdir = Path(workdir)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    limit_s = float(budget_s) + float(grace_s)
    env = scrubbed_env(os.environ, extra_env, budget_s=budget_s, seed=seed, num_threads=num_threads, seed_env=seed_env)
    if evaluator == "auto":
        evaluator = _metric.evaluator_name(workdir)
    elif evaluator is not None:
        evaluator = _metric.evaluator_name(workdir, evaluator)
    sandboxed = _sandbox.resolve(sandbox)
    with contextlib.ExitStack() as stack:
        capture = None
        if evaluator is not None:
            capture = stack.enter_context(_metric.Capture(evaluator))
            env.update(capture.env(env))
        argv = [python, script]
        # A missing interpreter runs nothing, so there is nothing to sandbox: the supervisor reports it.
        sandboxed = sandboxed and shutil.which(python, path=env.get("PATH")) is not None
        if sandboxed:
            argv, env = _sandbox.wrap(argv, workdir=workdir, env=env, python=python, network=network,
                                      read_only=[*read_only, *([capture.dir] if capture else [])],
                                      writable=writable)
        return _run(workdir, env, limit_s, log_path, argv, pidfile, max_memory_mb, capture, sandboxed,
                    curve_pattern, early_stop)


def _watch(proc: subprocess.Popen, timeout: float, log_path: Path, rule: _curve.EarlyStop | None) -> str | None:
    """Waits for the supervisor like _wait; with a rule, reads the log as it grows and returns why
    the run should stop early as soon as the rule says so (the supervisor still runs then)."""
    if rule is None:
        _wait(proc, timeout)
        return None
    reader = _curve.CurveReader(rule.pattern)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    end = time.monotonic() + timeout
    with open(log_path, "rb") as log:
        while True:
            try:
                _wait(proc, max(0.0, min(CURVE_POLL_S, end - time.monotonic())))
                return None
            except subprocess.TimeoutExpired:
                if time.monotonic() >= end:
                    raise
            if reader.feed(decoder.decode(log.read())):
                why = rule.check(reader.points)
                if why:
                    return why


def _run(workdir: Path, env: dict[str, str], limit_s: float, log_path: Path, argv: list[str],
         pidfile: str | os.PathLike | None, max_memory_mb: int | None,
         capture: _metric.Capture | None, sandboxed: bool, curve_pattern: str | None = None,
         early_stop: _curve.EarlyStop | None = None) -> FitnessResult:
    rfd, wfd = os.pipe()
    cmd = [*_SUPERVISOR_CMD,
           "--deadline", repr(limit_s), "--status-fd", str(wfd), "--parent-pid", str(os.getpid())]
    if max_memory_mb is not None:
        cmd += ["--max-memory-mb", str(int(max_memory_mb))]
    if sandboxed:
        cmd += ["--settle-s", repr(SANDBOX_SETTLE_S)]
    if pidfile is not None:
        Path(pidfile).parent.mkdir(parents=True, exist_ok=True)
        cmd += ["--pidfile", str(pidfile)]
    cmd += ["--", *argv]

    proc = None
    child_pid = None
    backstop = False
    early = None
    try:
        with open(log_path, "wb") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(wfd,) if capture is None else (wfd, capture.fd), close_fds=True, start_new_session=True,
            )
        os.close(wfd)
        wfd = -1
        try:
            early = _watch(proc, limit_s + BACKSTOP_S, log_path, early_stop)
            if early:
                child_pid, _ = _read_status_pipe(rfd)
                _stop_supervisor(proc, child_pid)
        except subprocess.TimeoutExpired:  # the supervisor missed its own deadline: stuck or stopped
            backstop = True
            child_pid, _ = _read_status_pipe(rfd)
            _stop_supervisor(proc, child_pid)
        wall_s = time.monotonic() - t0
        pipe_child, report = _read_status_pipe(rfd)
        child_pid = child_pid or pipe_child
    except BaseException:
        # KeyboardInterrupt, an actor being cancelled, ...: never leave the run behind.
        if proc is not None:
            if child_pid is None:
                child_pid, _ = _read_status_pipe(rfd)
            _stop_supervisor(proc, child_pid)
        raise
    finally:
        if wfd >= 0:
            os.close(wfd)
        os.close(rfd)

    if report is None:
        # The supervisor died without reporting (SIGKILLed, or could not start): sweep what it
        # may have left, and fall back on its exit status.
        if child_pid is not None:
            _kill_session(child_pid)
        if pidfile is not None:
            try:
                os.unlink(pidfile)
            except OSError:
                pass
        returncode = None
        timed_out = backstop or wall_s >= limit_s
        stopped = None if timed_out else f"the supervisor exited with {proc.returncode} without a report"
    else:
        returncode = report.get("returncode")
        if sandboxed and _sandbox.signal_of(returncode):
            returncode = -_sandbox.signal_of(returncode)  # bwrap's 128 + N for "killed by signal N"
        timed_out = backstop or bool(report.get("timed_out"))
        stopped = None
        if report.get("stop_signal") and not timed_out:
            stopped = f"stopped from outside: the supervisor got {report['stop_signal']}"

    text = read_log(log_path)
    points = _curve.read_curve(text, curve_pattern)
    if early:   # our own stop, on the rule's word
        status, reason = Status.EARLY_STOPPED, early
    elif stopped:
        # Our own kill, not the run's fault and not an OOM: report it as such.
        status, reason = Status.CRASH, stopped
    else:
        status, reason = classify(returncode, text, timed_out, limit_s=limit_s)
    summary = parse_summary(text)
    metrics = {k: v for k, v in summary.items() if math.isfinite(v)}
    val_bpb = summary.get("val_bpb") if status is Status.OK else None
    if status is Status.OOM and max_memory_mb is not None:
        reason = _short(f"{reason} (memory limit: max_memory_mb={int(max_memory_mb)} per process)")
    if capture is not None and status is Status.OK:
        captured, refused = _metric.check(val_bpb, capture.read(), capture.evaluator)
        if refused:
            status, reason, val_bpb = Status.METRIC_MISMATCH, refused, None
        else:
            val_bpb = captured
    return FitnessResult(
        status=status,
        val_bpb=val_bpb,
        metrics=metrics,
        wall_s=wall_s,
        reason=reason,
        log_path=str(log_path),
        log_tail="" if status in (Status.OK, Status.EARLY_STOPPED) else log_tail(text),
        returncode=returncode,
        curve=tuple(_curve.thin(points)),
        stopped_at=points[-1][1] if early and points else None,
    )


def kill_stale(pidfile: str | os.PathLike, wait_s: float = 10.0) -> bool:
    """Kill the fitness run a pidfile describes, if it is still running; remove the pidfile.

    For an engine that restarts after a crash: runs it started may still hold a GPU. The
    supervisor is identified by pid *and* start time, so a recycled pid is never hit. It gets
    SIGTERM (it then kills its whole tree), then SIGKILL; train.py's session is swept after.
    Returns True when something was still running.
    """
    path = Path(pidfile)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    found = False
    sup = info.get("supervisor_pid")
    st = _sv.proc_stat(sup) if isinstance(sup, int) else None
    if st is not None and st[0] != "Z" and st[4] == info.get("supervisor_starttime"):
        found = True
        try:
            os.kill(sup, signal.SIGTERM)
        except OSError:
            pass
        t_end = time.monotonic() + wait_s
        while _sv.is_alive(sup) and time.monotonic() < t_end:
            time.sleep(0.02)
        if _sv.is_alive(sup):
            try:
                os.killpg(info.get("supervisor_pgid", sup), signal.SIGKILL)
            except OSError:
                pass
    child = info.get("child_sid")
    if isinstance(child, int):
        cst = _sv.proc_stat(child)
        # Sweep the session only if the supervisor was ours or the session leader is still the
        # process it started (same pid and start time).
        if found or (cst is not None and cst[4] == info.get("child_starttime")):
            found = (_kill_session(child) > 0) or found
    try:
        path.unlink()
    except OSError:
        pass
    return found
