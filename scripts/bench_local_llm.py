#!/usr/bin/env python3
"""How usable a (local) model's proposals are, per edit format: N mutation proposals against the
default task's train.py, through the real LLM operator and litellm.

    python scripts/bench_local_llm.py --api-base http://127.0.0.1:8080/v1 --model openai/local \\
        --context-tokens 2048 --proposals 10 --formats constants,search_replace

Serve the model first (docs/llm.md, "Serving a local model end to end"). Prints one row per
format: the first prompt's tokens (o200k), proposals, usable candidates (an applied, compiling
change), requests sent, mean seconds per proposal, and the failures grouped by reason. Nothing
is trained: this measures the model's replies, not val_bpb.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from operators import prompts  # noqa: E402
from operators.candidate import Attempt, NoCandidate, Parent, ProposalContext  # noqa: E402
from operators.constant_edits import constants_table  # noqa: E402
from operators.llm import LLMMutation  # noqa: E402
from operators.perturb import DEFAULT_EXCLUDE  # noqa: E402
from operators.tokens import count_messages  # noqa: E402

TRAIN = (ROOT / "evolve" / "task" / "train.py").read_text()


def reason_class(message: str) -> str:
    text = re.sub(r"^llm_mutation: ", "", message)
    text = re.sub(r"\(.*", "", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "#", text)
    return text.strip()[:90]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-base", required=True)
    ap.add_argument("--model", default="openai/local")
    ap.add_argument("--context-tokens", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--timeout-s", type=float, default=900)
    ap.add_argument("--proposals", type=int, default=10)
    ap.add_argument("--formats", default="constants,search_replace")
    ap.add_argument("--temperature", type=float, default=0.7)
    args = ap.parse_args()
    parent = Parent("b" * 40, TRAIN, 1.61, 0, description="the unmodified base train.py")
    context = ProposalContext(island=0, program=prompts.DEFAULT_BRIEF, sigma=0.0021, noise_k=2.0, budget_s=300,
                              base_source=TRAIN,
                              history=(Attempt("MATRIX_LR 0.08 -> 0.06", "discard", "ok", 1.615, 0.005),))
    print(f"model {args.model} at {args.api_base}, context {args.context_tokens or 'asked'}, "
          f"max_tokens {args.max_tokens}, {args.proposals} proposals per format")
    print("\n| format | first prompt (tokens) | proposals | usable | requests | s / proposal | failures |")
    print("|---|---|---|---|---|---|---|")
    for edit_format in args.formats.split(","):
        op = LLMMutation(model=args.model, api_base=args.api_base, timeout_s=args.timeout_s, num_retries=0,
                         max_tokens=args.max_tokens, temperature=args.temperature, context_tokens=args.context_tokens,
                         edit_format=edit_format)
        first = (prompts.constants_messages(parent, constants_table(TRAIN, DEFAULT_EXCLUDE), context)
                 if edit_format == "constants" else prompts.mutation_messages(parent, context))
        usable, requests, seconds, failures, examples = 0, 0, 0.0, Counter(), []
        for i in range(args.proposals):  # noqa: B007
            started = time.monotonic()
            try:
                candidate = op.propose([parent], random.Random(i), context=context)
                usable += 1
                requests += len(candidate.transcript.get("requests", []))
                examples.append(candidate.description)
            except NoCandidate as e:
                failures[reason_class(str(e))] += 1
                requests += len((getattr(e, "transcript", None) or {}).get("requests", []))
            seconds += time.monotonic() - started
        why = "; ".join(f"{n}x {r}" for r, n in failures.most_common()) or "none"
        print(f"| {edit_format} | {count_messages(first):,} | {args.proposals} | {usable} | {requests} | "
              f"{seconds / args.proposals:.1f} | {why} |")
        if examples:
            print(f"|  | usable: {', '.join(examples[:5])} |  |  |  |  |  |")


if __name__ == "__main__":
    main()
