"""The fitness-run sandbox: train.py runs inside bubblewrap (``bwrap``) and sees only what it needs.

    if sandbox.resolve("auto"):                       # bwrap works here (probed once per process)
        argv, env = sandbox.wrap([python, "train.py"], workdir=..., env=env, python=python)

What a sandboxed run gets (an allowlist on an empty root, not a view of the whole machine):
  * the system read-only: /usr, /bin, /sbin, /lib*, /etc, /opt, /nix where they exist, and /sys;
  * the interpreter read-only: its prefixes (a venv, and the installation it was made from, which
    may live under HOME or in a project folder) and every entry of its import path and PYTHONPATH;
  * the working directory (the island's checkout) writable, and the compile caches named by
    TORCHINDUCTOR_CACHE_DIR / TRITON_CACHE_DIR writable (created first), so they stay warm;
  * the task's data cache read-only: EVOLVE_CACHE_DIR, else $XDG_CACHE_HOME/evolve, else
    ~/.cache/evolve (the packaged task's rule), plus any ``read_only`` paths the caller names;
  * a private /tmp and an empty, private HOME at the same path (the user's files stay hidden; what
    a run writes there is gone after it); TMPDIR points at /tmp;
  * a fresh /dev with the usual character devices, plus the GPUs (/dev/nvidia*, /dev/dri, /dev/kfd)
    as they are: CUDA_VISIBLE_DEVICES still selects among them;
  * its own PID namespace (its /proc shows only its own processes), IPC namespace and, unless
    ``network`` is true, its own network namespace with only a loopback device (no route out, and
    none to the host's local services such as Ray's ports);
  * no capabilities (``--cap-drop ALL``: a root user keeps none inside), and death with its parent
    (``--die-with-parent``; the supervisor sets PDEATHSIG on bwrap itself as well).

bwrap runs in the supervisor's child session (no ``--new-session``), so the supervisor's group kill
and its /proc-based sweep still reach everything inside. File descriptors stay inherited (the
metric capture's descriptor, stdout/stderr to the log). bwrap reports a command killed by signal N
as exit status 128 + N; ``signal_of`` maps it back.
"""
from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence

MODES = ("auto", "bwrap", "none")
BWRAP = "bwrap"

# Read-only system folders (or the symlinks that stand for them on a merged-/usr system).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix", "/sys")
GPU_DEVICES = ("/dev/nvidia*", "/dev/dri", "/dev/kfd")
# Environment variables naming compile caches a run may write to (kept across runs by the island).
WRITABLE_CACHE_VARS = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
SANDBOX_TMP = "/tmp"
FALLBACK_HOME = "/tmp/home"  # when HOME is unset or names a system folder

HOW_TO_INSTALL = ("install bubblewrap (Debian/Ubuntu: `sudo apt install bubblewrap`; Fedora: "
                  "`sudo dnf install bubblewrap`; Arch: `sudo pacman -S bubblewrap`); it needs unprivileged "
                  "user namespaces, which Ubuntu 23.10+ restricts with AppArmor (see the README, \"The sandbox\")")
NOT_ISOLATED = ("train.py can read and write every file the user can (~/.ssh, ~/.aws, other projects), "
                "reach the network and local services, and see (and read the memory of) the user's other "
                "processes, the driver's included")

# What the interpreter needs, printed as JSON by the interpreter itself (once per interpreter).
_QUERY = ("import json, sys; print(json.dumps([sys.prefix, sys.exec_prefix, sys.base_prefix, "
          "sys.base_exec_prefix, sys.executable] + sys.path))")


class SandboxUnavailable(RuntimeError):
    """task.sandbox=bwrap on a machine where bwrap cannot make a sandbox."""


