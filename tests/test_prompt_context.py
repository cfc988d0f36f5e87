"""What an LLM prompt carries about the run (issue 19 item 2): the parent's metrics, description and
lineage, history per lineage, the island's best members, the candidates in flight. A real git lab
and a state rebuilt from records; no model."""
from __future__ import annotations

import random
from pathlib import Path

from omegaconf import OmegaConf

from evolve.config import Config
from evolve.lab import Lab
from evolve.proposer import Proposer, made_by
from evolve.records import Experiment, NoiseFloor, Reset
from evolve.state import RunState
from operators import prompts
from operators.candidate import Peer

LANDSCAPE = Path(__file__).parent / "tasks" / "landscape"


def config(**overrides):
    cfg = OmegaConf.structured(Config)
    cfg.islands = 2
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


class Run:
    """A lab with a base commit and a state the test grows experiment by experiment."""

    def __init__(self, tmp_path: Path):
        self.lab = Lab.create_from_files(tmp_path / "lab", LANDSCAPE, "r")
        self.base = self.lab.head()
        self.base_source = self.lab.read(self.base, "train.py")
        self.state = RunState(2, 4)
        for island in (0, 1):
            self.add(island, self.base, "baseline", f"baseline (seed {island})", "keep", 1.0 + island * 0.001,
                     commit=self.base)
        self.state.apply(NoiseFloor(sigma=0.001, baselines=(1.0, 1.001), dof=1))

    def add(self, island, parent, operator, description, status, val_bpb, old="", new="", commit=None):
        if commit is None:
            source = self.lab.read(parent, "train.py").replace(old, new)
            commit = self.lab.commit_with_files(parent, {"train.py": source}, description)
        seq = self.state.next_seq
        self.state.apply(Experiment(
            seq=seq, island=island, island_seq=self.state.islands[island].experiments, commit=commit,
            parents=() if operator == "baseline" else (parent,), operator=operator, description=description,
            outcome="ok" if val_bpb else "crash", status=status, val_bpb=val_bpb,
            parent_bpb=None if operator == "baseline" else 1.0, seed=seq, wall_s=1.0,
            metrics={"val_bpb": val_bpb, "training_seconds": 300.2, "num_steps": 812, "peak_vram_mb": 4096.0}
            if val_bpb else {}, parent="" if operator == "baseline" else parent, reason="" if val_bpb else "boom"))
        return commit


def test_the_prompt_carries_the_parents_lineage_metrics_history_and_what_trains_now(tmp_path: Path):
    run = Run(tmp_path)
    wider = run.add(1, run.base, "perturb", "WIDTH 64 -> 80", "keep", 0.99, "WIDTH = 64", "WIDTH = 80")
    run.add(1, wider, "llm_mutation", "explode on purpose", "crash", None, "DECAY = 0.1", "DECAY = 0.1\nraise X")
    run.add(0, run.base, "perturb", "DECAY 0.1 -> 0.3", "discard", 1.01, "DECAY = 0.1", "DECAY = 0.3")
    lower = run.add(1, wider, "perturb", "LEARNING_RATE 0.004 -> 0.003", "keep", 0.985,
                    "LEARNING_RATE = 0.004", "LEARNING_RATE = 0.003")
    run.add(1, lower, "perturb", "WIDTH 80 -> 96", "discard", 0.99, "WIDTH = 80", "WIDTH = 96")
    # island 0 is reset to island 1's lineage: its history from now on is that lineage's, not island 0's past
    run.state.apply(Reset(round=1, resets=((0, 1, lower, 0.985),), after_seq=run.state.next_seq - 1))
    run.state.islands[0].population.add(run.state._member(wider, 0.99, 1, 2))
    proposer = Proposer(run.lab, config(), None, random.Random(0), tmp_path, "Lower val_bpb.", base_commit=run.base)
    training = (Peer(island=1, description="DEPTH 2 -> 3", operator="perturb"),)
    [parent] = [proposer._parent(m, made_by(run.state))
                for m in run.state.islands[0].population.members if m.commit == lower]
    context = proposer.context(run.state, 0, [parent], in_flight=training)

    assert parent.description == "LEARNING_RATE 0.004 -> 0.003" and parent.metrics["num_steps"] == 812
    assert [step.description for step in context.lineage] == ["WIDTH 64 -> 80", "LEARNING_RATE 0.004 -> 0.003"]
    # history per lineage: what was tried on the parent or its ancestors, on any island, oldest first
    assert [a.description for a in context.history] == [
        "WIDTH 64 -> 80", "explode on purpose", "DECAY 0.1 -> 0.3", "LEARNING_RATE 0.004 -> 0.003", "WIDTH 80 -> 96"]
    assert [a.tried_on[:7] for a in context.history] == [run.base[:7], wider[:7], run.base[:7], wider[:7], ""]
    assert [p.description for p in context.best] == ["WIDTH 64 -> 80"]

    prompt = prompts.mutation_prompt(parent, context)
    assert "last change: LEARNING_RATE 0.004 -> 0.003" in prompt
    assert "Its run: num_steps 812, training_seconds 300.2, peak_vram_mb 4096" in prompt
    assert "Its lineage: 2 kept changes since the base train.py" in prompt
    assert "-LEARNING_RATE = 0.004\n-WIDTH = 64\n+LEARNING_RATE = 0.003\n+WIDTH = 80" in prompt   # against the base
    assert "[on ancestor " + wider[:7] + "] explode on purpose -- boom" in prompt
    assert "- island 1, perturb: DEPTH 2 -> 3" in prompt and "do not propose these again" in prompt
    assert f"- {wider[:7]} val_bpb 0.990000, island 1: WIDTH 64 -> 80" in prompt


