"""`python -m evolve llm=local` end to end: litellm over real HTTP to a scripted OpenAI-compatible
server on 127.0.0.1, real Ray islands, real git, real fitness subprocesses."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


from evolve.records import OperatorFailure
from operators.tokens import count_messages
from tests.llm_server import Delay, Empty, Reply, ScriptedLLM, Status
from tests.test_engine import LANDSCAPE, ROOT, assert_records_agree_with_git, load_state, read_tsv

ONLY_LLM_MUTATION = ("operators.weights.llm_mutation=1", "operators.weights.llm_crossover=0",
                     "operators.weights.perturb=0", "operators.weights.crossover=0")


def whole_file(description: str, lr: str, width: str = "64", extra: str = "") -> str:
    source = (LANDSCAPE / "train.py").read_text()
    source = source.replace("LEARNING_RATE = 0.004", f"LEARNING_RATE = {lr}")
    source = source.replace("WIDTH = 64", f"WIDTH = {width}{extra}")
    return f"DESCRIPTION: {description}\n\n```python\n{source}```\n"


def test_llm_local_run_keeps_discards_and_crashes(tmp_path: Path):
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "llm-run"
    with ScriptedLLM() as server:
        server.script(
            Reply(whole_file("raise the learning rate to 0.01", "0.01")),
            Reply(whole_file("break the run on purpose", "0.004", extra="\nraise RuntimeError('boom')")),
            Reply(whole_file("a far too small learning rate", "0.0001")),
            Empty(),
            Status(500), Reply(whole_file("learning rate 0.012 and width 80", "0.012", "80")),
        )
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "+islands=2", "task=custom", f"task.dir={task}", "task.budget_s=0.3",
             "run.max_experiments=8", "selection.min_baselines=2",   # two baselines: six LLM proposals in eight
             "selection.champion_runs=0",   # no re-measured champion taking an island between them
             f"run.dir={run_dir}", "llm=local", f"llm.api_base={server.api_base}",
             "llm.model=openai/test-model", "llm.num_retries=1", "llm.timeout_s=20", "llm.lessons_every=4",
             "focus=areas", *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**__import__("os").environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"})
        prompts = server.prompts()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "llm: openai/test-model at http://127.0.0.1" in done.stdout
    state = assert_records_agree_with_git(run_dir, 2)
    llm = [e for e in state.experiments if e.operator == "llm_mutation"]
    assert {e.status for e in llm} >= {"keep", "discard", "crash"}, [(e.description, e.status) for e in llm]
    crash = next(e for e in llm if e.status == "crash")
    assert "boom" in crash.reason
    assert all(e.cost["prompt_tokens"] > 0 for e in llm)
    failures = [e for e in state.events if isinstance(e, OperatorFailure)]
    assert any("empty reply" in f.reason for f in failures)
    assert any(f.reason for f in failures) and all(f.operator == "llm_mutation" for f in failures)
    # the prompts carried the brief, the parent file and the noise floor
    first = prompts[0]
    assert "LEARNING_RATE = 0.004" in first and "val_bpb" in first
    # proposals drawn while their island trains see that candidate as in flight (issue 19 item 2)
    assert any("# Training right now" in p and "(this island), llm_mutation: " in p for p in prompts)
    # lessons.md (issue 19 item 3) names the kept change and the crash class, and later prompts carry it
    lessons = (run_dir / "lessons.md").read_text()
    kept = [e.description for e in llm if e.status == "keep"]
    assert "# Lessons after 8 experiments" in lessons and any(f"- {d} (+" in lessons for d in kept), lessons
    assert "- crash: RuntimeError: 1 time, e.g. break the run on purpose" in lessons, lessons
    assert any("# Lessons of this run so far" in p for p in prompts[2:])
    from evolve.report.data import read_run
    from evolve.report.page import render_meta
    assert '<a href="../lessons.md">lessons.md</a>' in render_meta(read_run(run_dir))   # the report links it
    # focus=areas (issue 19 item 4): each island's prompts carry its own focus, recorded per experiment
    assert {e.island: e.focus.split(" (")[0] for e in llm} == {0: "the model architecture", 1: "the optimizer"}
    assert all("This island's research focus: the " in p for p in prompts)
    rows = read_tsv(run_dir / "experiments.tsv")
    assert any(int(r["tokens"]) > 0 for r in rows if r["operator"] == "llm_mutation")
    assert "operator_failure" in {r["kind"] for r in read_tsv(run_dir / "events.tsv")}
    # no key was written anywhere in the run dir
    for path in run_dir.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert "sk-test-not-a-real-key" not in path.read_text(errors="ignore"), path


def test_llm_crash_log_reaches_the_next_prompt(tmp_path: Path):
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "history"
    with ScriptedLLM() as server:
        server.script(
            Reply(whole_file("explode", "0.004", extra="\nraise ValueError('distinctive failure 4242')")),
            Reply(whole_file("try a bigger learning rate", "0.008")),
        )
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "islands=1", "selection=ratchet", "task=custom", f"task.dir={task}",
             "task.budget_s=0.05", "run.max_experiments=3", f"run.dir={run_dir}", "llm=local",
             f"llm.api_base={server.api_base}", "llm.model=openai/test-model"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        prompts = server.prompts()
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(prompts) == 2
    assert "distinctive failure 4242" in prompts[1]  # the crash's log tail was shown to the model
    state = load_state(run_dir, 1, population_size=1)
    assert [e.status for e in state.experiments] == ["keep", "crash", "keep"]


def test_llm_without_key_is_a_clear_error(tmp_path: Path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "evolve", "islands=1", "llm=anthropic",
                           f"run.dir={tmp_path / 'r'}"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    assert "ANTHROPIC_API_KEY" in done.stderr


def test_llm_spend_cap_falls_back_to_offline_operators(tmp_path: Path):
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "capped"
    with ScriptedLLM() as server:
        # Priced as gpt-4o by litellm's local cost map (the local server does not care about the name).
        server.script(Reply(whole_file("learning rate 0.01", "0.01"), prompt_tokens=4000, completion_tokens=500),
                      Reply(whole_file("learning rate 0.015", "0.015"), prompt_tokens=4000, completion_tokens=500))
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "islands=1", "task=custom", f"task.dir={task}", "task.budget_s=0.05",
             "run.max_experiments=6", "selection.min_baselines=4",   # four baselines, two candidates
             f"run.dir={run_dir}", "llm=local", f"llm.api_base={server.api_base}",
             "llm.model=openai/gpt-4o", "llm.max_cost_usd=0.001", "llm.prefetch=false", *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        requests = len(server.prompts())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reached llm.max_cost_usd=0.001: offline operators from now on" in done.stdout
    state = load_state(run_dir, 1)
    operators = [e.operator for e in state.experiments]
    assert operators[:5] == ["baseline"] * 4 + ["llm_mutation"]     # selection.min_baselines=4 baselines
    assert set(operators[5:]) == {"perturb"} and requests == 1
    assert state.experiments[4].cost["usd"] > 0.001


def test_island_epochs_in_both_orders(tmp_path: Path):
    """Resets come every two experiments (reset.interval=1 on 2 islands), so islands are replaced
    under their own candidates: a candidate in flight when its island is reset is recorded, never
    admitted; an LLM proposal prefetched before the reset is re-planned (its cost recorded)."""
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "epochs"
    # every reply is a better learning rate than all before it: each would be a keep
    replies = [Reply(whole_file(f"learning rate {0.004 * 1.07 ** i:.5f}", f"{0.004 * 1.07 ** i:.5f}"))
               for i in range(1, 40)]
    with ScriptedLLM() as server:
        server.script(*replies)
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "+islands=2", "task=custom", f"task.dir={task}", "task.budget_s=0.4",
             "run.max_experiments=16", f"run.dir={run_dir}", "llm=local", f"llm.api_base={server.api_base}",
             "llm.model=openai/test-model", "llm.num_retries=0", "migration.interval=0", "reset.interval=1",
             "selection.confirm_sigmas=0", "selection.implausible_sigmas=0",
             "selection.champion_runs=0",   # every island trains candidates, so resets land under them
             *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = assert_records_agree_with_git(run_dir, 2)
    not_admitted = [e for e in state.experiments if e.reason.startswith("not admitted")]
    replanned = [e for e in state.events if isinstance(e, OperatorFailure) and e.reason.startswith("re-planned")]
    assert not_admitted and replanned, [(e.status, e.reason[:60]) for e in state.experiments]
    members = {m.commit for isl in state.islands for m in isl.population.members}
    assert all(e.status == "discard" and e.commit not in members for e in not_admitted)
    assert all(f.cost.get("prompt_tokens", 0) > 0 for f in replanned)    # what the dropped proposal cost


def test_a_candidate_that_trains_outside_the_counted_time_is_over_budget(tmp_path: Path):
    """The uncounted-time limit comes from the island's own baselines: a candidate that spends
    seconds before its counted training starts (uncounted work) is over-budget, not a keep."""
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "uncounted"
    with ScriptedLLM() as server:
        server.script(Reply(whole_file("warm up before the clock starts", "0.01", extra="\nimport time as _t\n_t.sleep(4)")),
                      Reply(whole_file("learning rate 0.012", "0.012")))
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "islands=1", "task=custom", f"task.dir={task}", "task.budget_s=0.3",
             "run.max_experiments=6", "selection.min_baselines=4",   # four baselines, two candidates
             f"run.dir={run_dir}", "llm=local", f"llm.api_base={server.api_base}",
             "llm.model=openai/test-model", "llm.num_retries=0", "task.uncounted_margin=0.5",
             "task.uncounted_margin_s=1", "llm.prefetch=false", *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_state(run_dir, 1)
    warmed = next(e for e in state.experiments if e.description.startswith("warm up"))
    assert warmed.outcome == "over-budget" and warmed.status == "crash", (warmed.outcome, warmed.reason)
    assert "not counted as training" in warmed.reason and "baseline allows" in warmed.reason
    honest = next(e for e in state.experiments if e.description == "learning rate 0.012")
    assert honest.outcome == "ok"


# The landscape task with two small functions, so that a SEARCH can be ambiguous ("    return value"
# is in both) and indented lines can be matched with tabs.
FUNCTIONS = "\n\ndef width():\n    value = WIDTH\n    return value\n\n\ndef decay():\n    value = DECAY\n    return value\n"


def shapes_task(tmp_path: Path) -> tuple[Path, str]:
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    source = (task / "train.py").read_text().replace("DECAY = 0.1\n", "DECAY = 0.1\n" + FUNCTIONS)
    source = source.replace('"WIDTH": WIDTH, "DECAY": DECAY', '"WIDTH": width(), "DECAY": decay()')
    (task / "train.py").write_text(source)
    return task, source


def test_llm_replies_in_real_models_shapes_become_candidates(tmp_path: Path):
    """Issue 19 items 1 and 7: one run (real engine, Ray, git, fitness runs) against the scripted server
    answering in every reply shape real models send: a ```diff with wrong line numbers, a think block
    before a ~~~python whole file (that crashes), a reply cut off at max_tokens then continued, an
    ambiguous SEARCH then fixed, tabs against spaces, a whole file with a genuine "unchanged" comment,
    bare @@ hunks and an echoed format example. Each shape ends as docs/llm.md says; the run has
    keeps, discards and a crash."""
    task, base = shapes_task(tmp_path)
    run_dir = tmp_path / "shapes"
    diff = ("DESCRIPTION: decay 0.1 -> 0.2\n\n```diff\n--- a/train.py\n+++ b/train.py\n@@ -30,3 +30,3 @@\n"
            " WIDTH = 64\n-DECAY = 0.1\n+DECAY = 0.2\n \n```\n")
    parent = base.replace("DECAY = 0.1", "DECAY = 0.2")      # the lineage after the diff is kept
    crashing = f"DESCRIPTION: break the run on purpose\n\n~~~python\n{parent}raise RuntimeError('boom')\n~~~\n"
    think = ("<think>\nA width of 1 would be fast:\ntrain.py\n<<<<<<< SEARCH\nWIDTH = 64\n=======\nWIDTH = 1\n"
             ">>>>>>> REPLACE\nNo.\n</think>\n" + crashing)
    cut = "DESCRIPTION: a far too small learning rate\ntrain.py\n<<<<<<< SEARCH\nLEARNING_RATE = 0.004\n===="
    rest = "===\nLEARNING_RATE = 0.0001\n>>>>>>> REPLACE\n"
    ambiguous = ("DESCRIPTION: width times 1.5\ntrain.py\n<<<<<<< SEARCH\n    return value\n=======\n"
                 "    return value * 1.5\n>>>>>>> REPLACE\n")
    fixed = ("DESCRIPTION: width times 1.5\ntrain.py\n<<<<<<< SEARCH\n    value = WIDTH\n    return value\n=======\n"
             "    value = WIDTH\n    return value * 1.5\n>>>>>>> REPLACE\n")
    parent = parent.replace("    value = WIDTH\n    return value\n", "    value = WIDTH\n    return value * 1.5\n")
    tabs = ("DESCRIPTION: decay times 1.5\ntrain.py\n<<<<<<< SEARCH\ndef decay():  \n\tvalue = DECAY\n\treturn value\n"
            "=======\ndef decay():\n\tvalue = DECAY * 1.5\n\treturn value\n>>>>>>> REPLACE\n")
    parent = parent.replace("    value = DECAY\n", "    value = DECAY * 1.5\n")
    unchanged = parent.replace("LEARNING_RATE = 0.004", "# the evaluator stays unchanged; only this file moves\n"
                               "LEARNING_RATE = 0.02")
    whole = f"DESCRIPTION: learning rate 0.02\n\n```python\n{unchanged}```\n"
    hunk = "DESCRIPTION: learning rate 0.03\nHere is the change:\n@@ -7 +7 @@\n-LEARNING_RATE = 0.02\n+LEARNING_RATE = 0.03\n"
    echo = ("DESCRIPTION: <one line, under 100 characters>\ntrain.py\n<<<<<<< SEARCH\n"
            "<lines copied exactly from the current train.py, indentation and comments included>\n=======\n"
            "<the lines that replace them>\n>>>>>>> REPLACE\n")
    with ScriptedLLM() as server:
        server.script(Reply(diff), Reply(think), Reply(cut, finish_reason="length"), Reply(rest), Reply(ambiguous),
                      Reply(fixed), Reply(tabs), Reply(whole), Reply(hunk), Reply(echo))
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "islands=1", "selection=ratchet", "task=custom", f"task.dir={task}",
             "task.budget_s=0.05", "run.max_experiments=9", f"run.dir={run_dir}", "llm=local",
             f"llm.api_base={server.api_base}", "llm.model=openai/test-model", "llm.num_retries=0"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        requests = server.chat_requests
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_state(run_dir, 1, population_size=1)
    llm = {e.description: e for e in state.experiments if e.operator == "llm_mutation"}
    assert {e.status for e in llm.values()} == {"keep", "discard", "crash"}

    def source(exp) -> str:
        return subprocess.run(["git", "-C", str(run_dir / "lab"), "show", f"{exp.commit}:train.py"],
                              capture_output=True, text=True, check=True).stdout

    assert llm["decay 0.1 -> 0.2"].status == "keep"                      # ```diff, wrong line numbers
    crashed = llm["break the run on purpose"]                               # <think> + ~~~python whole file
    assert crashed.status == "crash" and "boom" in crashed.reason
    assert llm["a far too small learning rate"].status == "discard"        # cut off, then continued
    assert "cut off at the length limit" in requests[3]["body"]["messages"][-1]["content"]
    widened = llm["width times 1.5"]                                        # ambiguous SEARCH, then fixed
    fix_round = requests[5]["body"]["messages"][-1]["content"]
    assert "in 2 places (starting at lines 14, 19)" in fix_round, fix_round
    assert widened.status == "keep" and source(widened).count("return value * 1.5") == 1
    assert "    value = DECAY\n    return value\n" in source(widened)       # never applied to a guessed match
    tabbed = llm["decay times 1.5"]                                         # tabs where the file has spaces
    assert tabbed.status == "keep" and "    value = DECAY * 1.5\n" in source(tabbed) and "\t" not in source(tabbed)
    assert llm["learning rate 0.02"].status == "keep"                      # whole file, genuine "unchanged"
    assert "# the evaluator stays unchanged" in source(llm["learning rate 0.02"])
    assert llm["learning rate 0.03"].status == "discard"                   # bare @@ hunks
    failures = [e for e in state.events if isinstance(e, OperatorFailure)]  # the echo: refused at once
    assert [f.reason for f in failures] == [f.reason for f in failures if "repeats the prompt's format example" in f.reason]
    assert len(failures) == 1 and len(requests) == 10                      # no fix round for the echo
    assert state.experiments[-1].operator == "perturb"                     # the island fell back
    # the think block's draft (WIDTH = 1) was never trained
    assert all("WIDTH = 1\n" not in source(e) for e in state.experiments)


