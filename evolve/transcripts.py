"""Every LLM request and reply of a run, kept under <run dir>/llm/ as one JSON file per proposal
(the messages sent and received and each request's outcome), linked from the journal record it
led to (`transcript` of an experiment or an operator failure). The operators redact the texts
before they get here (operators/llm.py redact), so no key is written."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

FOLDER = "llm"


class Transcripts:
    def __init__(self, run_dir: Path | None):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.count = 0

    def keep(self, island: int, operator: str, transcript: dict, outcome: str) -> str:
        """Writes one proposal's transcript; returns its path relative to the run dir ("" when there is
        nothing to keep or no run dir)."""
        if not transcript or self.run_dir is None:
            return ""
        folder = self.run_dir / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            self.count += 1
            path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-island{island}-{operator}-{self.count:04d}.json"
            try:
                with open(path, "x") as f:
                    json.dump({"island": island, "operator": operator, "outcome": outcome, **transcript}, f, indent=1)
                return os.path.relpath(path, self.run_dir)
            except FileExistsError:
                continue
