"""LLM operators end to end: litellm over real HTTP to a scripted local server (tests/llm_server.py),
plus the pure edit parsing/applying and prompt building they rely on."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from operators import prompts
from operators.candidate import Attempt, Candidate, NoCandidate, Parent, ProposalContext
from operators.edits import (Edit, apply_edit, apply_edits, find_edit_blocks, nearest_lines, parse_reply,
                             same_program)
from operators.llm import LLMCrossover, LLMMutation, describe_error, redact
from operators.registry import OPERATORS, make_operator
from tests.llm_server import Close, Delay, Empty, Garbage, Reply, ScriptedLLM, Status

ROOT = Path(__file__).resolve().parents[1]
TASK_TRAIN = ROOT / "evolve" / "task" / "train.py"

TRAIN = '''\
"""A tiny stand-in train.py."""
import math

DEPTH = 4  # transformer blocks
MATRIX_LR = 0.04
WARMDOWN_FRAC = 0.5


def lr_multiplier(progress):
    if progress > 1.0 - WARMDOWN_FRAC:
        return max(0.0, (1.0 - progress) / WARMDOWN_FRAC)
    return 1.0


def train():
    total = 0.0
    for step in range(10):
        total += MATRIX_LR * lr_multiplier(step / 10)
    return total


if __name__ == "__main__":
    print("---")
    print(f"val_bpb: {1.0 / (1.0 + train()):.6f}")
'''

PROGRAM = "BRIEF-MARKER: make the small GPT learn faster; prefer simple changes."
CRASH_TAIL = "Traceback (most recent call last):\nRuntimeError: CUDA out of memory TAIL-MARKER"

GOOD_REPLY = '''\
Raising the matrix LR should speed up early training.

DESCRIPTION: MATRIX_LR 0.04 -> 0.06

train.py
<<<<<<< SEARCH
MATRIX_LR = 0.04
=======
MATRIX_LR = 0.06
>>>>>>> REPLACE
'''


def parent(source: str = TRAIN, commit: str = "a" * 40, bpb: float = 1.2345, island: int = 0) -> Parent:
    return Parent(commit=commit, source=source, val_bpb=bpb, island=island, description="baseline")


def context(**overrides) -> ProposalContext:
    values = dict(
        island=0, program=PROGRAM, sigma=0.0005, noise_k=2.0, budget_s=300.0,
        history=(
            Attempt("DEPTH 4 -> 6", "keep", "ok", 1.2300, -0.0045),
            Attempt("WARMDOWN_FRAC 0.5 -> 0.3", "discard", "ok", 1.2400, 0.0100),
            Attempt("DEPTH 6 -> 16", "crash", "oom", None, None, reason="out of memory", log_tail=CRASH_TAIL),
        ),
    )
    values.update(overrides)
    return ProposalContext(**values)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with ScriptedLLM() as scripted:
        yield scripted


def mutation(server: ScriptedLLM, **knobs) -> LLMMutation:
    knobs = {"timeout_s": 10, "num_retries": 2, **knobs}
    return LLMMutation(model="openai/test-model", api_base=server.api_base, **knobs)


def propose(op, parents, ctx=None) -> Candidate:
    return op.propose(parents, random.Random(0), context=ctx)


def block(search: str, replace: str, filename: str = "train.py") -> str:
    return f"{filename}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


# ---------------------------------------------------------------------------------------------
# Mutation over HTTP

def test_good_edit_gives_a_compiling_candidate_with_description_and_cost(server):
    server.script(Reply(GOOD_REPLY, prompt_tokens=1234, completion_tokens=56))
    candidate = propose(mutation(server), [parent()], context())
    assert "MATRIX_LR = 0.06\n" in candidate.source and "MATRIX_LR = 0.04" not in candidate.source
    compile(candidate.source, "train.py", "exec")
    assert candidate.description == "MATRIX_LR 0.04 -> 0.06"
    assert candidate.parents == ("a" * 40,) and candidate.operator == "llm_mutation"
    assert (candidate.cost.prompt_tokens, candidate.cost.completion_tokens) == (1234, 56)
    assert candidate.cost.usd == 0.0 and candidate.cost.seconds > 0
    [request] = server.chat_requests
    assert request["authorized"] and "authorization" not in request["headers"]
    assert request["body"]["model"] == "test-model"
    prompt = server.prompts()[0]
    assert PROGRAM in prompt and TRAIN.strip() in prompt
    assert "DEPTH 4 -> 6" in prompt and "-0.004500" in prompt
    assert "WARMDOWN_FRAC 0.5 -> 0.3" in prompt and "+0.010000" in prompt
    assert "DEPTH 6 -> 16" in prompt and "crash: oom" in prompt and "TAIL-MARKER" in prompt
    assert "sigma = 0.000500" in prompt and "more than 0.001000" in prompt
    assert "300 seconds" in prompt and "<<<<<<< SEARCH" in prompt and "DESCRIPTION:" in prompt


def test_unmatched_block_is_sent_back_with_the_nearest_lines_then_fixed(server):
    wrong = "DESCRIPTION: longer warmdown\n\n" + block("WARMDOWN_FRAC = 0.50  # wrong", "WARMDOWN_FRAC = 0.7")
    fixed = block("WARMDOWN_FRAC = 0.5", "WARMDOWN_FRAC = 0.7")
    server.script(Reply(wrong, prompt_tokens=100, completion_tokens=10),
                  Reply(fixed, prompt_tokens=200, completion_tokens=20))
    candidate = propose(mutation(server), [parent()], context())
    assert "WARMDOWN_FRAC = 0.7\n" in candidate.source
    assert candidate.description == "longer warmdown"
    assert (candidate.cost.prompt_tokens, candidate.cost.completion_tokens) == (300, 30)
    first, second = server.chat_requests
    follow_up = second["body"]["messages"][-1]["content"]
    assert second["body"]["messages"][-2] == {"role": "assistant", "content": wrong}
    assert "did not match" in follow_up and "WARMDOWN_FRAC = 0.50  # wrong" in follow_up
    assert "MATRIX_LR = 0.04\nWARMDOWN_FRAC = 0.5\n" in follow_up   # the nearest lines, verbatim


def test_unmatched_twice_gives_up_with_the_reason_and_its_cost(server):
    wrong = block("LEARNING_RATE = 3e-4", "LEARNING_RATE = 1e-3")
    server.script(Reply("DESCRIPTION: x\n" + wrong), Reply(wrong), Reply(GOOD_REPLY))
    with pytest.raises(NoCandidate, match=r"llm_mutation: 1 SEARCH block\(s\) did not match .*1 fix round") as caught:
        propose(mutation(server, max_fix_rounds=1), [parent()], context())
    assert len(server.chat_requests) == 2
    assert caught.value.cost.prompt_tokens > 0


def test_edit_to_prepare_py_is_refused(server):
    server.script(Reply("DESCRIPTION: cheat\n" + block("TIME_BUDGET = 300", "TIME_BUDGET = 3000", "prepare.py")
                        + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")))
    with pytest.raises(NoCandidate, match="edit to prepare.py refused"):
        propose(mutation(server), [parent()], context())
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize("behaviour, reason", [
    (Empty(), "empty reply"),
    (Reply("I would try a larger learning rate, it should help."), "no edit in reply"),
    (Reply("DESCRIPTION: nothing\n" + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.04 ")), "no change"),
    (Reply("DESCRIPTION: comment\n" + block("DEPTH = 4  # transformer blocks", "DEPTH = 4  # blocks")),
     r"no change \(only comments"),
    (Garbage(), "llm error: "),
])
def test_unusable_replies_give_no_candidate(server, behaviour, reason):
    server.script(behaviour, *([Garbage()] * 4 if isinstance(behaviour, Garbage) else []))
    with pytest.raises(NoCandidate, match=reason):
        propose(mutation(server), [parent()], context())


@pytest.mark.parametrize("error", [Status(500), Status(429), Close()])
def test_transient_errors_are_retried_by_litellm(server, error):
    server.script(error, Reply(GOOD_REPLY))
    candidate = propose(mutation(server), [parent()], context())
    assert candidate.description == "MATRIX_LR 0.04 -> 0.06"
    assert len(server.chat_requests) == 2


def test_persistent_server_errors_end_in_a_bounded_no_candidate(server):
    server.script(*[Status(503)] * 10)
    with pytest.raises(NoCandidate, match=r"^llm_mutation: llm error: \w+Error"):
        propose(mutation(server, num_retries=1), [parent()], context())
    assert 2 <= len(server.chat_requests) <= 3   # SDK retries, plus litellm's when tenacity is installed


def test_slow_reply_times_out_quickly(server):
    server.script(*[Delay(30, Reply(GOOD_REPLY))] * 4)
    started = time.monotonic()
    with pytest.raises(NoCandidate, match=r"llm error: .*Timeout"):
        propose(mutation(server, timeout_s=0.5, num_retries=1), [parent()], context())
    elapsed = time.monotonic() - started
    assert elapsed < 6, elapsed      # at most 3 requests of 0.5 s plus a short backoff
    assert len(server.chat_requests) <= 3


def test_errors_never_carry_keys(server, monkeypatch):
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "zz-secret-value-42")
    server.script(Status(401, "Incorrect API key provided: sk-live-abcdef1234567890 or zz-secret-value-42",
                         headers={}), *[Status(401, "again sk-live-abcdef1234567890", headers={})] * 4)
    with pytest.raises(NoCandidate) as caught:
        propose(mutation(server), [parent()], context())
    message = str(caught.value)
    assert message.startswith("llm_mutation: llm error: AuthenticationError")
    assert "sk-live" not in message and "zz-secret" not in message and "[redacted]" in message


def test_whole_file_block_is_accepted(server):
    new = TRAIN.replace("DEPTH = 4", "DEPTH = 6")
    server.script(Reply(f"DESCRIPTION: depth 6\n\n```python\n{new}```\n"))
    candidate = propose(mutation(server), [parent()], context())
    assert candidate.source == new and candidate.description == "depth 6"


def test_syntax_error_gets_one_fix_round(server):
    broken = block("MATRIX_LR = 0.04", "MATRIX_LR = (0.06")
    fix = block("MATRIX_LR = (0.06", "MATRIX_LR = 0.06")
    server.script(Reply("DESCRIPTION: lr up\n" + broken), Reply(fix))
    candidate = propose(mutation(server), [parent()], context())
    assert "MATRIX_LR = 0.06\n" in candidate.source
    follow_up = server.chat_requests[1]["body"]["messages"][-1]["content"]
    assert "SyntaxError" in follow_up and "MATRIX_LR = (0.06" in follow_up


def test_syntax_error_twice_gives_up(server):
    server.script(Reply("DESCRIPTION: lr up\n" + block("MATRIX_LR = 0.04", "MATRIX_LR = (0.06")),
                  Reply(block("MATRIX_LR = (0.06", "MATRIX_LR = [0.06")))
    with pytest.raises(NoCandidate, match="result does not compile: SyntaxError"):
        propose(mutation(server), [parent()], context())


def test_without_context_uses_the_default_brief(server):
    server.script(Reply(GOOD_REPLY))
    candidate = mutation(server).propose([parent()], random.Random(0))
    assert candidate.source != TRAIN
    prompt = server.prompts()[0]
    assert prompts.DEFAULT_BRIEF.splitlines()[0] in prompt and "Noise floor: not measured yet" in prompt


# ---------------------------------------------------------------------------------------------
# Crossover over HTTP

def test_crossover_shows_both_lineages_and_has_two_parents(server):
    ancestor = TRAIN
    first = parent(TRAIN.replace("DEPTH = 4", "DEPTH = 6"), commit="1" * 40, island=0)
    second = parent(TRAIN.replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.05"), commit="2" * 40, island=1)
    server.script(Reply("DESCRIPTION: depth 6 with LR 0.05\n" + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")))
    op = LLMCrossover(model="openai/test-model", api_base=server.api_base, timeout_s=10)
    candidate = propose(op, [first, second], context(common_ancestor_source=ancestor))
    assert "DEPTH = 6" in candidate.source and "MATRIX_LR = 0.05" in candidate.source
    assert candidate.parents == ("1" * 40, "2" * 40) and candidate.operator == "llm_crossover"
    assert candidate.description == "cross 1111111 x 2222222: depth 6 with LR 0.05"
    prompt = server.prompts()[0]
    assert "-DEPTH = 4  # transformer blocks\n+DEPTH = 6  # transformer blocks" in prompt
    assert "-MATRIX_LR = 0.04\n+MATRIX_LR = 0.05" in prompt
    assert "A/train.py" in prompt and "B/train.py" in prompt and PROGRAM in prompt


def test_crossover_without_ancestor_shows_the_diff_between_parents(server):
    first = parent(TRAIN.replace("DEPTH = 4", "DEPTH = 6"), commit="1" * 40)
    second = parent(TRAIN.replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.05"), commit="2" * 40)
    server.script(Reply("DESCRIPTION: both\n" + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")))
    op = LLMCrossover(model="openai/test-model", api_base=server.api_base, timeout_s=10)
    propose(op, [first, second], context())
    prompt = server.prompts()[0]
    assert "common ancestor is not known" in prompt
    assert "--- A/train.py\n+++ B/train.py" in prompt
    assert "\n-DEPTH = 6  # transformer blocks\n" in prompt and "\n+MATRIX_LR = 0.05\n" in prompt


def test_crossover_of_identical_parents_does_not_call_the_model(server):
    op = LLMCrossover(model="openai/test-model", api_base=server.api_base)
    with pytest.raises(NoCandidate, match="same train.py"):
        propose(op, [parent(commit="1" * 40), parent(commit="2" * 40)], context())
    with pytest.raises(NoCandidate, match="no change since the common ancestor"):
        propose(op, [parent(commit="1" * 40), parent(TRAIN.replace("DEPTH = 4", "DEPTH = 5"), commit="2" * 40)],
                context(common_ancestor_source=TRAIN))
    assert server.chat_requests == []


# ---------------------------------------------------------------------------------------------
# Registry, knobs, redaction (no HTTP)

def test_registered_and_built_by_name():
    assert OPERATORS["llm_mutation"] is LLMMutation and OPERATORS["llm_crossover"] is LLMCrossover
    op = make_operator("llm_mutation", model="openai/qwen", api_base="http://127.0.0.1:1/v1", temperature=0.2)
    assert (op.name, op.arity, op.temperature, op.max_fix_rounds, op.num_retries) == ("llm_mutation", 1, 0.2, 2, 2)
    assert make_operator("llm_crossover").arity == 2
    with pytest.raises(ValueError, match="its parameters: model, api_base"):
        make_operator("llm_mutation", nope=1)
    with pytest.raises(ValueError, match="exactly 1 parent"):
        op.propose([parent(), parent()], random.Random(0))


def test_redaction_and_error_descriptions(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "tok-1234567")
    text = redact("key sk-ant-api03-abcdefgh Bearer abc.def.ghi123 api_key=hunter2hunter tok-1234567")
    assert "abcdefgh" not in text and "ghi123" not in text and "hunter2" not in text and "tok-123" not in text
    try:
        try:
            raise ValueError("litellm.BadRequestError: the real problem")
        except ValueError:
            try:
                import tenacity_not_installed_here  # noqa: F401
            except ImportError:
                raise Exception("tenacity import failed please run `pip install tenacity`")
    except Exception as error:
        assert describe_error(error) == "ValueError: the real problem"


# ---------------------------------------------------------------------------------------------
# Edit parsing and applying (pure)

def test_parse_blocks_with_fences_filenames_and_problems():
    reply = ("DESCRIPTION: **two changes**\n\n**train.py**\n```python\n<<<<<<< SEARCH\nDEPTH = 4\n=======\n"
             "DEPTH = 5\n>>>>>>> REPLACE\n```\n\n<<<<<<< SEARCH\nMATRIX_LR = 0.04\n=======\n>>>>>>> REPLACE\n"
             "<<<<<<< SEARCH\nunterminated\n")
    parsed = parse_reply(reply, TRAIN)
    assert parsed.description == "two changes"
    assert parsed.edits == (Edit("train.py", "DEPTH = 4\n", "DEPTH = 5\n"), Edit("train.py", "MATRIX_LR = 0.04\n", ""))
    assert len(parsed.problems) == 1 and "no =======" in parsed.problems[0]
    edits, _ = find_edit_blocks(block("a", "b", "src/prepare.py") + block("c", "d", "./train.py"))
    assert [e.filename for e in edits] == ["src/prepare.py", "./train.py"]


def test_whole_file_rules():
    assert parse_reply("```python\nx = 1\n```", TRAIN).whole_file is None          # a snippet, not a file
    assert "needs at least" in parse_reply("```python\nx = 1\n```", TRAIN).problems[0]
    elided = "```python\n" + TRAIN.replace("def train():", "# ... rest unchanged\ndef train():") + "```"
    assert parse_reply(elided, TRAIN).whole_file is None
    named = parse_reply("prepare.py\n```python\n" + TRAIN + "```", TRAIN)
    assert named.whole_file == TRAIN and named.whole_file_name == "prepare.py"


def test_apply_exact_whitespace_tolerant_and_reindented():
    # exact match must start at a line start: "MATRIX_LR" must not match inside "X_MATRIX_LR"
    src = "X_MATRIX_LR = 1\nMATRIX_LR = 2\n"
    assert apply_edit(src, Edit(None, "MATRIX_LR = 2\n", "MATRIX_LR = 3\n")) == "X_MATRIX_LR = 1\nMATRIX_LR = 3\n"
    # trailing whitespace differs
    assert "WARMDOWN_FRAC = 0.3\n" in apply_edit(TRAIN, Edit(None, "WARMDOWN_FRAC = 0.5   \n", "WARMDOWN_FRAC = 0.3\n"))
    # the model dropped the function body's indentation: replacement is re-indented
    new = apply_edit(TRAIN, Edit(None, "total = 0.0\nfor step in range(10):\n",
                                 "total = 1.0\nfor step in range(20):\n"))
    assert "    total = 1.0\n    for step in range(20):\n        total +=" in new
    compile(new, "train.py", "exec")
    assert apply_edit(TRAIN, Edit(None, "", "x = 1\n")) is None
    result = apply_edits(TRAIN, [Edit(None, "DEPTH = 4  # transformer blocks\n", "DEPTH = 5\n"),
                                 Edit(None, "nope\n", "x\n"),
                                 Edit(None, "DEPTH = 4  # transformer blocks\n", "DEPTH = 5\n")])
    assert result.applied == 2 and [e.search for e in result.failed] == ["nope\n"]   # repeat = already applied


def test_nearest_lines_and_same_program():
    near = nearest_lines(TRAIN, "def lr_multiplier(progres):\n    if progress > 1 - WARMDOWN_FRAC:\n")
    assert near.text.splitlines()[2] == "def lr_multiplier(progress):" and near.similarity > 0.8
    assert TRAIN.splitlines()[near.first_line - 1] == near.text.splitlines()[0]
    assert same_program(TRAIN, TRAIN.replace("# transformer blocks", "# blocks"))
    assert not same_program(TRAIN, TRAIN.replace("DEPTH = 4", "DEPTH = 5"))


def test_prompts_for_the_default_task_stay_small():
    """The real task's train.py with a full history: the size docs/llm.md reports (chars / 4 ~ tokens)."""
    source = TASK_TRAIN.read_text()
    history = tuple(Attempt(f"experiment {i}", "crash" if i % 5 == 0 else ("keep" if i % 3 == 0 else "discard"),
                            "crash" if i % 5 == 0 else "ok", None if i % 5 == 0 else 1.5, None if i % 5 == 0 else 0.001,
                            log_tail=CRASH_TAIL * 5 if i % 5 == 0 else "") for i in range(30))
    ctx = context(history=history, program=prompts.DEFAULT_BRIEF)
    mutation_chars = sum(len(m["content"]) for m in prompts.mutation_messages(parent(source), ctx))
    crossover_chars = sum(len(m["content"]) for m in prompts.crossover_messages(
        parent(source.replace("DEPTH = 4", "DEPTH = 6")), parent(source.replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")),
        context(common_ancestor_source=source)))
    assert len(source) < mutation_chars < len(source) + 12_000
    assert len(source) < crossover_chars < len(source) + 8_000


def test_local_server_without_any_key_and_key_from_a_named_variable(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.script(Reply(GOOD_REPLY), Reply(GOOD_REPLY))
    assert propose(mutation(server), [parent()], context()).description == "MATRIX_LR 0.04 -> 0.06"
    monkeypatch.setenv("MY_LOCAL_LLM_KEY", "local-secret-123")
    op = mutation(server, api_key_env="MY_LOCAL_LLM_KEY")
    assert "local-secret" not in repr(op) and "local-secret" not in str(vars(op))
    assert propose(op, [parent()], context()).parents == ("a" * 40,)
    assert all(request["authorized"] for request in server.chat_requests)