def test_a_crossover_that_cannot_run_is_an_event_and_counted_in_the_funnel(tmp_path: Path):
    """Issue 19 item 5: llm_crossover drawn while both islands hold the same commit (or one side has
    nothing to combine) is not sent to the model; the island trains perturb instead, and each such
    fallback is an `operator_fallback` event (journal, events.tsv, report) and a "fell back" count in
    the LLM funnel per operator and per island."""
    from evolve.records import OperatorFallback
    from evolve.report.data import read_run
    from evolve.report.llm_work import funnel_rows
    from evolve.report.page import render_events, render_llm_funnel

    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "fallback"
    with ScriptedLLM() as server:   # any crossover that does run gets the exhausted script's 400
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "+islands=2", "task=custom", f"task.dir={task}", "task.budget_s=0.05",
             "run.max_experiments=6", "selection.min_baselines=4",   # four baselines, two candidates
             f"run.dir={run_dir}", "llm=local", f"llm.api_base={server.api_base}",
             "llm.model=openai/test-model", "llm.prefetch=false", "operators.weights.llm_mutation=0",
             "operators.weights.llm_crossover=1", "operators.weights.perturb=0", "operators.weights.crossover=0"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        requests = len(server.chat_requests)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_state(run_dir, 2)
    fallbacks = [e for e in state.events if isinstance(e, OperatorFallback)]
    failures = [e for e in state.events if isinstance(e, OperatorFailure)]
    perturbed = [e for e in state.experiments if e.operator == "perturb"]
    assert fallbacks and all((f.operator, f.fallback) == ("llm_crossover", "perturb") for f in fallbacks)
    assert any("both islands hold that commit" in f.reason for f in fallbacks), [f.reason for f in fallbacks]
    assert len(perturbed) == len(fallbacks) + len(failures)   # every perturb candidate is accounted for
    rows = [r for r in read_tsv(run_dir / "events.tsv") if r["kind"] == "operator_fallback"]
    assert len(rows) == len(fallbacks) and "llm_crossover -> perturb: the second parent drawn" in rows[0]["detail"]
    [by_operator], by_island = funnel_rows(state)
    assert (by_operator.name, by_operator.fell_back) == ("llm_crossover", len(fallbacks))
    assert by_operator.requested == len(failures) + sum(e.operator == "llm_crossover" for e in state.experiments)
    assert requests == by_operator.requested and sum(r.fell_back for r in by_island) == len(fallbacks)
    run = read_run(run_dir)
    assert "fell back" in render_llm_funnel(run) and "operator fallback" in render_events(run)


