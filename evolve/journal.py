"""The append-only journal (journal.jsonl) and the tables derived from it.

Write order for each finished experiment: journal line (flushed and fsynced) -> TSV rows -> git
refs. A kill at any point leaves the journal either with or without the record; on resume the
TSVs are rewritten from the journal and the refs reconciled, so everything agrees again.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .records import (CRASH, DISCARD, EARLY_STOPPED, EXPLORE, Bet, Exchange, Experiment, LLMSummary, Migration,
                      NoiseFloor, NoiseUpdate, OperatorFailure, OperatorFallback, Promotion, Record, Remeasure, Reset, RunStart,
                      from_json, to_json)

RESULTS_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
EXPERIMENTS_COLUMNS = ("seq", "island", "island_seq", "commit", "parents", "operator", "status", "outcome",
                       "val_bpb", "parent_bpb", "delta", "seed", "reruns", "wall_s", "training_seconds",
                       "peak_vram_mb", "cost_usd", "tokens", "description", "reason", "log")
EVENTS_COLUMNS = ("after_seq", "kind", "detail")


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def results_row(exp: Experiment) -> str:
    """One row of the anchor's results.tsv (keep/discard/crash only: an explored child is a discard
    whose description starts with `explore: `)."""
    if exp.outcome == EARLY_STOPPED:
        # A discard without a score: an empty val_bpb, which the anchor's analysis.ipynb reads as NaN
        # and leaves out of its chart (0.000000, the crash convention, would plot as a huge gain).
        where = f" at {100 * exp.stopped_at:.0f}%" if exp.stopped_at is not None else ""
        return f"{exp.commit[:7]}\t\t0.0\t{exp.status}\tearly-stopped{where}: {_clean(exp.description)}\n"
    crashed = exp.status == CRASH or exp.val_bpb is None
    bpb = 0.0 if crashed else exp.val_bpb
    mem = 0.0 if crashed else exp.metrics.get("peak_vram_mb", 0.0) / 1024
    status, description = exp.status, _clean(exp.description)
    if status == EXPLORE:
        status, description = DISCARD, f"explore: {description}"
    return f"{exp.commit[:7]}\t{bpb:.6f}\t{mem:.1f}\t{status}\t{description}\n"


def experiments_row(exp: Experiment) -> str:
    fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    delta = None if exp.val_bpb is None or exp.parent_bpb is None else exp.val_bpb - exp.parent_bpb
    values = (exp.seq, exp.island, exp.island_seq, exp.commit[:12], " ".join(p[:12] for p in exp.parents),
              exp.operator, exp.status, exp.outcome, fmt(exp.val_bpb, ".6f"), fmt(exp.parent_bpb, ".6f"),
              fmt(delta, "+.6f"), exp.seed, _reruns(exp), f"{exp.wall_s:.1f}",
              fmt(exp.metrics.get("training_seconds"), ".1f"), fmt(exp.metrics.get("peak_vram_mb"), ".1f"),
              f"{exp.cost.get('usd', 0.0):.4f}",
              int(exp.cost.get("prompt_tokens", 0) + exp.cost.get("completion_tokens", 0)),
              _clean(exp.description), _clean(exp.reason), exp.log)
    return "\t".join(str(v) for v in values) + "\n"


def _reruns(exp: Experiment) -> str:
    """Confirmation runs as `seed=val_bpb` (or `seed=outcome`), after the first run's value."""
    if not exp.reruns:
        return ""
    def show(seed, value, outcome) -> str:
        return f"{seed}={value:.6f}" if outcome == "ok" and value is not None else f"{seed}={outcome}"

    runs = [f"{exp.seed}={exp.first_bpb:.6f}"] + [show(s, v, o) for s, v, o, _ in exp.reruns]
    parent = [show(s, v, o) for s, v, o, _ in exp.parent_reruns]
    return " ".join(runs) + (f"; parent {' '.join(parent)}" if parent else "")


