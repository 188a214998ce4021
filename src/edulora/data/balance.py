"""Upsampling thin teaching style × grade level cells of a training set.

A dataset with 200 socratic middle-school replies and 4 analogy-based elementary ones
teaches the model the first far more than the second. Repeating the thin cells' records
up to a floor is a cheap counterweight. It only repeats what exists (an empty cell stays
empty), and it belongs after the train/eval split, on the training side only, or the
copies would leak into evaluation.
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict
from collections.abc import Sequence

from .schema import Record


def cell_of(record: Record) -> tuple[str | None, str | None]:
    """The (teaching style, grade level) cell a record is counted in."""
    meta = record.metadata
    return (
        meta.teaching_style.value if meta.teaching_style else None,
        meta.grade_level.value if meta.grade_level else None,
    )


def balance_records(records: Sequence[Record], floor: int, seed: int = 0) -> list[Record]:
    """The records plus copies of records from cells holding fewer than ``floor`` records.

    Each thin cell is filled up to ``floor`` by cycling through its records in a seeded
    shuffled order, so every record is repeated about equally often and the result is
    the same for the same seed. Records lacking a style or grade level are never copied:
    their cell is not a real gap in coverage. The originals come first, in their order;
    copies are independent objects, so editing one never changes another.
    """
    if floor < 0:
        raise ValueError("floor must be >= 0")
    cells: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        cells[cell_of(record)].append(index)
    rng = random.Random(seed)
    out = list(records)
    for key in sorted(cells, key=lambda k: (str(k[0]), str(k[1]))):
        members = cells[key]
        if None in key or len(members) >= floor:
            continue
        order = members[:]
        rng.shuffle(order)
        for n in range(floor - len(members)):
            out.append(copy.deepcopy(records[order[n % len(order)]]))
    return out


def cell_counts(records: Sequence[Record]) -> dict[tuple[str | None, str | None], int]:
    counts: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for record in records:
        counts[cell_of(record)] += 1
    return dict(counts)
