"""Offline operators: constant finding and rewriting, perturbation, constant crossover, registry."""
from __future__ import annotations

import ast
import random
import re
from pathlib import Path

import pytest

from operators.candidate import Candidate, NoCandidate, Parent
from operators.constants import find_constants, format_value, rewrite_constants
from operators.crossover import ConstantCrossover
from operators.perturb import Perturb, is_fraction_like, is_power_of_two, perturb_value
from operators.registry import OPERATORS, make_operator

TASK_TRAIN = Path(__file__).resolve().parents[1] / "evolve" / "task" / "train.py"

TRAIN_PY = '''\
"""A tiny GPT trainer, autoresearch style: hyperparameters at the top."""
import os

import torch

# ---------------------------------------------------------------------------
# Hyperparameters (edit these)
ASPECT_RATIO = 64          # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128
DEPTH = 4                  # number of transformer blocks
MODEL_DIM = 384  # not a power of two
WINDOW_PATTERN = "SSSL"    # sliding-window layout, cycled over layers
DATA_SOURCE = 'shakespeare'
TOTAL_BATCH_SIZE = 2**19   # tokens per optimizer step
DEVICE_BATCH_SIZE: int = 16
EMBEDDING_LR = 0.6
UNEMBEDDING_LR = 0.004
MATRIX_LR = 4e-2
SCALAR_LR = 3e-4
WEIGHT_DECAY = 0.1         # a coefficient, not a fraction
ADAM_BETAS = (0.8, 0.95)   # a tuple: not a constant
MUON_MOMENTUM: float = 0.95
EMA_DECAY = 0.999
WARMUP_RATIO = 0.0
WARMDOWN_RATIO = 0.5
FINAL_LR_FRAC = 0.0
GRAD_CLIP = 1.0
LOGIT_SOFTCAP = 15
MIN_LR_SHIFT = -2          # negative: left alone by perturb
USE_COMPILE = True
SEED = 42
LABEL = "naïve café"; WIDTH_MULT = 3  # two statements, non-ASCII before the second value
OPTIM_KWARGS = {"fused": True}
STEPS = 100
STEPS = 200                # assigned twice: not a constant
if os.environ.get("FAST"):
    MAX_ITERS = 10
else:
    MAX_ITERS = 1000       # bound twice in module scope: not a constant
lower_case = 5             # not UPPER_CASE
A = B = 7                  # chained: not a simple assignment
NOT_A_LITERAL = math.pi * 2
WIDE = 524_288


def train(steps: int) -> float:
    LOCAL_LR = 0.1         # function-local, must never be touched
    loss = 0.0
    for _ in range(steps):
        loss += LOCAL_LR * MATRIX_LR
    return loss


class Config:
    DEPTH = 99             # class attribute, not a module constant


if __name__ == "__main__":
    print("---")
    print(f"val_bpb: {train(DEPTH):.6f}")
'''

EXPECTED = {
    "ASPECT_RATIO": 64, "HEAD_DIM": 128, "DEPTH": 4, "MODEL_DIM": 384, "WINDOW_PATTERN": "SSSL",
    "DATA_SOURCE": "shakespeare", "TOTAL_BATCH_SIZE": 2**19, "DEVICE_BATCH_SIZE": 16,
    "EMBEDDING_LR": 0.6, "UNEMBEDDING_LR": 0.004, "MATRIX_LR": 0.04, "SCALAR_LR": 3e-4,
    "WEIGHT_DECAY": 0.1, "MUON_MOMENTUM": 0.95, "EMA_DECAY": 0.999, "WARMUP_RATIO": 0.0,
    "WARMDOWN_RATIO": 0.5, "FINAL_LR_FRAC": 0.0, "GRAD_CLIP": 1.0, "LOGIT_SOFTCAP": 15,
    "MIN_LR_SHIFT": -2, "USE_COMPILE": True, "SEED": 42, "LABEL": "naïve café", "WIDTH_MULT": 3,
    "WIDE": 524288,
}
STRINGS_AND_BOOLS = {"WINDOW_PATTERN", "DATA_SOURCE", "USE_COMPILE", "LABEL"}
FRACTIONS = {"MUON_MOMENTUM", "EMA_DECAY", "WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC"}


