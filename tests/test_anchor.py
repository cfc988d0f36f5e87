"""The engine on karpathy/autoresearch's own files (tests/anchor/: upstream @228791f and its CPU port).

What a user of the anchor does: clone it, run `uv run prepare.py`, point evolve at the checkout.
Here the checkout is a git repository holding the CPU port (every change from upstream marked
`EVOLVE-CPU`), its data are parquet shards written offline into ~/.cache/autoresearch/data under
a private HOME, and prepare.py trains the tokenizer exactly as upstream does.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest

from evolve.brief import read_brief
from evolve.seeds import reads_seed, seed_warning
from island.actor import Island, IslandSettings, Job
from island.fitness import Status, run_fitness
from operators import prompts
from operators.candidate import Parent, ProposalContext
from operators.constants import find_constants
from operators.crossover import ConstantCrossover
from operators.perturb import Perturb
from tests.anchor.make_data import write_shards
from tests.llm_server import Reply, ScriptedLLM

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = ROOT / "tests" / "anchor"
UPSTREAM, PORT = ANCHOR / "upstream", ANCHOR / "cpu"
MARK = "EVOLVE-CPU"


def _source(path: Path) -> str:
    return path.read_text()


# --- the port is upstream's code, changed only where marked ---------------------------------------

@pytest.mark.parametrize("name", ["prepare.py", "train.py"])
def test_every_change_from_upstream_is_marked(name):
    upstream, port = _source(UPSTREAM / name).splitlines(), _source(PORT / name).splitlines()
    hunks = [op for op in difflib.SequenceMatcher(None, upstream, port, autojunk=False).get_opcodes() if op[0] != "equal"]
    assert hunks
    for tag, i1, i2, j1, j2 in hunks:
        assert j2 > j1, f"lines {i1 + 1}-{i2} of upstream {name} deleted without a marked replacement"
        assert any(MARK in line for line in port[j1:j2]), f"unmarked change in {name}: {port[j1:j2]}"


def test_what_the_anchor_is_judged_by_is_kept_as_upstream():
    assert _source(PORT / "program.md") == _source(UPSTREAM / "program.md")

    def function(source: str, name: str) -> str:
        node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
        return ast.unparse(node)

    port_prepare, up_prepare = _source(PORT / "prepare.py"), _source(UPSTREAM / "prepare.py")
    # evaluate_bpb: same signature and decorator; its only change is the device of one lookup table
    assert function(port_prepare, "evaluate_bpb").replace("device='cpu'", "device='cuda'") == function(
        up_prepare, "evaluate_bpb")
    assert "@torch.no_grad()\ndef evaluate_bpb(model, tokenizer, batch_size):" in port_prepare
    port_train, up_train = _source(PORT / "train.py"), _source(UPSTREAM / "train.py")
    step_log = next(line for line in up_train.splitlines() if 'print(f"\\rstep' in line)
    assert step_log in port_train                                           # the \r step log
    summary = up_train[up_train.index('print("---")'):]
    assert summary in port_train                                            # the padded summary block
    assert "val_bpb = evaluate_bpb(model, tokenizer, DEVICE_BATCH_SIZE)" in port_train
    assert "torch.manual_seed(42)" in port_train and "H100_BF16_PEAK_FLOPS = 989.5e12" in port_train


# --- a checkout with data, as after `uv run prepare.py` -----------------------------------------

@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(a git checkout of the CPU port, the environment whose HOME holds its prepared data)."""
    base = tmp_path_factory.mktemp("anchor")
    home, repo_dir = base / "home", base / "autoresearch"
    write_shards(home / ".cache" / "autoresearch" / "data")
    repo_dir.mkdir()
    for name in ("prepare.py", "train.py", "program.md", ".gitignore"):
        shutil.copy2(PORT / name, repo_dir / name)
    repo = git.Repo.init(repo_dir, initial_branch="master")
    repo.git.add("-A")
    repo.git.commit("-m", "autoresearch @228791f, CPU port", author="user <user@example.invalid>",
                    env={**os.environ, "GIT_COMMITTER_NAME": "user", "GIT_COMMITTER_EMAIL": "user@example.invalid"})
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run([sys.executable, "prepare.py"], cwd=repo_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Data: all 11 shards already downloaded" in done.stdout and "sanity check passed" in done.stdout
    return repo_dir, env


def _notebook_cells() -> list[str]:
    """The code cells of the anchor's analysis.ipynb, as upstream wrote them."""
    notebook = json.loads((UPSTREAM / "analysis.ipynb").read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


@pytest.mark.filterwarnings("ignore:Attempting to set identical low and high ylims")  # the notebook, no keep yet
def test_two_islands_on_the_anchors_own_code(checkout, tmp_path, monkeypatch):
    """python -m evolve +islands=2 task=custom task.dir=<checkout>: scored by the captured
    evaluate_bpb, results.tsv read by the anchor's own notebook, prepare.py untouched."""
    repo_dir, env = checkout
    repo = git.Repo(repo_dir)
    master = repo.head.commit.hexsha
    prepare_sha = hashlib.sha256((repo_dir / "prepare.py").read_bytes()).hexdigest()
    run_dir = tmp_path / "night"
    # learning rates and schedule only, so that every candidate trains (no shape that cannot)
    exclude = "[*SEED*,*TIME_BUDGET*,*EVAL*,*FLOPS*,*BATCH*,DEPTH,HEAD_DIM,ASPECT_RATIO]"
    done = subprocess.run(
        [sys.executable, "-m", "evolve", "+islands=2", "task=custom", f"task.dir={repo_dir}", "task.budget_s=3",
         "task.grace_s=120", "run.max_experiments=4", "selection.min_baselines=2", "llm=none", "operators.weights={perturb: 1.0}",
         f"task.sandbox_read_only=[{env['HOME']}/.cache/autoresearch]",   # its data, under the hidden HOME
         f"operators.perturb.exclude={exclude}", "selection.confirm_sigmas=0", "selection.implausible_sigmas=0",
         f"run.dir={run_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("train.py never reads EVOLVE_SEED") == 1      # said once, at start

    rows = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    experiments = [r for r in rows if r["kind"] == "experiment"]
    assert len(experiments) == 4
    assert not [e for e in experiments if e["outcome"] == "metric-mismatch"], experiments
    baselines = [e for e in experiments if e["operator"] == "baseline"]
    assert len(baselines) == 2 and all(e["outcome"] == "ok" for e in baselines), baselines
    scored = [e for e in experiments if e["outcome"] == "ok"]
    assert len(scored) >= 3, experiments          # both baselines and at least one offline candidate
    for e in scored:
        log = (run_dir / e["log"]).read_bytes().decode()
        assert "\rstep 000" in log                                       # the anchor's step log, as is
        printed = float(re.search(r"^val_bpb:\s+(\S+)$", log, re.MULTILINE)[1])
        assert f"{e['val_bpb']:.6f}" == f"{printed:.6f}"                  # the captured evaluate_bpb
        assert 3.0 <= e["metrics"]["training_seconds"] < 10 and e["metrics"]["depth"] == 2.0
    for e in experiments:
        if e["operator"] != "baseline":   # operators.perturb.exclude reached the operator
            assert e["operator"] == "perturb" and re.fullmatch(r"[A-Z_]+ \S+ -> \S+(, [A-Z_]+ \S+ -> \S+)*",
                                                                e["description"]), e["description"]
            assert not re.search(r"\b(DEPTH|HEAD_DIM|ASPECT_RATIO|\w*BATCH\w*|\w*FLOPS)\b", e["description"])

    # results.tsv per island, read the way the anchor's analysis.ipynb reads it (every code cell)
    import matplotlib

    matplotlib.use("Agg")
    for island in (0, 1):
        folder = run_dir / "islands" / str(island)
        lines = (folder / "results.tsv").read_text().splitlines()
        assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription" and len(lines) == 3
        monkeypatch.chdir(folder)
        scope: dict = {}
        for cell in _notebook_cells():
            exec(compile(cell, "analysis.ipynb", "exec"), scope)
        df = scope["df"]
        assert list(df.columns) == ["commit", "val_bpb", "memory_gb", "status", "description"]
        assert df.loc[0, "status"] == "KEEP" and df["description"][0].startswith("baseline")
        assert set(df["status"]) <= {"KEEP", "DISCARD", "CRASH"}
        assert (folder / "progress.png").stat().st_size > 0
        monkeypatch.undo()

    # the user's checkout: prepare.py untouched, master where it was, one branch per island
    assert hashlib.sha256((repo_dir / "prepare.py").read_bytes()).hexdigest() == prepare_sha
    assert git.Repo(repo_dir).git.status("--porcelain") == ""
    assert repo.heads.master.commit.hexsha == master
    assert {h.name for h in repo.heads} >= {"master", "evolve/night/island-0", "evolve/night/island-1"}
    for e in experiments:
        assert repo.git.show(f"{e['commit']}:prepare.py") == (repo_dir / "prepare.py").read_text().rstrip("\n")


# --- budget, seeds, operators, brief on the anchor's files ----------------------------------------

def test_an_llm_reply_doubling_the_budget_is_over_budget_without_running(tmp_path, make_git_repo, monkeypatch):
    from operators.llm import LLMMutation

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    source = _source(PORT / "train.py")
    reply = ("More training time should help.\n\nDESCRIPTION: train twice as long\n\ntrain.py\n<<<<<<< SEARCH\n"
             "t_start = time.time()\n=======\nt_start = time.time()\nTIME_BUDGET = 2 * TIME_BUDGET\n"
             ">>>>>>> REPLACE\n")
    root = make_git_repo({name: _source(PORT / name) for name in ("prepare.py", "train.py", "program.md")})
    head = git.Repo(root).head.commit.hexsha
    with ScriptedLLM() as server:
        server.script(Reply(reply))
        operator = LLMMutation(model="openai/test-model", api_base=server.api_base, timeout_s=10, num_retries=0)
        candidate = operator.propose([Parent(commit=head, source=source, val_bpb=2.5, island=0)], random.Random(0),
                                     context=ProposalContext(island=0, program=_source(PORT / "program.md")))
    assert "TIME_BUDGET = 2 * TIME_BUDGET\n" in candidate.source
    settings = IslandSettings(budget_s=3, grace_s=60,
                              pinned_prepare_sha256=hashlib.sha256((PORT / "prepare.py").read_bytes()).hexdigest(),
                              log_dir=str(tmp_path / "logs"), pid_dir=str(tmp_path / "pids"),
                              cache_dir=str(tmp_path / "cache"))
    result = Island(0, str(root), "", settings).evaluate(Job("island-0/1", 0, head, candidate.source, 0)).result
    assert result.status is Status.OVER_BUDGET, result
    assert result.reason.startswith("train.py rebinds TIME_BUDGET, the budget it imports from prepare.py")
    assert result.wall_s == 0.0 and result.val_bpb is None


def test_the_anchor_reads_no_seed_and_is_told_so():
    train, prepare = _source(UPSTREAM / "train.py"), _source(UPSTREAM / "prepare.py")
    assert not reads_seed(train) and not reads_seed(prepare)
    message = seed_warning(train, "EVOLVE_SEED", prepare)
    assert "train.py never reads EVOLVE_SEED (task.seed_env)" in message
    assert "confirmation run repeats the same seed" in message and "torch.manual_seed(int(os.environ.get(" in message
    assert seed_warning(_source(ROOT / "evolve" / "task" / "train.py")) is None      # ours reads it
    seeded = train.replace("torch.manual_seed(42)", 'torch.manual_seed(int(os.environ.get("AR_SEED", 42)))')
    assert seed_warning(seeded, "AR_SEED", prepare) is None
    assert seed_warning(seeded, "EVOLVE_SEED", prepare) is not None


def test_task_seed_env_carries_the_seed(tmp_path):
    (tmp_path / "prepare.py").write_text("# no evaluator\n")
    (tmp_path / "train.py").write_text('import os\nprint("---")\nprint("val_bpb: " + os.environ["AR_SEED"])\n')
    r = run_fitness(tmp_path, budget_s=5, grace_s=10, log_path=tmp_path / "run.log", seed=17, seed_env="AR_SEED")
    assert r.status is Status.OK and r.val_bpb == 17.0, r


@pytest.mark.parametrize("file", [UPSTREAM / "train.py", PORT / "train.py"], ids=["upstream", "cpu-port"])
def test_offline_operators_leave_hardware_facts_alone(file):
    source = _source(file)
    peak_line = next(line for line in source.splitlines() if line.startswith("H100_BF16_PEAK_FLOPS"))
    perturb = Perturb(max_changes=3, scale=1.0)
    assert "H100_BF16_PEAK_FLOPS" not in {c.name for c in perturb.movable_constants(source)}
    parent = Parent(commit="a" * 40, source=source, val_bpb=1.0, island=0)
    batch_sizes = set()
    for seed in range(60):
        child = perturb.propose([parent], random.Random(seed)).source
        assert peak_line in child.splitlines()
        batch = find_constants(child)["TOTAL_BATCH_SIZE"].text
        assert re.fullmatch(r"2\*\*\d+", batch), batch            # a power of two, written as 2**k
        batch_sizes.add(batch)
    assert len(batch_sizes) >= 2
    # crossover with a donor whose peak differs (an LLM lineage edited it) still leaves it alone
    donor = source.replace("989.5e12", "1979e12").replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")
    for seed in range(15):
        child = ConstantCrossover().propose([parent, Parent("b" * 40, donor, 1.0, 1)], random.Random(seed)).source
        assert peak_line in child.splitlines() and "MATRIX_LR = 0.05" in child
    # when a hardware fact is explicitly allowed, it keeps its e-notation
    allowed = Perturb(max_changes=1, exclude=(), include=("H100_BF16_PEAK_FLOPS",))
    child = allowed.propose([parent], random.Random(1)).source
    text = find_constants(child)["H100_BF16_PEAK_FLOPS"].text
    assert re.fullmatch(r"\d+(\.\d+)?e\d+", text) and text != "989.5e12", text


def test_our_task_has_no_hardware_fact_to_perturb():
    movable = {c.name for c in Perturb().movable_constants(_source(ROOT / "evolve" / "task" / "train.py"))}
    assert "SEED" not in movable and "EVAL_BATCH_SIZE" not in movable
    assert not [name for name in movable if "FLOPS" in name or "PEAK" in name]


def test_the_anchors_brief_is_framed_for_a_proposer():
    program = _source(UPSTREAM / "program.md")
    assert prompts.scripts_an_agent(program)
    parent = Parent(commit="a" * 40, source=_source(PORT / "train.py"), val_bpb=2.5, island=0)
    prompt = prompts.mutation_prompt(parent, ProposalContext(island=0, program=program, budget_s=300.0))
    framing = prompt.index("written for an interactive coding agent")
    assert framing < prompt.index("LOOP FOREVER") < prompt.index("# Your task")
    assert "set-up and data preparation, the loop of" in prompt and "results.tsv included" in prompt
    assert "propose exactly one change to train.py" in prompt
    assert program.strip() in prompt                                   # the brief itself, verbatim
    # the project's and the default task's briefs are not scripts: no framing
    for brief in (_source(ROOT / "program.md"), _source(ROOT / "evolve" / "task" / "program.md")):
        assert not prompts.scripts_an_agent(brief)
        assert "interactive coding agent" not in prompts.mutation_prompt(
            parent, ProposalContext(island=0, program=brief))


def test_exclude_knob_composes_and_is_validated():
    from evolve.config import ConfigError, validate
    from tests.test_environment import _config

    cfg = _config()
    assert list(cfg.operators.perturb.exclude) == list(Perturb().exclude)
    assert "*FLOPS*" in cfg.operators.perturb.exclude
    validate(_config("operators.perturb.exclude=[*SEED*,DEPTH]"), 2)
    with pytest.raises(ConfigError, match=r"operators.perturb.exclude=.* expected a list of fnmatch patterns"):
        validate(_config("operators.perturb.exclude=['']"), 2)


def test_task_brief_names_another_file(tmp_path):
    from evolve.config import ConfigError, validate
    from tests.test_environment import _config

    (tmp_path / "brief.md").write_text("Focus on the optimizer.\n")
    (tmp_path / "train.py").write_text("")
    (tmp_path / "prepare.py").write_text("")
    assert read_brief("brief.md", str(tmp_path)) == "Focus on the optimizer.\n"
    assert read_brief(str(tmp_path / "brief.md"), None) == "Focus on the optimizer.\n"
    validate(_config("task=custom", f"task.dir={tmp_path}", "task.brief=brief.md"), 2)
    with pytest.raises(ConfigError, match=r"task.brief='nope.md' is not allowed; expected a readable file"):
        validate(_config("task=custom", f"task.dir={tmp_path}", "task.brief=nope.md"), 2)
    with pytest.raises(FileNotFoundError, match="task.brief='nope.md'"):
        read_brief("nope.md", str(tmp_path))
