"""Deterministic, stratified train/eval split.

Each record goes to a split by a hash of its own text, not by its position, so that adding
records to a file never moves old records across the split. Within each subject × style
stratum the eval share is kept close to the requested fraction.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

from .schema import Dialogue, Example, Record


def record_text(record: Record) -> str:
    """The text that identifies a record (used for hashing and duplicate checks)."""
    if isinstance(record, Example):
        return "\n".join(part for part in (record.instruction, record.context or "", record.response))
    return "\n".join(f"{t.role}: {t.content}" for t in record.turns)


def normalized_text(record: Record) -> str:
    return " ".join(record_text(record).lower().split())


def fingerprint(records: list[Record]) -> str:
    """SHA-256 over the records' canonical JSON: equal data gives an equal fingerprint."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _rank(record: Record, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{normalized_text(record)}".encode()).hexdigest()


def split_records(records: list[Record], eval_fraction: float = 0.1, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Split into (train, eval), stratified by subject and teaching style.

    Exact duplicates (after whitespace/case normalization) are dropped first, so no record
    can appear on both sides. Every stratum with at least two records gives at least one
    to eval when ``eval_fraction > 0``.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError("eval_fraction must be in [0, 1)")
    seen: set[str] = set()
    unique: list[Record] = []
    for record in records:
        key = normalized_text(record)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    strata: dict[tuple, list[int]] = defaultdict(list)
    for index, record in enumerate(unique):
        meta = record.metadata
        strata[(meta.subject, meta.teaching_style)].append(index)
    eval_ids: set[int] = set()
    carry = 0.0  # fractional eval quota carried across strata keeps the total near the target
    for key in sorted(strata, key=lambda k: (str(k[0]), str(k[1]))):
        members = sorted(strata[key], key=lambda i: _rank(unique[i], seed))
        quota = len(members) * eval_fraction + carry
        take = int(quota)
        if eval_fraction > 0 and take == 0 and len(members) >= 2 and quota >= 0.5:
            take = 1
        take = min(take, len(members) - 1) if len(members) > 1 else take
        carry = quota - take
        eval_ids.update(members[:take])
    train = [r for i, r in enumerate(unique) if i not in eval_ids]
    held_out = [r for i, r in enumerate(unique) if i in eval_ids]
    return train, held_out
