"""Metric capture for every evaluator signature a task may have (island/metric.py's shim).

Each case is a real fitness run: a prepare.py with one evaluator shape, a train.py that calls it
the way such a task would, then prints either what it got (scored by the captured value) or a
better number (refused as metric-mismatch, which shows the capture is armed for that shape).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from island.fitness import Status, run_fitness

BODY = "    return 1.0 + sum((w - 0.3) ** 2 for w in model) / 3.0\n"
WRAPS = textwrap.dedent('''\
    import functools


    def logged(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            return fn(*args, **kwargs)
        return inner


    ''')

# name -> (prepare.py's evaluator, train.py's call that evaluates the validation split)
SHAPES = {
    # karpathy/autoresearch@228791f: no split parameter, called positionally after training
    "anchor (model, tokenizer, batch_size)": (
        "def evaluate_bpb(model, tokenizer, batch_size):\n" + BODY,
        "evaluate_bpb(WEIGHTS, 'tokenizer', 128)"),
    "anchor shape under a functools.wraps decorator": (
        WRAPS + "@logged\ndef evaluate_bpb(model, tokenizer, batch_size):\n" + BODY,
        "evaluate_bpb(WEIGHTS, 'tokenizer', 128)"),
    "split with a default, passed positionally": (
        "def evaluate_bpb(model, batch_size, split='val'):\n" + BODY,
        "evaluate_bpb(WEIGHTS, 8, 'val')"),
    "split with a default, left out": (
        "def evaluate_bpb(model, batch_size, split='val'):\n" + BODY,
        "evaluate_bpb(WEIGHTS, 8)"),
    "split keyword-only, required": (
        "def evaluate_bpb(model, *, split):\n" + BODY,
        "evaluate_bpb(WEIGHTS, split='val')"),
    "split first and required": (
        "def evaluate_bpb(split, model, batch_size=8):\n" + BODY,
        "evaluate_bpb('val', WEIGHTS)"),
    "split under a functools.wraps decorator": (
        WRAPS + "@logged\ndef evaluate_bpb(model, batch_size, split='val'):\n" + BODY,
        "evaluate_bpb(WEIGHTS, 8, split='val')"),
}
EXPECTED = 1.0 + ((0.1 - 0.3) ** 2 + (0.2 - 0.3) ** 2 + (0.9 - 0.3) ** 2) / 3.0


def _train(call: str, printed: str = "v") -> str:
    return (f"from prepare import evaluate_bpb\nWEIGHTS = [0.1, 0.2, 0.9]\nv = {call}\n"
            f'print("---")\nprint(f"val_bpb:          {{{printed}:.6f}}")\n')


def _run(make_git_repo, tmp_path: Path, prepare: str, train: str, name: str):
    wd = make_git_repo({"prepare.py": prepare, "train.py": train}, name=name)
    return run_fitness(wd, budget_s=5, grace_s=10, log_path=tmp_path / name / "run.log")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_evaluator_shape_is_captured(make_git_repo, tmp_path, shape):
    prepare, call = SHAPES[shape]
    honest = _run(make_git_repo, tmp_path, prepare, _train(call), "honest")
    assert honest.status is Status.OK, honest
    assert honest.val_bpb == EXPECTED          # the evaluator's full-precision value
    lying = _run(make_git_repo, tmp_path, prepare, _train(call, "v - 0.1"), "lying")
    assert lying.status is Status.METRIC_MISMATCH, lying
    assert lying.reason == f"metric mismatch: printed {EXPECTED - 0.1:.6f}, evaluator returned {EXPECTED:.6f}"


def test_another_split_is_not_the_score(make_git_repo, tmp_path):
    prepare = WRAPS + "@logged\ndef evaluate_bpb(model, batch_size, split='val'):\n" + BODY
    r = _run(make_git_repo, tmp_path, prepare, _train("evaluate_bpb(WEIGHTS, 8, split='test')"), "test-split")
    assert r.status is Status.METRIC_MISMATCH, r
    assert r.reason.startswith("val_bpb printed without calling the evaluator (evaluate_bpb)")


def test_anchor_evaluator_under_torch_no_grad(make_git_repo, tmp_path):
    """The anchor's exact decoration: @torch.no_grad() on evaluate_bpb(model, tokenizer, batch_size)."""
    prepare = "import torch\n\n\n@torch.no_grad()\ndef evaluate_bpb(model, tokenizer, batch_size):\n" + BODY
    r = _run(make_git_repo, tmp_path, prepare, _train("evaluate_bpb(WEIGHTS, 'tokenizer', 128)"), "no-grad")
    assert r.status is Status.OK, r
    assert r.val_bpb == EXPECTED
