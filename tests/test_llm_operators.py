"""LLM operators end to end: litellm over real HTTP to a scripted local server (tests/llm_server.py),
plus the pure edit parsing/applying and prompt building they rely on."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from operators import prompts
from operators.candidate import Attempt, Candidate, NoCandidate, Parent, ProposalContext
from operators.edits import (FORMAT_SEARCH_PLACEHOLDER, Edit, apply_edit, apply_edits, elision_marker,
                             find_diff_hunks, find_edit_blocks, match_edit, nearest_lines, parse_reply,
                             same_program, strip_thinking)
from operators.llm import LLMCrossover, LLMMutation, describe_error, redact
from operators.registry import OPERATORS, make_operator
from operators.tokens import count_messages
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


# ---------------------------------------------------------------------------------------------
# Reply shapes real models send (issue 19): over HTTP, then the parser alone

DIFF_REPLY = """\
Longer warmdown and a higher matrix LR.

DESCRIPTION: WARMDOWN_FRAC 0.5 -> 0.7, MATRIX_LR 0.04 -> 0.05

```diff
--- a/train.py
+++ b/train.py
@@ -40,3 +40,3 @@
 DEPTH = 4  # transformer blocks
-MATRIX_LR = 0.04
-WARMDOWN_FRAC = 0.5
+MATRIX_LR = 0.05
+WARMDOWN_FRAC = 0.7
@@ -90,4 +90,4 @@ def train():
 def train():
-    total = 0.0
+    total = 0.5
     for step in range(10):
```
"""

REAL_FORWARD = "    def forward(self, x, cos, sin, ve=None):\n"


def test_think_block_drafts_are_never_applied(server):
    draft = block("DEPTH = 4  # transformer blocks", "DEPTH = 64  # transformer blocks")
    reply = f"<think>\nMaybe a much deeper model?\n{draft}\nNo, too slow. Raise the LR instead.\n</think>\n{GOOD_REPLY}"
    server.script(Reply(reply))
    candidate = propose(mutation(server), [parent()], context())
    assert "DEPTH = 4  # transformer blocks" in candidate.source and "MATRIX_LR = 0.06\n" in candidate.source


def test_reply_that_is_only_an_unterminated_think_block_gives_no_candidate(server):
    server.script(Reply("<think>\nLet me consider " + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.9")))
    with pytest.raises(NoCandidate, match=r"no edit in reply: .*only a <think> section"):
        propose(mutation(server), [parent()], context())
    assert len(server.chat_requests) == 1


def test_unified_diff_is_applied_by_context_despite_wrong_line_numbers(server):
    server.script(Reply(DIFF_REPLY))
    candidate = propose(mutation(server), [parent()], context())
    assert "MATRIX_LR = 0.05\nWARMDOWN_FRAC = 0.7\n" in candidate.source
    assert "    total = 0.5\n    for step in range(10):" in candidate.source
    assert candidate.description == "WARMDOWN_FRAC 0.5 -> 0.7, MATRIX_LR 0.04 -> 0.05"
    assert len(server.chat_requests) == 1


def test_diff_hunk_that_matches_nowhere_gets_a_fix_round_asking_for_search_replace(server):
    wrong = "DESCRIPTION: lr\n```diff\n@@ -1,2 +1,2 @@\n LEARNING_RATE = 3e-4\n-BATCH = 8\n+BATCH = 16\n```\n"
    server.script(Reply(wrong), Reply(block("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")))
    candidate = propose(mutation(server), [parent()], context())
    assert "MATRIX_LR = 0.05\n" in candidate.source and candidate.description == "lr"
    follow_up = server.chat_requests[1]["body"]["messages"][-1]["content"]
    assert "hunks of your diff" in follow_up and "<<<<<<< SEARCH\nLEARNING_RATE = 3e-4\nBATCH = 8\n" in follow_up
    assert "Reply with corrected SEARCH/REPLACE blocks" in follow_up


def test_diff_to_prepare_py_is_refused(server):
    server.script(Reply("```diff\n--- a/prepare.py\n+++ b/prepare.py\n@@ -1 +1 @@\n-TIME_BUDGET = 300\n+TIME_BUDGET = 3000\n```"))
    with pytest.raises(NoCandidate, match="edit to prepare.py refused"):
        propose(mutation(server), [parent()], context())


def test_tilde_fenced_whole_file_is_accepted(server):
    new = TRAIN.replace("DEPTH = 4", "DEPTH = 6")
    server.script(Reply(f"DESCRIPTION: depth 6\n\n~~~python\n{new}~~~\n"))
    candidate = propose(mutation(server), [parent()], context())
    assert candidate.source == new and candidate.description == "depth 6"


def test_reply_cut_off_at_max_tokens_is_continued_before_anything_is_applied(server):
    cut = ("DESCRIPTION: lr and warmdown\n" + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")
           + "train.py\n<<<<<<< SEARCH\nWARMDOWN_FRAC = 0.5\n===")
    server.script(Reply(cut, finish_reason="length"), Reply("====\nWARMDOWN_FRAC = 0.8\n>>>>>>> REPLACE\n"))
    candidate = propose(mutation(server), [parent()], context())
    assert "MATRIX_LR = 0.05\n" in candidate.source and "WARMDOWN_FRAC = 0.8\n" in candidate.source
    second = server.chat_requests[1]["body"]["messages"]
    assert second[-2] == {"role": "assistant", "content": cut}
    assert "cut off at the length limit" in second[-1]["content"]


def test_reply_cut_off_every_time_is_never_applied(server):
    cut = "DESCRIPTION: lr\n" + block("MATRIX_LR = 0.04", "MATRIX_LR = 0.05") + "<<<<<<< SEARCH\nDEPTH = 4"
    server.script(*[Reply(cut if i == 0 else "  # transformer", finish_reason="length") for i in range(3)])
    with pytest.raises(NoCandidate, match=r"reply cut off at max_tokens \(8192\), still cut off after 2 request") as caught:
        propose(mutation(server), [parent()], context())
    assert len(server.chat_requests) == 3 and caught.value.cost.completion_tokens > 0


def test_model_restarting_after_a_cut_replaces_the_cut_reply(server):
    cut = "DESCRIPTION: lr\ntrain.py\n<<<<<<< SEARCH\nMATRIX_LR = 0.04\n=======\nMATRIX_LR = 0.0"
    server.script(Reply(cut, finish_reason="length"), Reply(GOOD_REPLY))
    candidate = propose(mutation(server), [parent()], context())
    assert "MATRIX_LR = 0.06\n" in candidate.source and candidate.description == "MATRIX_LR 0.04 -> 0.06"


def test_ambiguous_search_is_refused_with_its_line_numbers_then_fixed(server):
    source = TASK_TRAIN.read_text()
    scaled = "    def forward(self, x, cos, sin, ve=None, scale=1.0):"
    ambiguous = block(REAL_FORWARD.rstrip("\n"), scaled)
    precise = block(REAL_FORWARD + "        x = x + self.attn(norm(x), cos, sin, ve)",
                    scaled + "\n        x = x + scale * self.attn(norm(x), cos, sin, ve)")
    server.script(Reply("DESCRIPTION: scale the attention branch\n" + ambiguous), Reply(precise))
    candidate = propose(mutation(server), [parent(source)], context())
    lines = candidate.source.splitlines()
    assert lines[86] == REAL_FORWARD.rstrip("\n") and lines[117] == scaled   # Attention's untouched, Block's edited
    assert lines[118] == "        x = x + scale * self.attn(norm(x), cos, sin, ve)"
    follow_up = server.chat_requests[1]["body"]["messages"][-1]["content"]
    assert "matches train.py in 2 places (starting at lines 87, 118)" in follow_up


def test_ambiguous_search_is_never_applied_to_a_guessed_match(server):
    ambiguous = "DESCRIPTION: x\n" + block(REAL_FORWARD.rstrip("\n"), REAL_FORWARD.rstrip("\n") + "  # edited")
    server.script(Reply(ambiguous), Reply(ambiguous))
    with pytest.raises(NoCandidate, match=r"1 SEARCH block\(s\) matched train.py in more than one place after 1 "
                                          r"fix round\(s\) \(first: 'def forward\(self, x, cos, sin, ve=None\):' "
                                          r"at lines 87, 118\)"):
        propose(mutation(server, max_fix_rounds=1), [parent(TASK_TRAIN.read_text())], context())


def test_tabs_and_trailing_spaces_in_search_still_match(server):
    tabbed = block("def train():\n\ttotal = 0.0   \n\tfor step in range(10):",
                   "def train():\n\ttotal = 1.0\n\tfor step in range(10):")
    server.script(Reply("DESCRIPTION: start at 1\n" + tabbed))
    candidate = propose(mutation(server), [parent()], context())
    assert "def train():\n    total = 1.0\n    for step in range(10):\n" in candidate.source


def test_whole_file_with_a_genuine_unchanged_comment_is_accepted(server):
    new = TRAIN.replace("DEPTH = 4", "DEPTH = 6").replace(
        "def lr_multiplier", "# the peak LR stays unchanged; only the warmdown shape matters\ndef lr_multiplier")
    server.script(Reply(f"DESCRIPTION: depth 6\n```python\n{new}```\n"))
    assert propose(mutation(server), [parent()], context()).source == new


def test_echoed_format_example_is_refused_without_a_fix_round(server):
    echo = f"DESCRIPTION: <one line, under 100 characters>\n\n" + block(FORMAT_SEARCH_PLACEHOLDER, "<the lines that replace them>")
    server.script(Reply(echo), Reply(GOOD_REPLY))
    with pytest.raises(NoCandidate, match=r"llm_mutation: the reply repeats the prompt's format example"):
        propose(mutation(server), [parent()], context())
    assert len(server.chat_requests) == 1
    assert FORMAT_SEARCH_PLACEHOLDER in prompts.EDIT_FORMAT   # the parser knows the prompt's example


def test_strip_thinking_variants():
    assert strip_thinking("<think>a</think>b<THINKING>c</THINKING>d") == "bd"
    assert strip_thinking("  <think>\nunterminated " + GOOD_REPLY) == ""
    assert strip_thinking("drafts the template opened\n</think>\nanswer") == "\nanswer"
    assert strip_thinking("no think at all") == "no think at all"


def test_diff_hunks_parse_fenced_headerless_and_bare():
    edits, _ = find_diff_hunks(DIFF_REPLY)
    assert [e.filename for e in edits] == ["train.py", "train.py"]
    assert edits[0] == Edit("train.py", "DEPTH = 4  # transformer blocks\nMATRIX_LR = 0.04\nWARMDOWN_FRAC = 0.5\n",
                            "DEPTH = 4  # transformer blocks\nMATRIX_LR = 0.05\nWARMDOWN_FRAC = 0.7\n")
    # a ```patch block without @@ headers, a context line that lost its leading space, a blank context line
    edits, _ = find_diff_hunks("```patch\ndef train():\n-    total = 0.0\n+    total = 2.0\n\n```")
    assert edits == [Edit(None, "def train():\n    total = 0.0\n", "def train():\n    total = 2.0\n")]
    # bare hunks in prose: the hunk ends at the first line that is not a hunk line
    edits, _ = find_diff_hunks("Change:\n@@ -5 +5 @@\n-MATRIX_LR = 0.04\n+MATRIX_LR = 0.05\nThat is all.\n- a bullet")
    assert edits == [Edit(None, "MATRIX_LR = 0.04\n", "MATRIX_LR = 0.05\n")]
    assert parse_reply(DIFF_REPLY, TRAIN).from_diff
    assert parse_reply("I suggest nothing.", TRAIN).edits == ()


def test_tilde_fences_hold_blocks_and_whole_files():
    parsed = parse_reply("~~~python\n<<<<<<< SEARCH\nDEPTH = 4\n=======\nDEPTH = 5\n>>>>>>> REPLACE\n~~~", TRAIN)
    assert parsed.edits == (Edit(None, "DEPTH = 4\n", "DEPTH = 5\n"),)
    assert parse_reply(f"~~~~py\n{TRAIN}~~~~", TRAIN).whole_file == TRAIN


def test_ambiguous_match_reports_every_place_and_applies_nothing():
    source = TASK_TRAIN.read_text()
    match = match_edit(source, Edit(None, REAL_FORWARD, REAL_FORWARD))
    assert match.lines == (87, 118) and match.source is None
    assert apply_edit(source, Edit(None, REAL_FORWARD, "x\n")) is None
    # ambiguous at the whitespace-tolerant level too (tabs, no trailing newline)
    assert match_edit(source, Edit(None, "\tdef forward(self, x, cos, sin, ve=None):", "x")).lines == (87, 118)
    result = apply_edits(source, [Edit(None, REAL_FORWARD, "x\n"), Edit(None, "DEPTH = 3  # transformer blocks", "DEPTH = 5")])
    assert result.applied == 1 and result.ambiguous[0].lines == (87, 118) and result.failed == ()


def test_tabs_against_spaces_take_the_file_indentation_style():
    spaced = "def f():\n    a = 1\n    return a\n"
    tabbed = spaced.replace("    ", "\t")
    assert apply_edit(spaced, Edit(None, "\ta = 1\n", "\ta = 2\n\tb = 3\n")) == "def f():\n    a = 2\n    b = 3\n    return a\n"
    assert apply_edit(tabbed, Edit(None, "    a = 1  \n", "    a = 2\n")) == "def f():\n\ta = 2\n\treturn a\n"
    assert apply_edit(tabbed, Edit(None, "a = 1\nreturn a\n", "a = 2\nreturn a\n")) == "def f():\n\ta = 2\n\treturn a\n"


def test_elision_markers_against_genuine_comments():
    complete = TRAIN.replace("def train():", "# keep MATRIX_LR unchanged: it is tuned\ndef train():")
    assert elision_marker(complete, TRAIN) is None
    for marker in ("# ... rest unchanged ...", "# (unchanged)", "# rest of the file is unchanged", "...",
                   "# ...", "# existing code"):
        assert elision_marker(TRAIN.replace("def train():", f"{marker}\ndef train():"), TRAIN) == marker
    # a hint in a comment counts when a definition of the old file went missing with it
    lost = TRAIN[:TRAIN.index("def lr_multiplier")] + "# lr_multiplier unchanged\n" + TRAIN[TRAIN.index("def train"):]
    assert elision_marker(lost, TRAIN) == "# lr_multiplier unchanged"
    # a marker-like line the old file already had is its own code
    assert elision_marker(TRAIN + "# (unchanged)\n", TRAIN + "# (unchanged)\n") is None


def test_echoed_example_blocks_are_dropped_and_real_ones_kept():
    echo = block(FORMAT_SEARCH_PLACEHOLDER, "<the lines that replace them>")
    parsed = parse_reply("DESCRIPTION: <one line, under 100 characters, saying what>\n" + echo + GOOD_REPLY, TRAIN)
    assert parsed.echoed_example and parsed.edits == (Edit("train.py", "MATRIX_LR = 0.04\n", "MATRIX_LR = 0.06\n"),)
    assert parsed.description == "MATRIX_LR 0.04 -> 0.06"
    only = parse_reply(echo, TRAIN)
    assert only.echoed_example and only.edits == () and only.whole_file is None


# ---------------------------------------------------------------------------------------------
# Issue 19 item 5: the context window, retries that make sense, transcripts, cancellation

CONTEXT_400 = ("This model's maximum context length is 2048 tokens. However, you requested 15207 tokens "
               "(7015 in the messages, 8192 in the completion). Please reduce the length of the messages.")


def test_a_context_length_error_is_not_retried_and_says_what_to_set(server):
    server.script(*[Status(400, CONTEXT_400)] * 3)
    with pytest.raises(NoCandidate, match=r"ContextWindowExceededError.*not retried.*llm.context_tokens") as caught:
        propose(mutation(server, num_retries=2), [parent()], context())
    assert len(server.chat_requests) == 1
    assert caught.value.transcript["requests"][0]["error"].startswith("ContextWindowExceededError")


def test_other_client_errors_are_not_retried_either(server):
    server.script(*[Status(401, "bad key", headers={})] * 3)
    with pytest.raises(NoCandidate, match="AuthenticationError"):
        propose(mutation(server, num_retries=2), [parent()], context())
    assert len(server.chat_requests) == 1


def test_the_prompt_is_fitted_to_the_context_the_server_reports(server):
    """vLLM reports max_model_len: history is trimmed until the reply has room, max_tokens is what is left."""
    history = tuple(Attempt(f"experiment {i} " + "with a long explanation " * 10, "discard", "ok", 1.3, 0.01)
                    for i in range(20))
    full = count_messages(prompts.mutation_messages(parent(), context(history=history)))
    server.context_tokens = full + 300           # room for the prompt, not for a 512-token reply
    server.script(Reply(GOOD_REPLY))
    propose(mutation(server, max_tokens=4096), [parent()], context(history=history))
    [request] = server.chat_requests
    sent = request["body"]["messages"][1]["content"]
    assert "experiment 19" in sent and "experiment 0 " not in sent and "older experiments not shown" in sent
    assert 512 <= request["body"]["max_tokens"] < 4096
    assert request["body"]["max_tokens"] <= server.context_tokens - count_messages(request["body"]["messages"])


def test_a_prompt_that_cannot_fit_is_refused_without_a_request(server):
    server.context_tokens = 1000
    with pytest.raises(NoCandidate, match=r"leaves less than 512 tokens for the reply in the model's context of 1000"):
        propose(mutation(server), [parent()], context())
    assert server.chat_requests == []
    assert mutation(server, context_tokens=0).context_window() is None      # 0: unknown, never asked


def test_transcripts_hold_every_message_and_request_and_no_secret(server, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-very-secret-123")
    wrong = "DESCRIPTION: longer warmdown\n\n" + block("WARMDOWN_FRAC = 0.50  # wrong", "WARMDOWN_FRAC = 0.7")
    server.script(Reply(wrong, prompt_tokens=100, completion_tokens=10),
                  Reply(block("WARMDOWN_FRAC = 0.5", "WARMDOWN_FRAC = 0.7") + "\ntok-very-secret-123",
                        prompt_tokens=150, completion_tokens=12))
    candidate = propose(mutation(server), [parent()], context())
    transcript = candidate.transcript
    assert [m["role"] for m in transcript["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert [(r["finish_reason"], r["prompt_tokens"]) for r in transcript["requests"]] == [("stop", 100), ("stop", 150)]
    assert "tok-very-secret-123" not in str(transcript) and "[redacted]" in transcript["messages"][-1]["content"]


def test_a_cancelled_proposal_stops_before_its_next_request_with_its_cost(server):
    from operators.candidate import ProposalControl
    control = ProposalControl()
    wrong = "DESCRIPTION: x\n\n" + block("NOT IN THE FILE", "X = 1")
    server.script(Reply(wrong, prompt_tokens=70, completion_tokens=7), Reply(GOOD_REPLY))
    op = mutation(server)
    original = op.reply_budget

    def cancel_after_first(messages):          # the engine cancels while the model answers the first request
        if len(messages) > 2:
            control.cancel("the run ended")
        return original(messages)

    op.reply_budget = cancel_after_first
    with pytest.raises(NoCandidate, match="cancelled: the run ended") as caught:
        propose(op, [parent()], context(control=control))
    assert len(server.chat_requests) == 1 and caught.value.cost.prompt_tokens == 70
    assert control.cost.prompt_tokens == 70        # published as it went


def test_a_request_in_flight_is_aborted_when_the_proposal_is_cancelled(server):
    """The request at the server is not abandoned: cancelling the proposal cancels the request and
    closes its connection (the scripted server sees the client leave during its delay)."""
    import threading

    from operators.candidate import ProposalControl
    control = ProposalControl()
    server.script(Delay(30, Reply(GOOD_REPLY)))

    def cancel_once_it_is_at_the_server():
        deadline = time.monotonic() + 20
        while not server.chat_requests and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        control.cancel("the run ended")

    threading.Thread(target=cancel_once_it_is_at_the_server, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(NoCandidate, match=r"cancelled: the run ended \(its request was aborted after") as caught:
        propose(mutation(server, timeout_s=60), [parent()], context(control=control))
    assert time.monotonic() - began < 15 and control.aborted == 1 and not control.in_request
    assert caught.value.transcript["requests"][0]["error"].startswith("aborted")
    deadline = time.monotonic() + 5
    while server.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.disconnects == 1 and len(server.chat_requests) == 1


def test_an_endpoint_that_goes_away_fails_fast_even_on_a_kept_alive_connection(server):
    """Requests share one HTTP client (one event loop), so its connection to the server is kept
    alive between proposals; a server that dies closes it, and the next proposal fails at once as a
    connection error, then works again when the server is back."""
    server.script(Reply(GOOD_REPLY), Reply(GOOD_REPLY))
    propose(mutation(server, num_retries=0), [parent()], context())
    server.go_away()
    began = time.monotonic()
    with pytest.raises(NoCandidate, match="(?i)connect"):
        propose(mutation(server, num_retries=0), [parent()], context())
    assert time.monotonic() - began < 8
    server.come_back()
    assert propose(mutation(server, num_retries=0), [parent()], context()).description == "MATRIX_LR 0.04 -> 0.06"