def test_stable_parts_come_first_and_the_base_parent_says_so(tmp_path: Path):
    run = Run(tmp_path)
    proposer = Proposer(run.lab, config(), None, random.Random(0), tmp_path, "Lower val_bpb.", base_commit=run.base)
    parent = proposer._parent(run.state.islands[0].population.members[0], made_by(run.state))
    context = proposer.context(run.state, 0, [parent])
    names = [name for name, _ in prompts.mutation_parts(parent, context)]
    assert names[:4] == ["brief", "experiment", "format", "train.py"] and names[-1] == "task"
    assert names.index("history") > names.index("parent") > names.index("train.py")
    prompt = prompts.mutation_prompt(parent, context)
    assert "last change: the unmodified base train.py" in prompt and "It is the unmodified base train.py." in prompt
    assert "Training right now" not in prompt and "best other members" not in prompt   # nothing to say: left out


def test_a_crossover_that_cannot_run_falls_back_and_says_why(tmp_path: Path, monkeypatch):
    """Issue 19: a crossover drawn without a second parent other than the first, or with parents that
    have nothing to combine, is never sent to the model; the request names what it fell back from
    and why (the scheduler records it as an OperatorFallback event). A real crossover is not touched."""
    from evolve.llm_choice import LLMChoice

    monkeypatch.setattr("evolve.proposer.load_litellm", lambda: None)   # no model is called: no import
    run = Run(tmp_path)
    choice = LLMChoice(model="openai/test-model", api_base="http://127.0.0.1:9/v1", why="test")
    proposer = Proposer(run.lab, config(), choice, random.Random(0), tmp_path, "Lower val_bpb.", base_commit=run.base)
    # both islands hold only the base commit: the second parent drawn is the first one
    request = proposer.prepare(run.state, 0, "llm_crossover")
    assert (request.operator_name, request.fallback_from) == ("perturb", "llm_crossover")
    assert "is the first one" in request.fallback_reason and "both islands hold that commit" in request.fallback_reason
    proposal = request.run()
    assert proposal.fallback_from == "llm_crossover" and proposal.candidate.operator == "perturb"
    # island 1 moves on, island 0 still holds only the base: the base is their common ancestor, so it
    # brings nothing to combine
    wider = run.add(1, run.base, "perturb", "WIDTH 64 -> 80", "keep", 0.99, "WIDTH = 64", "WIDTH = 80")
    run.state.islands[1].population.replace_all(run.state._member(wider, 0.99, 1, 2))
    request = proposer.prepare(run.state, 0, "llm_crossover")
    assert request.operator_name == "perturb" and "no change since the common ancestor" in request.fallback_reason
    # both sides changed: a real crossover, no fallback
    decay = run.add(0, run.base, "perturb", "DECAY 0.1 -> 0.3", "keep", 0.99, "DECAY = 0.1", "DECAY = 0.3")
    run.state.islands[0].population.replace_all(run.state._member(decay, 0.99, 0, 3))
    request = proposer.prepare(run.state, 0, "llm_crossover")
    assert (request.operator_name, request.fallback_from) == ("llm_crossover", "")
    assert len(request.parents) == 2
    # the offline crossover falls back the same way inside propose_offline
    offline = Proposer(run.lab, config(**{"operators.weights": {"crossover": 1.0}}), None, random.Random(0),
                       tmp_path, "", base_commit=run.base)
    run.state.islands[1].population.replace_all(run.state._member(decay, 0.99, 0, 3))
    proposal = offline.propose_offline(run.state, 0, set())
    assert (proposal.candidate.operator, proposal.fallback_from) == ("perturb", "crossover")
    assert "is the first one" in proposal.fallback_reason
