"""python -m evolve [hydra overrides]: start or resume a run.

    python -m evolve +islands=4 run.max_experiments=100
    python -m evolve islands=1 selection=ratchet
    python -m evolve -m migration.interval=5,10,20      # multirun: one run dir per job

Exit codes (for a scheduler): 0 the run reached its limits; 1 it could not go on (run dir in use,
full disk, fewer than selection.min_baselines baselines succeeded or the limits came first with every
baseline failed, every island retired or none could start); 2 a bad config or a changed pinned
setting on resume; 130 after Ctrl-C and 143 after SIGTERM, both after a graceful stop (a Hydra
multirun stops its sweep there).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

if __name__ == "__main__":
    # Before anything starts (threads, Ray, git), and only when run as a program (never on import):
    # keys leave the environment for this process's memory (re-executing once, before the heavy
    # imports), so that no process a candidate can inspect holds them.
    from evolve.keys import withdraw_from_environment

    withdraw_from_environment()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from operators.keys import environment_with_keys  # noqa: E402

from .config import ConfigError, register, sandbox_notice, validate  # noqa: E402

register()

CPU_DEFAULT_ISLANDS = 2


def _default_islands(cfg: DictConfig) -> int:
    """One island per local GPU, or 2 without GPUs. On a cluster (ray.address) set islands yourself."""
    if cfg.ray.address:
        return CPU_DEFAULT_ISLANDS
    import torch

    return torch.cuda.device_count() or CPU_DEFAULT_ISLANDS


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    islands = _default_islands(cfg) if OmegaConf.is_missing(cfg, "islands") else int(cfg.islands)
    try:
        validate(cfg, islands)
        unsandboxed = sandbox_notice(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    OmegaConf.update(cfg, "run.dir", str(run_dir))
    if unsandboxed:
        print(f"[evolve] warning: {unsandboxed}", flush=True)
    elif cfg.task.sandbox != "none":
        network = "with" if cfg.task.network else "without"
        print(f"[evolve] fitness runs are sandboxed (bwrap, {network} network; see docs/safety.md)", flush=True)
    engine = None
    early_sigterm = []

    def on_early_sigterm(signum, frame):   # until the engine takes SIGTERM over (Engine.run)
        early_sigterm.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_early_sigterm)
    try:
        from .engine import Engine  # heavy imports (ray) only once the config is valid
        from .llm_choice import choose_llm

        from .fleet import NoIslandStarted
        from .lock import RunInUse

        llm = choose_llm(cfg.llm, environment_with_keys())
        engine = Engine(cfg, run_dir, islands, llm)
        engine.run()
    # Interrupts first: one that lands while the imports above run leaves their names unbound.
    except SystemExit as e:
        # Ray's own SIGTERM handler, active while ray.init runs, exits 15: a SIGTERM all the same
        if e.code != signal.SIGTERM or engine is None:
            raise
        print("\n[evolve] stopped by SIGTERM while Ray started; every recorded experiment is kept, rerun the "
              "same command to resume", file=sys.stderr)
        _exit_now(143)
    except KeyboardInterrupt:  # before the fleet started, or a second Ctrl-C during the graceful stop
        code = engine.stop.exit_code if engine is not None and engine.stop.exit_code else 143 if early_sigterm else 130
        how = "SIGTERM" if code == 143 else "Ctrl-C"
        print(f"\n[evolve] stopped by {how} before the run could stop gracefully; every recorded experiment "
              "is kept, rerun the same command to resume", file=sys.stderr)
        _exit_now(code)
    except (RunInUse, NoIslandStarted) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - only a full disk is turned into a message here
        from .disk import DiskFull, is_disk_full

        if not is_disk_full(e):
            raise
        print(f"error: {e}" if isinstance(e, DiskFull) else
              f"error: the disk of {run_dir} is full: {e}. Nothing was half-written; free some space "
              "and run the same command again to resume.", file=sys.stderr)
        sys.exit(1)
    if engine.stop.exit_code:
        # SystemExit is not an Exception: it passes through Hydra's multirun and ends the sweep.
        sys.exit(engine.stop.exit_code)


def _exit_now(code: int) -> None:
    """Exits with `code` after an interrupt that came before the graceful stop could run: Ray is
    shut down here, and the interpreter's own teardown is skipped, because a Ray interrupted half-way
    through ray.init can crash in it (a soak saw exit -11 instead of 130 under heavy load)."""
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except BaseException:  # noqa: BLE001 - the exit code is what matters now
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