def events_row(record: Record) -> str:
    if isinstance(record, NoiseFloor):
        detail = f"sigma={record.sigma:.6f} dof={record.dof} from {len(record.baselines)} baselines " + \
                 " ".join(f"{b:.6f}" for b in record.baselines)
        after = -1
    elif isinstance(record, NoiseUpdate):
        detail = f"sigma={record.sigma:.6f} dof={record.dof} (pooled over every repeated measurement)"
        after = record.after_seq
    elif isinstance(record, Migration):
        detail = (f"island {record.source} round {record.round} -> {list(record.targets)}: "
                  + ", ".join(f"{c[:7]} ({v:.6f})" for c, v in record.migrants))
        after = record.after_seq
    elif isinstance(record, Reset):
        detail = (f"restart (descent stalled): " if record.restart else f"round {record.round}: ") + ", ".join(
            f"island {i} <- unmodified train.py {c[:7]} ({v:.6f})" if d < 0 else
            f"island {i} <- island {d} champion {c[:7]} ({v:.6f})" for i, d, c, v in record.resets)
        after = record.after_seq
    elif isinstance(record, Bet):
        detail = (f"island {record.island} bet {record.name} ({record.credit} experiments) {record.action}"
                  + (f"ed: {record.outcome}, best {record.best_commit[:7]} ({record.best_bpb:.6f}) against the "
                     f"champion's {record.champion_bpb:.6f}" if record.action == "close" else
                     f"ed by {record.best_commit[:7]} ({record.best_bpb:.6f})"))
        after = record.after_seq
    elif isinstance(record, Exchange):
        detail = (f"round {record.round}: island {record.cold} (T={record.temperatures[0]:g}) "
                  f"{record.cold_commit[:7]} ({record.cold_bpb:.6f}) <-> island {record.hot} "
                  f"(T={record.temperatures[1]:g}) {record.hot_commit[:7]} ({record.hot_bpb:.6f}): "
                  f"{'swapped' if record.accepted else 'kept'} (p={record.probability:.3f})")
        after = record.after_seq
    elif isinstance(record, OperatorFailure):
        reason = record.reason.removeprefix(f"{record.operator}: ")   # the operator's message names it already
        detail = f"island {record.island} {record.operator}: {_clean(reason)} (${record.cost.get('usd', 0.0):.4f})"
        after = record.after_seq
    elif isinstance(record, OperatorFallback):
        detail = f"island {record.island} {record.operator} -> {record.fallback}: {_clean(record.reason)}"
        after = record.after_seq
    elif isinstance(record, LLMSummary):
        detail = (f"lessons.md summary {'failed: ' + _clean(record.reason) if record.reason else 'written'} "
                  f"(${record.cost.get('usd', 0.0):.4f})")
        after = record.after_seq
    elif isinstance(record, Promotion):
        fmt = lambda v: "failed" if v is None else f"{v:.6f}"  # noqa: E731
        long = "n/a" if record.long_delta is None else f"{record.long_delta:+.6f}"
        detail = (f"island {record.island} {record.commit[:7]} at {record.budget_s:g} s (x{record.factor:g}, seed "
                  f"{record.seed}): {fmt(record.champion_bpb)} against the base's {fmt(record.base_bpb)}; delta "
                  f"{record.short_delta:+.6f} at the search's budget, {long} at the long one: "
                  f"{'held' if record.held else 'did not hold'}" + (f" ({_clean(record.reason)})" if record.reason else ""))
        after = record.after_seq
    elif isinstance(record, Remeasure):
        this = (f"{record.val_bpb:.6f}" if record.val_bpb is not None
                else f"{record.outcome}: {_clean(record.reason)}")
        mean = "n/a" if record.mean_bpb is None else f"{record.mean_bpb:.6f}"
        detail = (f"island {record.island} champion {record.commit[:7]} re-measured (seed {record.seed}): {this}; "
                  f"mean of its {record.runs} runs {mean}")
        after = record.after_seq
    elif isinstance(record, RunStart):
        detail = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.time))
        after = record.after_seq
    else:
        raise TypeError(record)
    return f"{after}\t{record.kind}\t{detail}\n"