def test_a_slow_model_never_idles_an_island_and_is_cancelled_at_the_end(tmp_path: Path):
    """Issue 19 item 5: the island trains offline stand-ins while its LLM proposal is not ready, uses
    the proposal when it arrives, and the proposal still in flight at the end is cancelled and
    recorded with its cost; every request and reply is kept under llm/ and linked from the journal;
    the report's funnel counts it all."""
    from evolve.report.data import read_run
    from evolve.report.llm_work import funnel_rows
    from evolve.report.page import render_llm_funnel

    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "slow"
    with ScriptedLLM() as server:
        server.script(Delay(4, Reply(whole_file("learning rate 0.01", "0.01"))),
                      Delay(60, Reply(whole_file("never arrives", "0.02"))))
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "islands=1", "task=custom", f"task.dir={task}", "task.budget_s=0.3",
             "run.max_experiments=10", "selection.min_baselines=4",   # four baselines, six candidates
             f"run.dir={run_dir}", "llm=local", f"llm.api_base={server.api_base}",
             "llm.model=openai/test-model", "llm.max_wait_s=0.5", *ONLY_LLM_MUTATION],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        disconnects = server.disconnects
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_state(run_dir, 1)
    stand_ins = [e for e in state.experiments if e.stand_in_for]
    assert stand_ins and all(e.operator == "perturb" and e.stand_in_for == "llm_mutation" for e in stand_ins)
    [llm] = [e for e in state.experiments if e.operator == "llm_mutation"]
    assert llm.description == "learning rate 0.01" and llm.seq > stand_ins[0].seq   # arrived after a stand-in
    transcript = json.loads((run_dir / llm.transcript).read_text())
    assert transcript["outcome"] == "candidate" and "LEARNING_RATE = 0.004" in transcript["messages"][1]["content"]
    assert transcript["requests"][0]["finish_reason"] == "stop" and transcript["requests"][0]["seconds"] >= 4
    [cancelled] = [f for f in state.events if isinstance(f, OperatorFailure)]
    assert cancelled.reason.startswith("cancelled: the run ended") and "request was aborted" in cancelled.reason
    assert cancelled.cost["seconds"] > 0 and disconnects == 1      # the server saw the connection close
    aborted = json.loads((run_dir / cancelled.transcript).read_text())
    assert aborted["requests"][-1]["error"].startswith("aborted")
    [by_operator], [by_island] = funnel_rows(state)
    assert (by_operator.requested, by_operator.parsed, by_operator.trained, by_operator.failed) == (2, 1, 1, 1)
    assert by_operator.stand_ins == len(stand_ins) == by_island.stand_ins and by_operator.seconds >= 4
    assert "LLM funnel" in render_llm_funnel(read_run(run_dir))
    assert done.stdout.count("LiteLLM completion()") == 0     # litellm's INFO lines stay out of the terminal


