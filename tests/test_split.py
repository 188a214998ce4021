"""Train/eval split (deterministic, stratified, leak-free) and balancing."""

from __future__ import annotations

import ast
import importlib.util
import random
from collections import Counter
from pathlib import Path

import pytest

from edulora.data.balance import balance_records, cell_counts
from edulora.data.quality import leakage
from edulora.data.schema import Dialogue, Example, GradeLevel, Metadata, TeachingStyle, Turn
from edulora.data.split import dedupe, fingerprint, normalized_text, record_text, split_records, split_with_stats

STYLES = list(TeachingStyle)


def make(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(500)]
    return [
        Example(
            instruction=f"question {i}: " + " ".join(rng.choice(words) for _ in range(8)),
            response=" ".join(rng.choice(words) for _ in range(20)),
            metadata=Metadata(subject=("mathematics", "biology")[i % 2], grade_level=GradeLevel.MIDDLE_SCHOOL,
                              teaching_style=STYLES[i % 3]),
        )
        for i in range(n)
    ]


def test_public_helpers_keep_their_behaviour():
    record = Example(instruction="Hi  There", response="Yes", context="ctx")
    assert record_text(record) == "Hi  There\nctx\nYes"
    assert normalized_text(record) == "hi there ctx yes"
    dialogue = Dialogue([Turn("user", "a"), Turn("assistant", "b")])
    assert record_text(dialogue) == "user: a\nassistant: b"
    assert fingerprint([record]) == fingerprint([Example(instruction="Hi  There", response="Yes", context="ctx")])
    assert fingerprint([record]) != fingerprint([dialogue])


def test_split_is_deterministic_and_independent_of_order():
    records = make(300)
    train, held_out = split_records(records, 0.1, seed=0)
    assert (train, held_out) == split_records(records, 0.1, seed=0)
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    _, held_again = split_records(shuffled, 0.1, seed=0)
    assert {normalized_text(r) for r in held_again} == {normalized_text(r) for r in held_out}
    _, other_seed = split_records(records, 0.1, seed=1)
    assert {normalized_text(r) for r in other_seed} != {normalized_text(r) for r in held_out}


def test_split_fraction_and_stratification():
    records = make(600)
    train, held_out = split_records(records, 0.1)
    assert len(train) + len(held_out) == 600
    assert 55 <= len(held_out) <= 65
    strata = Counter((r.metadata.subject, r.metadata.teaching_style) for r in held_out)
    assert len(strata) == 6 and all(8 <= n <= 12 for n in strata.values()), strata


def test_no_exact_duplicate_across_splits():
    records = make(100)
    noisy = records + [Example(instruction=r.instruction.upper(), response="  " + r.response, metadata=r.metadata)
                       for r in records[:30]]
    train, held_out, stats = split_with_stats(noisy, 0.2)
    assert stats.duplicates_dropped == 30 and len(train) + len(held_out) == 100
    assert not {normalized_text(r) for r in train} & {normalized_text(r) for r in held_out}


def test_same_question_and_near_duplicates_stay_on_one_side():
    records = make(200)
    for i in range(0, 40, 2):  # same question, different answer
        records[i + 1].instruction = records[i].instruction
    for i in range(40, 80, 2):  # near-duplicates: a word added to the question
        records[i + 1].instruction = records[i].instruction + " please"
        records[i + 1].response = records[i].response
    train, held_out = split_records(records, 0.25)
    assert not leakage(train, held_out).pairs
    # Without grouping, some of those 40 pairs would straddle the split.
    train, held_out = split_records(records, 0.25, near_threshold=None)
    assert [p.kind for p in leakage(train, held_out).pairs] and all(
        p.kind == "near" for p in leakage(train, held_out).pairs)


def test_split_edge_cases():
    assert split_records([], 0.1) == ([], [])
    one = make(1)
    assert split_records(one, 0.0) == (one, [])
    with pytest.raises(ValueError):
        split_records(one, 1.0)
    assert dedupe(one + one) == (one, 1)


def test_balance_upsamples_thin_cells_only():
    records = make(30)  # styles 0..2 → 10 each
    thin = [Example(instruction=f"analogy {i}", response="like a pizza", metadata=Metadata(
        grade_level=GradeLevel.ELEMENTARY, teaching_style=TeachingStyle.ANALOGY_BASED)) for i in range(3)]
    unlabeled = [Example(instruction="no labels", response="x")]
    data = records + thin + unlabeled
    out = balance_records(data, floor=10, seed=0)
    assert out[: len(data)] == data
    counts = cell_counts(out)
    assert counts[("analogy_based", "elementary")] == 10
    assert counts[(None, None)] == 1 and counts[("socratic", "middle_school")] == 10
    copies = Counter(r.instruction for r in out[len(data):])
    assert sorted(copies.values()) == [2, 2, 3]  # spread evenly over the cell's records
    assert balance_records(data, floor=10, seed=0) == out
    assert out[len(data)] is not thin[0] and out[len(data)] is not thin[1] and out[len(data)] is not thin[2]
    assert balance_records(data, floor=0) == data
    with pytest.raises(ValueError):
        balance_records(data, floor=-1)


@pytest.mark.parametrize(("module", "other"), [("split", "quality"), ("quality", "split")])
def test_split_and_quality_do_not_import_each_other(module: str, other: str) -> None:
    # They share what makes records the same through data/similarity.py, not through each other.
    path = Path(importlib.util.find_spec(f"edulora.data.{module}").origin)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module if node.level == 0 else f"edulora.data.{node.module}")
            imported.update(f"edulora.data.{alias.name}" for alias in node.names if node.level and not node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert "edulora.data.similarity" in imported
    assert f"edulora.data.{other}" not in imported, imported
