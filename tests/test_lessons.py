"""lessons.md (issue 19 item 3): deterministic lessons from the journal, and the LLM's summary of them
through litellm over real HTTP to the scripted server."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from evolve.lessons import Lessons, crash_class, direction, lessons_text, summary_prompt, SUMMARY_HEADING
from evolve.records import Experiment, NoiseFloor
from evolve.state import RunState
from operators.llm import LLMSummary
from tests.llm_server import Reply, ScriptedLLM


def state_with(*rows) -> RunState:
    """rows: (island, description, status, val_bpb, parent_bpb, outcome, reason, commit, parent)."""
    state = RunState(2, 4)
    for island in (0, 1):
        state.apply(Experiment(seq=state.next_seq, island=island, island_seq=0, commit="b" * 40, parents=(),
                               operator="baseline", description="baseline", outcome="ok", status="keep",
                               val_bpb=1.0, parent_bpb=None, seed=island, wall_s=1.0))
    state.apply(NoiseFloor(sigma=0.002, baselines=(1.0, 1.0), dof=1))
    for island, description, status, val, parent_bpb, outcome, reason, commit, parent in rows:
        state.apply(Experiment(seq=state.next_seq, island=island, island_seq=state.islands[island].experiments,
                               commit=commit, parents=(parent,), operator="perturb", description=description,
                               outcome=outcome, status=status, val_bpb=val, parent_bpb=parent_bpb,
                               seed=state.next_seq, wall_s=1.0, reason=reason, parent=parent))
    return state


ROWS = (
    (0, "MATRIX_LR 0.04 -> 0.06", "keep", 0.99, 1.0, "ok", "", "1" * 40, "b" * 40),
    (0, "EMBEDDING_LR 0.6 -> 0.9", "discard", 1.01, 0.99, "ok", "", "2" * 40, "1" * 40),
    (1, "EMBEDDING_LR 0.6 -> 0.8", "discard", 1.02, 1.0, "ok", "", "3" * 40, "b" * 40),
    (1, "DEPTH 4 -> 12", "crash", None, 1.0, "oom", "CUDA out of memory", "4" * 40, "b" * 40),
    (1, "use rotary everywhere", "crash", None, 1.0, "crash", "RuntimeError: shape mismatch", "5" * 40, "b" * 40),
    (0, "new attention", "crash", None, 0.99, "crash", "Traceback ... RuntimeError: size", "6" * 40, "1" * 40),
    (1, "WARMDOWN_FRAC 0.5 -> 0.4", "keep", 0.985, 0.99, "ok", "", "7" * 40, "1" * 40),   # built on island 0's keep
)


def test_lessons_name_kept_changes_in_sigma_failed_directions_crash_classes_and_transfers():
    text = lessons_text(state_with(*ROWS))
    assert "- MATRIX_LR 0.04 -> 0.06 (+5.0 sigma, island 0, perturb, 1111111)" in text
    assert "- EMBEDDING_LR up: 2 discarded, 0 crashed, none kept" in text     # two different values, one direction
    assert "- crash: RuntimeError: 2 times (recurring), e.g. use rotary everywhere" in text
    assert "- oom: 1 time, e.g. DEPTH 4 -> 12" in text
    assert "MATRIX_LR 0.04 -> 0.06 (island 0) carried over to island 1, where WARMDOWN_FRAC 0.5 -> 0.4 was kept" in text
    assert text == lessons_text(state_with(*ROWS))       # deterministic: no clock, no order from sets
    assert text.index("MATRIX_LR 0.04 -> 0.06 (+5.0") < text.index("WARMDOWN_FRAC 0.5 -> 0.4 (+2.5")   # by gain
    empty = lessons_text(state_with())
    assert "- none yet" in empty and "# Lessons after 2 experiments" in empty


def test_directions_and_crash_classes():
    assert direction("MATRIX_LR 0.04 -> 0.06, DEPTH 8 -> 6") == "DEPTH down, MATRIX_LR up"
    assert direction("Raise warmup to 0.2 steps") == direction("raise warmup to 0.35 steps") == "raise warmup to # steps"
    exp = state_with(*ROWS).experiments
    assert [crash_class(e) for e in exp if e.status == "crash"] == ["oom", "crash: RuntimeError", "crash: RuntimeError"]


def test_lessons_are_written_every_n_experiments_with_the_llms_summary(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    state = state_with(*ROWS[:2])       # 4 experiments
    with ScriptedLLM() as server:
        server.script(Reply("<think>hmm</think>Raise MATRIX_LR further; leave EMBEDDING_LR alone.",
                            prompt_tokens=300, completion_tokens=20))
        op = LLMSummary(model="openai/test-model", api_base=server.api_base, timeout_s=10)
        lessons = Lessons(tmp_path, every=4,
                          summarise=lambda text: (lambda s, c: (s, asdict(c)))(*op.summarise(summary_prompt(text))))
        assert lessons.after(state) is None
        assert "MATRIX_LR 0.04 -> 0.06" in (tmp_path / "lessons.md").read_text()
        deadline = time.monotonic() + 30
        summary = None
        while summary is None and time.monotonic() < deadline:
            time.sleep(0.05)
            summary = lessons.after(state)      # not due again: only the summary arrives
        [request] = server.chat_requests
    assert summary is not None and summary.reason == "" and summary.cost["prompt_tokens"] == 300
    text = (tmp_path / "lessons.md").read_text()
    assert f"{SUMMARY_HEADING}\n\nRaise MATRIX_LR further; leave EMBEDDING_LR alone." in text and "hmm" not in text
    assert "MATRIX_LR 0.04 -> 0.06" in request["body"]["messages"][-1]["content"]
