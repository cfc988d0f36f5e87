"""Fitness-run supervisor: run one command, and leave no process behind.

    python -I -S island/supervise.py --deadline 330 [--pidfile F] [--status-fd N]
                                     [--parent-pid P] [--max-memory-mb M] [--settle-s S] -- python train.py
    python -m island.supervise ...   (same thing; island.fitness uses BOOTSTRAP below)

What it guarantees:
  * the command runs in a new session (own process group), stdin/stdout/stderr inherited;
  * this process is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so every orphaned
    descendant, including ones that called setsid() and ones whose parent already exited, is
    reparented here and stays findable through /proc ppid links;
  * at the deadline, on SIGTERM/SIGINT/SIGHUP, when its own parent dies (PR_SET_PDEATHSIG), and
    also after the command exits normally, every descendant is SIGKILLed and reaped;
  * the command itself gets PR_SET_PDEATHSIG=SIGKILL, so even a SIGKILL of the supervisor takes it
    down;
  * with --max-memory-mb, the command gets RLIMIT_DATA (soft and hard) of that many MiB before
    exec: allocations past it fail with ENOMEM (Python: MemoryError). Per process, inherited by
    what it starts; not for CUDA processes (use a cgroup there);
  * with --settle-s, what is still running when the command exits gets that long to end by itself
    before it is killed: bwrap (island/sandbox.py) exits as soon as the sandbox's init reports the
    command's status, and its init then ends, taking the whole PID namespace with it;
  * the outcome goes to --status-fd as one JSON line (``result {...}``); the exit status mirrors the
    command's (128+N for signal N) and is 124 when the deadline killed it.

Standard library only, no torch: it starts in a few milliseconds and then sleeps in sigtimedwait.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` would import enum, ~4 ms of start-up
import ctypes
import os
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

EXIT_TIMEOUT = 124  # like timeout(1)
EXIT_USAGE = 125
EXIT_EXEC_FAILED = 127

SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}
WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# Signals a parent (Python, nohup, Ray) may have set to SIG_IGN; SIG_IGN survives exec, so the child
# puts them back to their defaults.
RESET_IN_CHILD = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGCHLD,
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)

_libc = None


def _prctl(option: int, arg: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}) failed: {os.strerror(err)}")


def to_json(obj) -> str:
    """JSON for dicts/lists of str, int, float, bool and None (the json module costs ~3 ms to import)."""
    if obj is None:
        return "null"
    if obj is True or obj is False:
        return "true" if obj else "false"
    if isinstance(obj, (int, float)):
        return repr(obj) if obj == obj and obj not in (float("inf"), float("-inf")) else "null"
    if isinstance(obj, str):
        out = []
        for c in obj:
            if c in '"\\':
                out.append("\\" + c)
            elif " " <= c < "\x7f":
                out.append(c)
            else:  # \uXXXX, as a surrogate pair beyond the BMP
                units = c.encode("utf-16-be")
                out.extend("\\u%02x%02x" % (units[i], units[i + 1]) for i in range(0, len(units), 2))
        return '"' + "".join(out) + '"'
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{to_json(str(k))}: {to_json(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(to_json(v) for v in obj) + "]"
    return to_json(str(obj))


# ---------------------------------------------------------------------------------------------
# /proc helpers (also used by island.fitness for its last-resort sweeps)


def proc_stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, pgrp, session, starttime) of a process, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19])


def process_table() -> dict[int, tuple[str, int, int, int, int]]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                table[int(name)] = st
    return table


def descendants(root: int, table: dict[int, tuple[str, int, int, int, int]] | None = None) -> list[int]:
    """Every process below ``root`` by ppid links (zombies included)."""
    if table is None:
        table = process_table()
    children: dict[int, list[int]] = {}
    for pid, st in table.items():
        children.setdefault(st[1], []).append(pid)
    out: list[int] = []
    stack = [root]
    while stack:
        for c in children.get(stack.pop(), ()):
            out.append(c)
            stack.append(c)
    return out


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


# ---------------------------------------------------------------------------------------------


class Supervisor:
    def __init__(self, argv: list[str], deadline_s: float, pidfile: str | None, status_fd: int | None,
                 parent_pid: int | None, max_memory_mb: int | None = None, settle_s: float = 0.0):
        self.argv = argv
        self.settle_s = settle_s
        self.max_memory_mb = max_memory_mb
        self._setrlimit = None
        if max_memory_mb is not None:
            import resource  # a small C module, imported only when a limit is asked for

            limit = int(max_memory_mb) << 20
            self._setrlimit = lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        self.deadline_s = deadline_s
        self.pidfile = pidfile
        self.status_fd = status_fd
        self.parent_pid = parent_pid
        self.pid = os.getpid()
        self.child: int | None = None
        self.child_status: int | None = None  # raw wait status

    # -- bookkeeping --------------------------------------------------------------------------
    def _status(self, line: str) -> None:
        if self.status_fd is None:
            return
        try:
            os.write(self.status_fd, (line + "\n").encode())
        except OSError:
            pass  # the parent is gone; nobody to tell

    def _write_pidfile(self) -> None:
        if not self.pidfile:
            return
        own = proc_stat(self.pid)
        kid = proc_stat(self.child) if self.child else None
        info = {
            "supervisor_pid": self.pid,
            "supervisor_pgid": os.getpgid(0),
            "supervisor_sid": os.getsid(0),
            "supervisor_starttime": own[4] if own else None,
            "child_pid": self.child,
            "child_pgid": self.child,
            "child_sid": self.child,
            "child_starttime": kid[4] if kid else None,
            "argv": self.argv,
            "cwd": os.getcwd(),
            "deadline_s": self.deadline_s,
            "started_at": time.time(),
        }
        tmp = f"{self.pidfile}.{self.pid}.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(to_json(info))
            os.replace(tmp, self.pidfile)
        except OSError as e:
            sys.stderr.write(f"[supervise] could not write pidfile {self.pidfile} ({e})\n")

    def _remove_pidfile(self) -> None:
        if self.pidfile:
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child_status = status

    # -- the child ----------------------------------------------------------------------------
    def _spawn(self) -> int:
        pid = os.fork()
        if pid == 0:  # child: never returns
            try:
                os.setsid()
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != self.pid:
                    os._exit(EXIT_EXEC_FAILED)
                for s in RESET_IN_CHILD:
                    signal.signal(s, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                if self._setrlimit is not None:
                    self._setrlimit()
                os.execvp(self.argv[0], self.argv)
            except BaseException as e:  # noqa: BLE001 - report anything, then die
                try:
                    os.write(2, f"[supervise] cannot execute {self.argv[0]!r}: {e}\n".encode())
                finally:
                    os._exit(EXIT_EXEC_FAILED)
        return pid

    def kill_tree(self, wait_s: float = 10.0) -> tuple[int, list[int]]:
        """SIGKILL and reap every descendant; returns (how many were signalled, pids left)."""
        killed: set[int] = set()
        if self.child is not None and self.child_status is None:
            try:
                os.killpg(self.child, signal.SIGKILL)  # the child's whole group at once
                killed.add(self.child)
            except OSError:
                pass
        t_end = time.monotonic() + wait_s
        while True:
            self._reap()
            table = process_table()
            desc = descendants(self.pid, table)
            if not desc:
                return len(killed), []
            for p in desc:
                if table[p][0] != "Z":
                    try:
                        os.kill(p, signal.SIGKILL)
                        killed.add(p)
                    except OSError:
                        pass
            if time.monotonic() > t_end:
                return len(killed), desc
            # Wait for a SIGCHLD (blocked, so it stays pending) or a short tick: zombies of
            # grandchildren arrive here only once their own parent has died.
            signal.sigtimedwait({signal.SIGCHLD}, 0.005)

    def settle(self) -> None:
        """Wait up to settle_s for the descendants to end by themselves (reaping as they do)."""
        t_end = time.monotonic() + self.settle_s
        while True:
            self._reap()
            table = process_table()
            if not any(table[p][0] != "Z" for p in descendants(self.pid, table)):
                return
            remaining = t_end - time.monotonic()
            if remaining <= 0:
                return
            signal.sigtimedwait({signal.SIGCHLD}, min(remaining, 0.005))

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> int:
        start = time.monotonic()
        deadline = start + self.deadline_s
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # never SIG_IGN: we need the wait statuses
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        stop_signal: int | None = None
        try:
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            stop_signal = signal.SIGTERM  # parent died before we could ask to be told

        timed_out = False
        t_child = time.monotonic()
        if stop_signal is None:
            self.child = self._spawn()
            self._write_pidfile()
            self._status(f"child {self.child}")
            while True:
                self._reap()
                if self.child_status is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                info = signal.sigtimedwait(WATCHED, remaining)
                if info is not None and info.si_signo in STOP_SIGNALS:
                    stop_signal = info.si_signo
                    break
        child_wall = time.monotonic() - t_child

        if self.settle_s > 0 and self.child_status is not None and stop_signal is None:
            self.settle()
        killed, leftover = self.kill_tree()
        self._reap()

        rc: int | None = None
        if self.child_status is not None:
            rc = os.waitstatus_to_exitcode(self.child_status)
        if timed_out:
            sys.stderr.write(
                f"\n[supervise] deadline of {self.deadline_s:g} s reached, killed {killed} process(es)\n")
        elif stop_signal is not None:
            sys.stderr.write(
                f"\n[supervise] got {SIGNAL_NAMES[stop_signal]}, killed {killed} process(es)\n")
        elif killed:
            sys.stderr.write(f"\n[supervise] killed {killed} leftover process(es) after the command exited\n")
        if leftover:
            sys.stderr.write(f"\n[supervise] could not kill {leftover}\n")
        sys.stderr.flush()

        self._status("result " + to_json({
            "returncode": rc,
            "timed_out": timed_out,
            "stop_signal": SIGNAL_NAMES[stop_signal] if stop_signal else None,
            "child_wall_s": round(child_wall, 6),
            "killed": killed,
            "leftover": leftover,
        }))
        self._remove_pidfile()
        if timed_out:
            return EXIT_TIMEOUT
        if stop_signal is not None:
            return 128 + stop_signal
        if rc is None:
            return EXIT_USAGE
        return rc if rc >= 0 else 128 - rc


def _parse(argv: list[str]) -> tuple[list[str], float, str | None, int | None, int | None, int | None, float]:
    usage = ("usage: supervise.py --deadline SECONDS [--pidfile PATH] [--status-fd N] "
             "[--parent-pid PID] [--max-memory-mb MIB] [--settle-s SECONDS] -- COMMAND [ARGS...]")
    if "--" not in argv:
        raise SystemExit(usage)
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    if not cmd or len(opts) % 2:
        raise SystemExit(usage)
    values = dict(zip(opts[::2], opts[1::2]))
    unknown = set(values) - {"--deadline", "--pidfile", "--status-fd", "--parent-pid", "--max-memory-mb",
                             "--settle-s"}
    if unknown or "--deadline" not in values:
        raise SystemExit(usage)
    status_fd = int(values["--status-fd"]) if "--status-fd" in values else None
    parent = int(values["--parent-pid"]) if "--parent-pid" in values else None
    memory = int(values["--max-memory-mb"]) if "--max-memory-mb" in values else None
    if memory is not None and memory <= 0:
        raise ValueError("--max-memory-mb must be positive")
    settle = float(values.get("--settle-s", 0.0))
    if not settle >= 0:
        raise ValueError("--settle-s must be >= 0")
    return cmd, float(values["--deadline"]), values.get("--pidfile"), status_fd, parent, memory, settle


def main(argv: list[str] | None = None) -> int:
    try:
        cmd, deadline, pidfile, status_fd, parent, memory, settle = _parse(sys.argv[1:] if argv is None else argv)
    except (SystemExit, ValueError) as e:
        sys.stderr.write(f"{e}\n")
        return EXIT_USAGE
    if status_fd is not None:
        os.set_inheritable(status_fd, False)  # the command must not hold our status pipe open
    return Supervisor(cmd, deadline, pidfile, status_fd, parent, memory, settle).run()


def exit_now(code: int) -> None:
    """Exit without the interpreter's tear-down (a few ms): nothing here needs finalising."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


# How run_fitness starts this file: the module is imported rather than run as a script, so its
# bytecode is cached (-I ignores PYTHONDONTWRITEBYTECODE), and -S skips site-packages.
BOOTSTRAP = "import sys; sys.path.append({dir!r}); import supervise; supervise.exit_now(supervise.main())"


if __name__ == "__main__":
    exit_now(main())