def test_a_small_model_with_a_2k_context_edits_constants_end_to_end(tmp_path: Path):
    """Issue 19 item 6: llm.small_model=true picks the constants format; the server reports a 2048-token
    context (as vLLM does), every request fits it, and NAME = value replies become candidates."""
    task = tmp_path / "task"
    shutil.copytree(LANDSCAPE, task)
    run_dir = tmp_path / "small"
    with ScriptedLLM() as server:
        server.context_tokens = 2048
        server.script(Reply("DESCRIPTION: faster learning\nLEARNING_RATE = 0.01"),
                      Reply("<think>wider?</think>\nDESCRIPTION: wider\nWIDTH = 96\nDECAY = 0.15"),
                      Reply("DESCRIPTION: SOME_RATE 0.08 -> 0.06\nSOME_RATE = 0.06"))
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "islands=1", "selection=ratchet", "task=custom", f"task.dir={task}",
             "task.budget_s=0.05", "run.max_experiments=4", f"run.dir={run_dir}", "llm=local",
             f"llm.api_base={server.api_base}", "llm.model=openai/test-model", "llm.small_model=true"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        requests = server.chat_requests
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_state(run_dir, 1, population_size=1)
    assert [e.description for e in state.experiments if e.operator == "llm_mutation"] == [
        "LEARNING_RATE 0.004 -> 0.01", "WIDTH 64 -> 96, DECAY 0.1 -> 0.15"]
    [echo] = [f for f in state.events if isinstance(f, OperatorFailure)]
    assert "repeats the prompt's format example" in echo.reason
    for request in requests:
        used = count_messages(request["body"]["messages"])
        assert used < 1000 and used + request["body"]["max_tokens"] <= 2048, (used, request["body"]["max_tokens"])