@functools.lru_cache(maxsize=None)
def probe(bwrap: str | None = None) -> str | None:
    """None when bwrap (default: BWRAP) can make the sandbox fitness runs use (tried once per process
    and name, a few ms), else why not, in one line."""
    bwrap = bwrap or BWRAP
    path = shutil.which(bwrap)
    if path is None:
        return f"{bwrap} is not installed (not on PATH)"
    try:
        done = subprocess.run([path, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                               "--unshare-pid", "--unshare-ipc", "--unshare-net", "--die-with-parent",
                               "--cap-drop", "ALL", "true"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{path} could not run ({e})"
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split())[:300] or f"exit {done.returncode}"
        return f"{path} cannot create a sandbox here: {why}"
    return None


def normalize_mode(mode: object) -> str:
    """The mode as one of MODES (accepts the config's enum); ValueError names the allowed values."""
    value = str(getattr(mode, "value", mode))
    if value not in MODES:
        raise ValueError(f"sandbox={value!r} is not allowed; expected one of {', '.join(MODES)}")
    return value


def resolve(mode: object) -> bool:
    """Whether fitness runs are sandboxed: ``none`` never, ``auto`` when bwrap works here, ``bwrap``
    always (SandboxUnavailable, saying why and how to install it, when it cannot run)."""
    mode = normalize_mode(mode)
    if mode == "none":
        return False
    reason = probe(BWRAP)
    if reason is None:
        return True
    if mode == "bwrap":
        raise SandboxUnavailable(f"task.sandbox=bwrap, but {reason}; {HOW_TO_INSTALL}; or set task.sandbox=auto "
                                 "(sandbox when possible) or task.sandbox=none")
    return False


def notice(mode: object) -> str | None:
    """What to print once at start: for ``auto`` without a working bwrap, what is not isolated and how
    to fix it; None otherwise (SandboxUnavailable for ``bwrap``, as resolve)."""
    if resolve(mode) or normalize_mode(mode) == "none":
        return None
    return (f"fitness runs are NOT sandboxed ({probe(BWRAP)}): {NOT_ISOLATED}. To isolate them, {HOW_TO_INSTALL}. "
            "task.sandbox=none silences this; task.sandbox=bwrap makes it an error.")


def signal_of(returncode: int | None) -> int | None:
    """The signal that killed a command run under bwrap (exit status 128 + N), else None."""
    if returncode is None or returncode <= 128:
        return None
    number = returncode - 128
    return number if number in {int(s) for s in signal.valid_signals()} else None


@functools.lru_cache(maxsize=64)
def interpreter_paths(python: str) -> tuple[str, ...]:
    """Folders and files the interpreter needs to start and import: its prefixes and import path
    (asked of the interpreter itself, once per interpreter and process), and the executable."""
    found = [python, os.path.realpath(python)]
    try:
        done = subprocess.run([python, "-c", _QUERY], capture_output=True, text=True, timeout=120, cwd="/",
                              stdin=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME")})
        if done.returncode == 0:
            found += [p for p in json.loads(done.stdout.strip().splitlines()[-1]) if isinstance(p, str)]
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        pass  # not a Python we can ask: the run will say what it misses
    return tuple(p for p in found if p and os.path.isabs(p))


def task_cache_dir(env: Mapping[str, str]) -> str:
    """The packaged task's data cache as prepare.py finds it from the run's environment."""
    if env.get("EVOLVE_CACHE_DIR"):
        return env["EVOLVE_CACHE_DIR"]
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "evolve")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _usable_home(home: str | None) -> bool:
    if not home or not os.path.isabs(home):
        return False
    home = os.path.normpath(home)
    return home not in ("/", SANDBOX_TMP) and not any(_under(home, s) for s in (*SYSTEM_PATHS, "/proc", "/dev"))


def _system_args() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _device_args() -> list[str]:
    args: list[str] = []
    for pattern in GPU_DEVICES:
        for path in sorted(glob.glob(pattern)):
            args += ["--dev-bind", path, path]
    return args


def _binds(read_only: Iterable[str], writable: Iterable[str], home: str | None) -> list[str]:
    """--ro-bind / --bind arguments, parents before children, without binds a system folder already
    gives; every path is bound at its own name and, when different, at its real path."""
    modes: dict[str, tuple[str, bool]] = {}   # destination -> (source, writable)
    for paths, rw in ((read_only, False), (writable, True)):
        for path in paths:
            path = os.path.abspath(os.path.expanduser(str(path)))
            source = os.path.realpath(path)
            if not os.path.exists(source) or _under(path, "/proc") or _under(path, "/dev"):
                continue
            for dest in {path, source}:
                if rw or dest not in modes:  # writable wins over read-only for the same place
                    modes[dest] = (source, rw)
    # Folders already mounted in the sandbox: the system read-only; /tmp and HOME private (so a read-only
    # bind under them is needed).
    mounted: dict[str, bool] = {p: False for p in SYSTEM_PATHS if os.path.isdir(p) and not os.path.islink(p)}
    mounted[SANDBOX_TMP] = True
    if home:
        mounted[home] = True
    args: list[str] = []
    for dest in sorted(modes, key=lambda p: (p.count("/"), p)):
        source, rw = modes[dest]
        parents = [m for m in mounted if _under(dest, m)]
        nearest = max(parents, key=len) if parents else None
        if not rw and nearest is not None and not mounted[nearest]:
            continue  # a read-only folder already shows it
        args += ["--bind" if rw else "--ro-bind", source, dest]
        mounted[dest] = rw
    return args


def wrap(argv: Sequence[str], *, workdir: str | os.PathLike, env: Mapping[str, str], python: str,
         network: bool = False, read_only: Iterable[str | os.PathLike] = (),
         writable: Iterable[str | os.PathLike] = ()) -> tuple[list[str], dict[str, str]]:
    """(the bwrap command that runs ``argv`` in ``workdir`` sandboxed, the environment to start it with).

    ``read_only`` / ``writable``: more paths the run may read / write (missing ones are skipped; the
    interpreter, PYTHONPATH, the task's data cache and the compile caches are added here). HOME is
    never shown as a whole: import-path entries that are HOME or above it are left out.
    """
    workdir = os.path.abspath(workdir)
    env = dict(env)
    home = os.path.normpath(env["HOME"]) if _usable_home(env.get("HOME")) else None
    python = shutil.which(python, path=env.get("PATH")) or python
    ro = [*interpreter_paths(python), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    # never HOME as a whole, nor anything above it (the system folders are there already)
    ro = [p for p in ro if not (home and _under(home, os.path.abspath(p))) and os.path.abspath(p) != "/"]
    ro += [task_cache_dir(env), *map(str, read_only)]
    rw = [workdir, *map(str, writable)]
    for name in WRITABLE_CACHE_VARS:
        if env.get(name):
            os.makedirs(env[name], exist_ok=True)
            rw.append(env[name])
    cmd = [shutil.which(BWRAP) or BWRAP, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"]
    if not network:
        cmd.append("--unshare-net")
    cmd += _system_args()
    cmd += ["--proc", "/proc", "--dev", "/dev", *_device_args(), "--tmpfs", SANDBOX_TMP]
    if home:
        cmd += ["--tmpfs", home]
    else:
        cmd += ["--dir", FALLBACK_HOME]
        env["HOME"] = FALLBACK_HOME
    if network:
        resolv = os.path.realpath("/etc/resolv.conf")
        if os.path.exists(resolv) and not any(_under(resolv, s) for s in SYSTEM_PATHS):
            ro.append(resolv)  # e.g. systemd-resolved's stub under /run
    cmd += _binds(ro, rw, home)
    cmd += ["--chdir", workdir, "--", *argv]
    env["TMPDIR"] = SANDBOX_TMP
    return cmd, env


if __name__ == "__main__":  # python -m island.sandbox: does the sandbox work here?
    why = probe(BWRAP)
    print("bwrap sandbox: works" if why is None else f"bwrap sandbox: unavailable ({why}); {HOW_TO_INSTALL}")
    sys.exit(0 if why is None else 1)
