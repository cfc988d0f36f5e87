"""Per-island research focus (issue 19 item 4): the knobs, the focus=areas preset, the prompt, the
record and the report's comparison."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from evolve.config import ConfigError, register, validate
from evolve.proposer import Proposer
from evolve.records import Experiment, NoiseFloor
from evolve.report.llm_work import focus_rows
from evolve.state import RunState
from operators import prompts
from operators.candidate import Parent, ProposalContext

CONF = Path(__file__).resolve().parents[1] / "conf"


def config(*overrides: str, islands: int = 6):
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"islands={islands}", *overrides])
    validate(cfg, islands)
    return cfg


def test_the_areas_preset_gives_islands_distinct_focuses_and_one_island_can_override():
    cfg = config("focus=areas", "+llm.islands={2: {focus: 'tokenizer-free tricks', temperature: 1.1}}")
    proposer = Proposer(None, cfg, None, random.Random(0), run_dir=None, program="")
    focuses = [proposer.focus(k) for k in range(6)]
    assert focuses[2] == "tokenizer-free tricks"
    assert len({focuses[k] for k in (0, 1, 3, 4)}) == 4 and focuses[5] == focuses[0]   # 5 areas, then round again
    assert "optimizer" in focuses[1] and "architecture" in focuses[0]
    plain = Proposer(None, config(), None, random.Random(0), run_dir=None, program="")
    assert plain.focus(3) == ""
    with pytest.raises(ConfigError, match=r"llm.islands.1.colour=.*expected one of model, temperature, api_base, "
                                          r"max_tokens, focus"):
        config("+llm.islands={1: {colour: red}}")


def test_the_focus_is_appended_to_the_brief():
    parent = Parent("a" * 40, "x = 1\n", 1.0, 0)
    prompt = prompts.mutation_prompt(parent, ProposalContext(island=3, program="Lower val_bpb.",
                                                             focus="the optimizer"))
    brief = prompt[:prompt.index("# The experiment")]
    assert "Lower val_bpb.\n\nThis island's research focus: the optimizer. Propose experiments within this focus" in brief
    assert "research focus" not in prompts.mutation_prompt(parent, ProposalContext(island=3))


def test_the_report_compares_islands_by_focus():
    state = RunState(3, 4)
    for island in range(3):
        state.apply(Experiment(seq=state.next_seq, island=island, island_seq=0, commit="b" * 40, parents=(),
                               operator="baseline", description="baseline", outcome="ok", status="keep",
                               val_bpb=1.0, parent_bpb=None, seed=island, wall_s=1.0))
    state.apply(NoiseFloor(sigma=0.01, baselines=(1.0, 1.0, 1.0), dof=2))
    assert focus_rows(state) == []          # no focus anywhere: no section
    for island, focus, val in ((0, "optimizer", 0.95), (0, "optimizer", 1.02), (1, "schedule", 1.03), (2, "", 0.99)):
        state.apply(Experiment(seq=state.next_seq, island=island, island_seq=1, commit=f"{state.next_seq:040d}",
                               parents=("b" * 40,), operator="llm_mutation" if focus else "perturb", description="d",
                               outcome="ok", status="keep" if val < 1.0 else "discard", val_bpb=val, parent_bpb=1.0,
                               seed=9, wall_s=1.0, parent="b" * 40, focus=focus))
    rows = {r.focus: r for r in focus_rows(state)}
    assert set(rows) == {"optimizer", "schedule", "(no focus)"}
    assert (rows["optimizer"].islands, rows["optimizer"].experiments, rows["optimizer"].kept) == ((0,), 2, 1)
    assert rows["optimizer"].best_gain_sigma == pytest.approx(5.0) and rows["optimizer"].best_val_bpb == 0.95
    assert (rows["schedule"].kept, rows["schedule"].best_gain_sigma, rows["(no focus)"].islands) == (0, None, (2,))
