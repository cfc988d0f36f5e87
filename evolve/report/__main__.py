"""The command line: python -m evolve.report RUN_DIR [RUN_DIR_B] [--rescore] [--cache-dir DIR] [--out DIR]
[--serve [--port N]]."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .build import build_comparison, build_report, rescore_missing
from .page import fmt
from .serve import DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evolve.report", description=PACKAGE_DOC.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run's directory (run.dir)")
    parser.add_argument("run_dir_b", nargs="?", help="a second run: compare the two side by side")
    parser.add_argument("--rescore", action="store_true",
                        help="first re-score the champions on the held-out test split (seed 0; once per commit)")
    parser.add_argument("--cache-dir", help="EVOLVE_CACHE_DIR for the re-scoring runs (default: the run's task.cache_dir)")
    parser.add_argument("--out", help="where to write (default: RUN_DIR/report)")
    parser.add_argument("--serve", action="store_true",
                        help="then serve the report on 127.0.0.1, reloading in the browser whenever it is rebuilt "
                             "(by the running engine, see report.every); Ctrl-C stops")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the port for --serve (default {DEFAULT_PORT}; 0 = any free port)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"error: --port={args.port} is not allowed; expected a port in 0..65535 (0 = any free port)",
              file=sys.stderr)
        return 2
    runs = [Path(p) for p in (args.run_dir, args.run_dir_b) if p]
    for run_dir in runs:
        if not (run_dir / "run.json").exists():
            print(f"error: {run_dir} is not a run directory (no run.json)", file=sys.stderr)
            return 2
    if args.rescore:
        for run_dir in runs:
            for r in rescore_missing(run_dir, args.cache_dir):
                shown = fmt(r["test_bpb"]) if r["test_bpb"] is not None else r["reason"]
                print(f"[report] rescored {r['commit'][:7]} in {run_dir}: test_bpb {shown}", flush=True)
    path = build_comparison(*runs, args.out) if len(runs) == 2 else build_report(runs[0], args.out)
    print(f"[report] {path}", flush=True)
    return serve(path.parent, path.name, args.port) if args.serve else 0


if __name__ == "__main__":
    from ..keys import withdraw_from_environment

    withdraw_from_environment()   # --rescore runs candidates: keep keys out of their reach
    sys.exit(main())
