"""Per-model pedagogy rates with 95% Wilson intervals (provisional: the answer-correctness metric lands next)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..data.schema import Record
from .results import Rate


def wilson(successes: int, n: int, z: float = 1.96) -> Rate:
    """Wilson's score interval: unlike the normal approximation it stays inside [0, 1] and is honest at 0/n."""
    if n == 0:
        return Rate(math.nan, math.nan, math.nan, 0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Rate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def pedagogy_rates(replies: Sequence[str], records: Sequence[Record]) -> dict[str, Rate]:
    from . import metrics as m

    keyed = [(reply, r) for reply, r in zip(replies, records) if r.metadata.answer is not None]
    leaks = sum(m.answer_revealing(reply, answer=r.metadata.answer).revealed for reply, r in keyed)
    questions = sum("?" in reply for reply in replies)
    return {"leak_rate": wilson(leaks, len(keyed)), "incorrect_answer_rate": wilson(0, 0),
            "question_rate": wilson(questions, len(replies))}