def parent(source: str = TRAIN_PY, commit: str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678") -> Parent:
    return Parent(commit=commit, source=source, val_bpb=1.0, island=0)


def changed_values(before: str, after: str) -> dict[str, tuple[object, object]]:
    old, new = find_constants(before), find_constants(after)
    assert old.keys() == new.keys()
    return {name: (old[name].value, new[name].value) for name in old
            if (old[name].type, old[name].value) != (new[name].type, new[name].value)}


def assert_only_spans_changed(before: str, after: str, names: set[str]) -> None:
    """Only the named constants' value spans differ: every other line is byte-identical, and on
    the changed lines everything around the spans is too."""
    constants = find_constants(before)
    before_lines, after_lines = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(before_lines) == len(after_lines)
    target_lines = {constants[name].lineno for name in names}
    for number, (old_line, new_line) in enumerate(zip(before_lines, after_lines), start=1):
        if number not in target_lines:
            assert old_line == new_line, f"line {number} changed"
            continue
        line_start = sum(len(line) for line in before_lines[:number - 1])
        spans = sorted((constants[name].start - line_start, constants[name].end - line_start)
                       for name in names if constants[name].lineno == number)
        kept, position = [], 0
        for start, end in spans:
            kept.append(old_line[position:start])
            position = end
        kept.append(old_line[position:])
        pattern = "(.+?)".join(re.escape(segment) for segment in kept)
        assert re.fullmatch(pattern, new_line, flags=re.DOTALL), (old_line, new_line)


# --- find_constants ---------------------------------------------------------------------------

def test_finds_exactly_the_intended_constants():
    constants = find_constants(TRAIN_PY)
    assert {name: c.value for name, c in constants.items()} == EXPECTED
    for name, value in EXPECTED.items():
        assert constants[name].type is type(value), name


def test_records_the_exact_value_span():
    constants = find_constants(TRAIN_PY)
    assert constants["TOTAL_BATCH_SIZE"].text == "2**19"
    assert constants["SCALAR_LR"].text == "3e-4"
    assert constants["MIN_LR_SHIFT"].text == "-2"
    assert constants["DATA_SOURCE"].text == "'shakespeare'"
    assert constants["DEVICE_BATCH_SIZE"].text == "16"
    # after a non-ASCII string on the same line: AST columns are UTF-8 bytes, spans are str indices
    width = constants["WIDTH_MULT"]
    assert TRAIN_PY[width.start:width.end] == "3"
    assert width.end_col_offset - width.col_offset == 1
    assert width.col_offset > TRAIN_PY.splitlines()[width.lineno - 1].index("WIDTH_MULT")
    for constant in constants.values():
        assert TRAIN_PY[constant.start:constant.end] == constant.text
        assert "**" in constant.text or ast.literal_eval(constant.text) == constant.value


def test_arithmetic_constants_are_evaluated_safely():
    source = ("A = 64 * 4\nB = 2**-1\nC = -(3 + 1)\nD = 9**9**9\nE = 1 / 0\nF = 1e400\n"
              "G = True + 1\nH = 'a' * 3\nI = (-8) ** 0.5\nJ = None\nK = b'x'\nL = f'{A}'\n")
    constants = find_constants(source)
    assert {name: c.value for name, c in constants.items()} == {"A": 256, "B": 0.5, "C": -4}


def test_global_declaration_and_reassignment_disqualify():
    source = "LR = 0.1\nN = 3\ndef f():\n    global LR\n    LR = 0.2\nN += 1\nfor K in range(2):\n    pass\nK = 4\n"
    assert find_constants(source) == {}


# --- rewrite_constants ------------------------------------------------------------------------

def test_rewrite_preserves_every_other_byte():
    new_values = {"DEPTH": 6, "MATRIX_LR": 0.055, "WIDTH_MULT": 5, "LABEL": "plain", "SCALAR_LR": 0.0004,
                  "DATA_SOURCE": "tinystories", "MUON_MOMENTUM": 0.9}
    rewritten = rewrite_constants(TRAIN_PY, new_values)
    assert_only_spans_changed(TRAIN_PY, rewritten, set(new_values))
    assert "DEPTH = 6                  # number of transformer blocks\n" in rewritten
    assert "MATRIX_LR = 5.5e-2\n" in rewritten                    # keeps the e-notation it was written in
    assert "DATA_SOURCE = 'tinystories'\n" in rewritten           # keeps the single quotes
    assert 'LABEL = "plain"; WIDTH_MULT = 5  # two statements' in rewritten   # keeps double quotes
    assert "MUON_MOMENTUM: float = 0.9\n" in rewritten
    assert "LOCAL_LR = 0.1" in rewritten and "    DEPTH = 99" in rewritten
    # nothing outside the spans moved: undo the spans and get the original back, byte for byte
    assert rewrite_constants(rewritten, {name: EXPECTED[name] for name in new_values}) == TRAIN_PY


def test_round_trip_gives_the_new_values():
    new_values = {"DEPTH": 12, "MATRIX_LR": 0.0123456789, "SCALAR_LR": 3e-05, "GRAD_CLIP": 2,
                  "USE_COMPILE": False, "WINDOW_PATTERN": 'it\'s "quoted"\n', "TOTAL_BATCH_SIZE": 2**18,
                  "MIN_LR_SHIFT": -7, "WIDE": 1_000_000, "EMBEDDING_LR": 1e16}
    rewritten = rewrite_constants(TRAIN_PY, new_values)
    compile(rewritten, "train.py", "exec")
    found = find_constants(rewritten)
    for name, value in new_values.items():
        assert found[name].value == value, name
        assert found[name].type is find_constants(TRAIN_PY)[name].type, name
    assert found["GRAD_CLIP"].text == "2.0"                # an int into a float stays a float
    assert found["TOTAL_BATCH_SIZE"].text == "2**18"       # keeps the power notation
    assert found["WIDE"].text == "1_000_000"               # keeps digit grouping
    assert found["SCALAR_LR"].text == "3e-5"              # written 3e-4: stays in e-notation
    assert found["EMBEDDING_LR"].text == "1e+16"


def test_rewrite_with_nothing_to_change_is_identity():
    assert rewrite_constants(TRAIN_PY, {}) == TRAIN_PY


def test_rewrite_keeps_crlf_and_bom():
    source = "\ufeffA = 1\r\nB = 'é'; C = 2.5  # note\r\n"
    assert rewrite_constants(source, {"C": 3.0, "A": 2}) == "\ufeffA = 2\r\nB = 'é'; C = 3.0  # note\r\n"


@pytest.mark.parametrize("name, value", [
    ("DEPTH", 4.5), ("DEPTH", True), ("DEPTH", "4"), ("MATRIX_LR", "fast"), ("MATRIX_LR", True),
    ("MATRIX_LR", float("nan")), ("MATRIX_LR", float("inf")), ("USE_COMPILE", 1),
    ("WINDOW_PATTERN", 3), ("LABEL", None),
])
def test_rewrite_rejects_an_incompatible_type(name, value):
    with pytest.raises(ValueError, match=name):
        rewrite_constants(TRAIN_PY, {name: value})


@pytest.mark.parametrize("name", ["NO_SUCH_THING", "STEPS", "MAX_ITERS", "LOCAL_LR", "lower_case", "ADAM_BETAS"])
def test_rewrite_rejects_an_unknown_name(name):
    with pytest.raises(ValueError, match=name):
        rewrite_constants(TRAIN_PY, {name: 1})


def test_format_value():
    assert format_value(2.0) == "2.0"
    assert format_value(0.0045) == "0.0045"
    assert format_value(3e-5) == "3e-05"
    assert format_value(8) == "8"
    assert format_value(True) == "True"
    assert format_value("x") == "'x'"


# --- Perturb ----------------------------------------------------------------------------------

SEEDS = range(300)


def test_perturb_properties_over_many_seeds():
    operator = Perturb()
    original = find_constants(TRAIN_PY)
    for seed in SEEDS:
        candidate = operator.propose([parent()], random.Random(seed))
        assert isinstance(candidate, Candidate)
        assert candidate.operator == "perturb" and candidate.parents == (parent().commit,)
        compile(candidate.source, "train.py", "exec")
        changes = changed_values(TRAIN_PY, candidate.source)
        assert 1 <= len(changes) <= operator.max_changes, seed
        assert not changes.keys() & (STRINGS_AND_BOOLS | {"SEED", "MIN_LR_SHIFT"}), seed
        assert_only_spans_changed(TRAIN_PY, candidate.source, set(changes))
        for name, (old, new) in changes.items():
            assert type(new) is type(old), name
            if isinstance(old, int):
                assert new >= 1
                if is_power_of_two(old):
                    assert new in (old * 2, old // 2), (name, old, new)
                else:
                    assert abs(new - old) <= max(1, 0.25 * old) + 1e-9, (name, old, new)
            elif name in FRACTIONS:
                assert 0.0 < new < 1.0, (name, new)
            else:
                assert new > 0
        expected_description = ", ".join(
            f"{name} {format_value(old)} -> {format_value(new)}"
            for name, (old, new) in sorted(changes.items(), key=lambda item: original[item[0]].start)
        )
        assert candidate.description == expected_description


def test_perturb_changes_between_one_and_max_changes():
    operator = Perturb(max_changes=4)
    counts = {len(changed_values(TRAIN_PY, operator.propose([parent()], random.Random(seed)).source))
              for seed in range(200)}
    assert counts == {1, 2, 3, 4}


def test_perturb_is_deterministic_given_the_rng():
    for seed in range(20):
        first = Perturb(max_changes=3).propose([parent()], random.Random(seed))
        second = Perturb(max_changes=3).propose([parent()], random.Random(seed))
        assert first == second
    assert len({Perturb().propose([parent()], random.Random(seed)).source for seed in range(20)}) > 10


def test_perturb_respects_include_and_exclude():
    only_lrs = Perturb(include=["*_LR"], exclude=["SCALAR_LR"], max_changes=3)
    for seed in range(100):
        changes = changed_values(TRAIN_PY, only_lrs.propose([parent()], random.Random(seed)).source)
        assert changes.keys() <= {"EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR"}


def test_perturb_moves_zero_fractions_inside_and_keeps_near_one_below_one():
    rng = random.Random(0)
    for _ in range(500):
        assert 0.0 < perturb_value("WARMUP_RATIO", 0.0, 0.5, rng) < 0.5
        assert 0.0 < perturb_value("EMA_DECAY", 0.999, 2.0, rng) < 1.0
        assert 0.0 < perturb_value("DROPOUT", 0.1, 3.0, rng) < 1.0
    assert is_fraction_like("MUON_MOMENTUM", 0.95) and is_fraction_like("ADAM_B2", 0.95)
    assert not is_fraction_like("WEIGHT_DECAY", 0.1) and not is_fraction_like("MATRIX_LR", 0.04)
    assert perturb_value("WEIGHT_DECAY", 0.0, 0.5, rng) is None   # zero coefficient: no scale to go by
    assert perturb_value("MIN_LR_SHIFT", -2, 0.5, rng) is None


def test_perturb_keeps_the_granularity_of_ints():
    rng = random.Random(1)
    for _ in range(300):
        assert perturb_value("MODEL_DIM", 384, 0.5, rng) % 64 == 0
        assert perturb_value("DEPTH", 1, 0.5, rng) == 2
        assert perturb_value("LOGIT_SOFTCAP", 15, 0.5, rng) in range(12, 19)


def test_perturb_without_movable_constants_raises_no_candidate():
    source = 'NAME = "x"\nFLAG = True\nSEED = 7\nOFFSET = -1\n'
    with pytest.raises(NoCandidate, match="no movable constant"):
        Perturb().propose([parent(source)], random.Random(0))
    with pytest.raises(NoCandidate, match="does not parse"):
        Perturb().propose([parent("X = (\n")], random.Random(0))


def test_perturb_rejects_bad_knobs_and_parent_count():
    with pytest.raises(ValueError):
        Perturb(max_changes=0)
    with pytest.raises(ValueError):
        Perturb(scale=0)
    with pytest.raises(ValueError):
        Perturb().propose([parent(), parent()], random.Random(0))


# --- ConstantCrossover ------------------------------------------------------------------------

def second_parent() -> Parent:
    source = rewrite_constants(TRAIN_PY, {"DEPTH": 6, "MATRIX_LR": 0.03, "WARMUP_RATIO": 0.05,
                                          "DATA_SOURCE": "tinystories", "GRAD_CLIP": 2.0})
    source += "\nEXTRA_ONLY_IN_SECOND = 3\n"
    return parent(source, commit="e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d")


def test_crossover_takes_only_values_from_the_parents():
    first, second = parent(), second_parent()
    donor_values = {name: c.value for name, c in find_constants(second.source).items()}
    differing = {"DEPTH", "MATRIX_LR", "WARMUP_RATIO", "DATA_SOURCE", "GRAD_CLIP"}
    seen = set()
    for seed in range(200):
        candidate = ConstantCrossover().propose([first, second], random.Random(seed))
        assert candidate.operator == "crossover"
        assert candidate.parents == (first.commit, second.commit)
        changes = changed_values(TRAIN_PY, candidate.source)
        assert 1 <= len(changes) < len(differing)
        assert changes.keys() <= differing
        for name, (_, new) in changes.items():
            assert new == donor_values[name]
        assert_only_spans_changed(TRAIN_PY, candidate.source, set(changes))
        assert "EXTRA_ONLY_IN_SECOND" not in candidate.source
        expected = ", ".join(f"{name} {format_value(old)} -> {format_value(new)}"
                             for name, (old, new) in changes.items())
        assert candidate.description == f"cross a1b2c3d x e4f5a6b: {expected}"
        seen |= changes.keys()
        assert candidate == ConstantCrossover().propose([first, second], random.Random(seed))
    assert seen == differing


def test_crossover_with_one_difference_takes_it():
    donor = parent(rewrite_constants(TRAIN_PY, {"DEPTH": 8}), commit="f" * 40)
    candidate = ConstantCrossover().propose([parent(), donor], random.Random(3))
    assert candidate.source == donor.source
    assert candidate.description == "cross a1b2c3d x fffffff: DEPTH 4 -> 8"


def test_crossover_of_identical_constants_raises_no_candidate():
    with pytest.raises(NoCandidate, match="share every constant"):
        ConstantCrossover().propose([parent(), parent(commit="b" * 40)], random.Random(0))
    # different code, same constants
    restructured = parent(TRAIN_PY.replace("loss += LOCAL_LR", "loss -= LOCAL_LR"), commit="c" * 40)
    with pytest.raises(NoCandidate, match="share every constant"):
        ConstantCrossover().propose([parent(), restructured], random.Random(0))


def test_crossover_skips_type_changes():
    donor = parent(TRAIN_PY.replace("DEPTH = 4 ", "DEPTH = 4.5"), commit="d" * 40)
    with pytest.raises(NoCandidate):
        ConstantCrossover().propose([parent(), donor], random.Random(0))


# --- registry ---------------------------------------------------------------------------------

def test_registry_builds_operators_with_their_knobs():
    perturb = make_operator("perturb", max_changes=3, scale=0.2, exclude=["DEPTH"])
    assert isinstance(perturb, Perturb) and perturb.max_changes == 3 and perturb.exclude == ("DEPTH",)
    assert isinstance(make_operator("crossover"), ConstantCrossover)
    for name, factory in OPERATORS.items():
        assert make_operator(name).name == name


def test_registry_errors_name_the_allowed_choices():
    with pytest.raises(ValueError, match="allowed: .*crossover.*perturb") as error:
        make_operator("mutate")
    assert "'mutate'" in str(error.value)
    with pytest.raises(ValueError, match="max_changes"):
        make_operator("perturb", max_chanegs=3)


# --- the shipped task -------------------------------------------------------------------------

def test_perturb_keeps_the_shipped_task_compiling():
    if not TASK_TRAIN.exists():
        pytest.skip(f"{TASK_TRAIN} not written yet")
    source = TASK_TRAIN.read_text(encoding="utf-8")
    assert find_constants(source), "the shipped train.py has no top-level constants"
    rng = random.Random(0)
    operator = Perturb()
    for step in range(50):
        candidate = operator.propose([parent(source, commit=f"{step:040x}")], rng)
        compile(candidate.source, "train.py", "exec")
        assert 1 <= len(changed_values(source, candidate.source)) <= operator.max_changes
        source = candidate.source
