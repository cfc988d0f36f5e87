"""llm.edit_format=constants (issue 19 item 6): NAME = value lines applied with the AST rewriter,
through litellm over real HTTP to the scripted server; the prompt stays well under 2k tokens."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from evolve.proposer import edit_format
from operators import prompts
from operators.candidate import Attempt, NoCandidate, Parent, ProposalContext
from operators.constant_edits import constants_table, parse_constant_lines
from operators.llm import LLMCrossover, LLMMutation
from operators.perturb import DEFAULT_EXCLUDE
from operators.tokens import count_messages
from tests.llm_server import Reply, ScriptedLLM

TASK_TRAIN = Path(__file__).resolve().parents[1] / "evolve" / "task" / "train.py"
SOURCE = TASK_TRAIN.read_text()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with ScriptedLLM() as scripted:
        yield scripted


def small(server, **knobs) -> LLMMutation:
    return LLMMutation(model="openai/test-model", api_base=server.api_base, timeout_s=10, edit_format="constants",
                       **knobs)


def parent(source: str = SOURCE) -> Parent:
    return Parent("a" * 40, source, 1.61, 0, description="baseline")


def context(**more) -> ProposalContext:
    values = dict(island=0, program=prompts.DEFAULT_BRIEF, sigma=0.002, noise_k=2.0, budget_s=300,
                  history=tuple(Attempt(f"WARMDOWN_FRAC 0.5 -> 0.{i}", "discard", "ok", 1.62, 0.01) for i in range(12)))
    values.update(more)
    return ProposalContext(**values)


def test_name_value_lines_change_only_those_values(server):
    server.script(Reply("Sure!\n```\nDESCRIPTION: lower the matrix LR, deeper\nMATRIX_LR = 0.06  # try\nDEPTH = 4\n```"))
    candidate = small(server).propose([parent()], random.Random(0), context=context())
    changed = [(a, b) for a, b in zip(SOURCE.splitlines(), candidate.source.splitlines()) if a != b]
    assert changed == [("DEPTH = 3  # transformer blocks", "DEPTH = 4  # transformer blocks"),
                       ("MATRIX_LR = 0.08  # Muon, hidden 2D matrices", "MATRIX_LR = 0.06  # Muon, hidden 2D matrices")]
    assert candidate.description == "MATRIX_LR 0.08 -> 0.06, DEPTH 3 -> 4"
    sent = server.chat_requests[0]["body"]["messages"]
    assert "MATRIX_LR = 0.08  # Muon, hidden 2D matrices" in sent[1]["content"]
    assert "def forward" not in sent[1]["content"]                 # no code: only the constants
    assert count_messages(sent) < 1500


def test_unknown_names_and_wrong_types_get_a_fix_round_with_the_list(server):
    server.script(Reply("DESCRIPTION: x\nLEARNING_RATE = 0.01\nDEPTH = 3.5"), Reply("DEPTH = 4"))
    candidate = small(server).propose([parent()], random.Random(0), context=context())
    assert "DEPTH = 4  #" in candidate.source
    follow_up = server.chat_requests[1]["body"]["messages"][-1]["content"]
    assert "Not constants of train.py: LEARNING_RATE." in follow_up and "DEPTH = 3.5" in follow_up
    assert "MATRIX_LR = 0.08" in follow_up


@pytest.mark.parametrize("reply, reason", [
    ("DESCRIPTION: SOME_RATE 0.08 -> 0.06\nSOME_RATE = 0.06", "repeats the prompt's format example"),
    ("DESCRIPTION: same\nDEPTH = 3", r"no change \(the values given are the current ones: DEPTH\)"),
    ("I would try a deeper model.", "no edit in reply: no NAME = value line"),
])
def test_replies_that_change_nothing_end_at_once(server, reply, reason):
    server.script(Reply(reply))
    with pytest.raises(NoCandidate, match=reason):
        small(server).propose([parent()], random.Random(0), context=context())
    assert len(server.chat_requests) == 1


def test_excluded_and_unknown_names_are_never_applied():
    source = SOURCE + "MY_EVAL_STEPS = 1\n"      # *EVAL* is excluded from tuning
    reply = parse_constant_lines("MY_EVAL_STEPS = 3\nMATRIX_LR = 'fast'\nEMBED_LR = 2**-1\n", source, DEFAULT_EXCLUDE)
    assert reply.values == {"EMBED_LR": 0.5} and reply.refused == ["MY_EVAL_STEPS"]
    assert reply.invalid[0].startswith("MATRIX_LR")
    assert "MY_EVAL_STEPS" not in constants_table(source, DEFAULT_EXCLUDE)


def test_crossover_in_the_constants_format_shows_only_the_differences(server):
    first = parent(SOURCE.replace("DEPTH = 3 ", "DEPTH = 4 "))
    second = Parent("b" * 40, SOURCE.replace("MATRIX_LR = 0.08", "MATRIX_LR = 0.05"), 1.60, 1)
    server.script(Reply("DESCRIPTION: take B's LR\nMATRIX_LR = 0.05"))
    op = LLMCrossover(model="openai/test-model", api_base=server.api_base, timeout_s=10, edit_format="constants")
    candidate = op.propose([first, second], random.Random(0), context=context())
    assert "DEPTH = 4 " in candidate.source and "MATRIX_LR = 0.05" in candidate.source
    sent = server.chat_requests[0]["body"]["messages"][1]["content"]
    assert "DEPTH = 4 | 3" in sent and "MATRIX_LR = 0.08 | 0.05" in sent and "WARMDOWN_FRAC" not in sent


def test_auto_picks_constants_for_a_model_marked_small():
    assert edit_format("auto", True) == "constants" and edit_format("auto", False) == "search_replace"
    assert edit_format("search_replace", True) == "search_replace"
    with pytest.raises(ValueError, match="edit_format must be one of search_replace, constants"):
        LLMMutation(model="openai/x", edit_format="diff")
