#!/usr/bin/env python3
"""Token counts of each part of the LLM prompts for the default task (docs/llm.md "Prompt sizes").

    python scripts/prompt_sizes.py

Builds the prompts with operators/prompts.py (the builders the operators call) for the default
task's train.py and a context like one of a long run: a 3-step lineage, the island's 3 best other
members, 3 candidates in flight, 20 experiments of history on the lineage (4 crashes with 17-line
log tails) and a lessons.md; and the constants format's prompt (llm.edit_format=constants) for the
same. Tokens: tiktoken o200k_base (operators/tokens.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators import prompts  # noqa: E402
from operators.candidate import Attempt, LineageStep, Parent, Peer, ProposalContext  # noqa: E402
from operators.constant_edits import constants_table  # noqa: E402
from operators.perturb import DEFAULT_EXCLUDE  # noqa: E402
from operators.tokens import count_tokens, exact  # noqa: E402

TRAIN = (ROOT / "evolve" / "task" / "train.py").read_text()
CRASH_TAIL = "\n".join(["Traceback (most recent call last):", '  File "train.py", line 301, in <module>',
                        "    loss = model(x, y)"] + [f"  frame {i}" for i in range(12)] +
                       ["torch.OutOfMemoryError: CUDA out of memory.", "exit code 1"])
LESSONS = """\
Kept changes (gain in sigma): MATRIX_LR 0.04 -> 0.06 (3.1 sigma, island 0); DEPTH 4 -> 5 (2.4 sigma,
island 1, transferred to island 2 and kept there).
Failed repeatedly: raising EMBEDDING_LR (4 discards); WARMDOWN_FRAC below 0.3 (3 discards).
Recurring crashes: oom (3, all DEPTH >= 8); RuntimeError shape mismatch (2, head_dim changes)."""


CHILD = (TRAIN.replace("DEPTH = 3 ", "DEPTH = 4 ").replace("MATRIX_LR = 0.08", "MATRIX_LR = 0.06")
         .replace("WARMDOWN_FRAC = 0.5 ", "WARMDOWN_FRAC = 0.4 "))


def parent(source: str = CHILD) -> Parent:
    return Parent("c" * 40, source, 1.6021, 0, description="DEPTH 3 -> 4",
                  metrics={"val_bpb": 1.6021, "training_seconds": 300.1, "total_seconds": 331.0,
                           "peak_vram_mb": 24511.2, "mfu_percent": 38.2, "total_tokens_M": 412.3,
                           "num_steps": 1573, "num_params_M": 50.3, "depth": 5})


def context(history: int = 20, **more) -> ProposalContext:
    items = tuple(Attempt(f"CONSTANT_{i} 0.{i} -> 0.{i + 1}", "crash" if i % 5 == 0 else "discard",
                          "crash" if i % 5 == 0 else "ok", None if i % 5 == 0 else 1.61, None if i % 5 == 0 else 0.002,
                          reason="RuntimeError: out of memory" if i % 5 == 0 else "",
                          log_tail=CRASH_TAIL if i % 5 == 0 else "", tried_on="b" * 40 if i % 2 else "")
                  for i in range(history))
    values = dict(
        island=0, program=prompts.DEFAULT_BRIEF, sigma=0.0021, noise_k=2.0, budget_s=300, history=items,
        base_source=TRAIN,
        lineage=(LineageStep("1" * 40, "MATRIX_LR 0.08 -> 0.06", -0.0061, 0),
                 LineageStep("2" * 40, "WARMDOWN_FRAC 0.5 -> 0.4", -0.0047, 1),
                 LineageStep("c" * 40, "DEPTH 3 -> 4", -0.0052, 0)),
        best=tuple(Peer(0, f"change {i}", str(i) * 40, 1.605 + i / 1000) for i in range(3)),
        in_flight=tuple(Peer(k, f"WINDOW_PATTERN SSSL -> SSLL on island {k}", operator="llm_mutation")
                        for k in range(3)),
        lessons=LESSONS)
    values.update(more)
    return ProposalContext(**values)


def table(title: str, parts: list[tuple[str, str]], system_prompt: str = prompts.SYSTEM_PROMPT) -> None:
    print(f"\n{title}\n")
    print("| part | characters | tokens |")
    print("|---|---|---|")
    system = ("system", system_prompt)
    total_chars = total_tokens = 0
    for name, text in [system, *parts]:
        tokens = count_tokens(text)
        total_chars += len(text)
        total_tokens += tokens
        print(f"| {name} | {len(text):,} | {tokens:,} |")
    print(f"| **total** | {total_chars:,} | {total_tokens:,} |")


def main() -> None:
    print(f"train.py: {len(TRAIN.splitlines())} lines, {len(TRAIN):,} characters, {count_tokens(TRAIN):,} tokens"
          f" ({'o200k_base' if exact() else 'characters / 4: tiktoken not available'})")
    table("mutation, long run (lineage 3, best 3, in flight 3, history 20 with 4 crashes, lessons)",
          prompts.mutation_parts(parent(), context()))
    table("mutation, first experiment (parent = base, nothing else known)",
          prompts.mutation_parts(Parent("b" * 40, TRAIN, 1.61, 0, "the unmodified base train.py"),
                                 ProposalContext(island=0, program=prompts.DEFAULT_BRIEF, sigma=0.0021, noise_k=2.0,
                                                 budget_s=300, base_source=TRAIN)))
    table("crossover (two lineages with 2 changes each, with ancestor, in flight 3, lessons)",
          prompts.crossover_parts(parent(TRAIN.replace("DEPTH = 3 ", "DEPTH = 4 ").replace("MATRIX_LR = 0.08",
                                                                                            "MATRIX_LR = 0.06")),
                                  parent(TRAIN.replace("WARMDOWN_FRAC = 0.5 ", "WARMDOWN_FRAC = 0.4 ")
                                         .replace("DEPTH = 3 ", "DEPTH = 5 ")),
                                  context(common_ancestor_source=TRAIN)))
    table("constants format (llm.edit_format=constants), long run (history 20 of which 8 shown, lessons)",
          prompts.constants_parts(parent(), constants_table(CHILD, DEFAULT_EXCLUDE), context()),
          prompts.CONSTANTS_SYSTEM_PROMPT)
    table("constants format, first experiment",
          prompts.constants_parts(Parent("b" * 40, TRAIN, 1.61, 0), constants_table(TRAIN, DEFAULT_EXCLUDE),
                                  ProposalContext(island=0, program=prompts.DEFAULT_BRIEF, sigma=0.0021, noise_k=2.0)),
          prompts.CONSTANTS_SYSTEM_PROMPT)


if __name__ == "__main__":
    main()