def event_detail(record: Record) -> str:
    """An event's detail as events.tsv writes it (for the console and the report)."""
    return events_row(record).split("\t", 2)[2].strip()


class Journal:
    def __init__(self, run_dir: Path, n_islands: int):
        self.run_dir = run_dir
        self.path = run_dir / "journal.jsonl"
        self.n_islands = n_islands

    def load(self) -> list[Record]:
        """Every complete record; a torn last line (killed mid-write) is dropped and truncated away."""
        records, good, size = self._parse()
        if good != size:
            with open(self.path, "r+b") as f:
                f.truncate(good)
        return records

    def read(self) -> tuple[list[Record], bool]:
        """Read-only `load`, for a journal another process may still be appending to (the report):
        every complete record and whether a torn last line was left out. The file is never changed."""
        records, good, size = self._parse()
        return records, good != size

    def _parse(self) -> tuple[list[Record], int, int]:
        """(complete records, bytes they take, bytes in the file)."""
        raw = self.path.read_bytes() if self.path.exists() else b""
        lines, good = split_complete(raw)
        return [from_json(line.decode()) for line in lines], good, len(raw)

    def append(self, record: Record) -> None:
        """Appends one record and its table rows. A write that fails (a full disk) is rolled back,
        so the journal never holds part of a line; the tables are rebuilt on the next start."""
        _append(self.path, (to_json(record) + "\n").encode(), durable=True)
        self._append_views(record)

    # ---- derived tables -----------------------------------------------------------------------
    def results_path(self, island: int) -> Path:
        return self.run_dir / "islands" / str(island) / "results.tsv"

    def _append_views(self, record: Record) -> None:
        if isinstance(record, Experiment):
            _append(self.results_path(record.island), results_row(record))
            _append(self.run_dir / "experiments.tsv", experiments_row(record))
        else:
            _append(self.run_dir / "events.tsv", events_row(record))

    def rewrite_views(self, records: list[Record]) -> None:
        """Regenerates every table from the journal (on start and resume)."""
        tables: dict[Path, list[str]] = {self.results_path(k): [RESULTS_HEADER] for k in range(self.n_islands)}
        tables[self.run_dir / "experiments.tsv"] = ["\t".join(EXPERIMENTS_COLUMNS) + "\n"]
        tables[self.run_dir / "events.tsv"] = ["\t".join(EVENTS_COLUMNS) + "\n"]
        for record in records:
            if isinstance(record, Experiment):
                tables[self.results_path(record.island)].append(results_row(record))
                tables[self.run_dir / "experiments.tsv"].append(experiments_row(record))
            else:
                tables[self.run_dir / "events.tsv"].append(events_row(record))
        for path, rows in tables.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(rows))
            os.replace(tmp, path)


def split_complete(raw: bytes) -> tuple[list[bytes], int]:
    """The newline-terminated lines of `raw` and the bytes they take: text after the last newline
    is a line still being written (or torn by a kill) and is left out."""
    good = raw.rfind(b"\n") + 1
    return raw[:good].splitlines(), good


def complete_lines(path: Path) -> tuple[list[str], bool]:
    """The non-empty complete lines of a file another process may be appending to, and whether an
    incomplete last line was left out. Read-only: the file is never truncated."""
    if not path.exists():
        return [], False
    raw = path.read_bytes()
    lines, good = split_complete(raw)
    return [line.decode() for line in lines if line.strip()], good != len(raw)


def _append(path: Path, data: str | bytes, durable: bool = False) -> None:
    """All of `data` at the end of `path`, or none of it: a failed write is truncated away (which
    frees what it wrote, so this works on a full disk too). Unbuffered, so nothing is left to flush."""
    view = memoryview(data.encode() if isinstance(data, str) else data)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
