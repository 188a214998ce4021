"""Deterministic, stratified train/eval split.

Each record goes to a split by a hash of its own text, not by its position, so reordering
a file never changes the split. Within each subject × style stratum the eval share is kept
close to the requested fraction.

Records that would leak across the split are kept together: exact duplicates are dropped
first, and records asking the same question, or near-duplicates (word-shingle Jaccard
≥ ``near_threshold``), form one group that goes to one side as a whole. That is the same
definition of leakage ``edulora data report --eval`` checks, so a split made here passes it.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass

from .schema import Record
from .similarity import normalized_text, prompt_key, record_text, similar_pairs


def fingerprint(records: list[Record]) -> str:
    """SHA-256 over the records' canonical JSON: equal data gives an equal fingerprint."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _rank(text: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def dedupe(records: list[Record]) -> tuple[list[Record], int]:
    """Records with exact duplicates (after case/whitespace normalization) dropped; keeps the first."""
    seen: set[str] = set()
    unique: list[Record] = []
    for record in records:
        key = normalized_text(record)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique, len(records) - len(unique)


def leakage_groups(records: list[Record], near_threshold: float | None = 0.8,
                   group_by: str | None = None) -> list[int]:
    """A group id per record: records sharing a prompt, nearly equal, or with the same ``metadata[group_by]``
    (e.g. MathDial's ``qid``: several students tutored on one problem) share a group."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_prompt: dict[str, int] = {}
    for index, record in enumerate(records):
        other = first_with_prompt.setdefault(prompt_key(record), index)
        parent[find(index)] = find(other)
    if near_threshold is not None and len(records) > 1:
        for a, b, _ in similar_pairs([normalized_text(r) for r in records], near_threshold):
            parent[find(a)] = find(b)
    if group_by:
        first_with_value: dict[str, int] = {}
        for index, record in enumerate(records):
            value = record.metadata.to_dict().get(group_by)
            if value is not None:
                other = first_with_value.setdefault(str(value), index)
                parent[find(index)] = find(other)
    return [find(i) for i in range(len(records))]


@dataclass
class SplitStats:
    train: int
    eval: int
    duplicates_dropped: int
    grouped_records: int  # records that share a leakage group with another record

    def summary_lines(self, train_out: object, eval_out: object, group_by: str | None = None) -> list[str]:
        lines = [f"train: {self.train} records -> {train_out}", f"eval: {self.eval} records -> {eval_out}"]
        if self.duplicates_dropped:
            lines.append(f"dropped {self.duplicates_dropped} exact duplicate record(s)")
        if self.grouped_records:
            lines.append(f"{self.grouped_records} records sharing a question, near-duplicate text"
                         f"{' or ' + group_by if group_by else ''} were kept on one side")
        return lines


def split_records(records: list[Record], eval_fraction: float = 0.1, seed: int = 0, *,
                  near_threshold: float | None = 0.8, group_by: str | None = None) -> tuple[list[Record], list[Record]]:
    """Split into (train, eval), stratified by subject and teaching style.

    Exact duplicates (after whitespace/case normalization) are dropped first, so no record
    can appear on both sides; records with the same prompt or near-duplicate text go to the
    same side (``near_threshold=None`` groups by prompt only). Every stratum with at least
    two groups gives at least one to eval when its quota reaches half a record. ``group_by`` names a
    metadata field whose records must stay on one side.
    """
    train, held_out, _ = split_with_stats(records, eval_fraction, seed, near_threshold=near_threshold,
                                          group_by=group_by)
    return train, held_out


def split_with_stats(records: list[Record], eval_fraction: float = 0.1, seed: int = 0, *,
                     near_threshold: float | None = 0.8,
                     group_by: str | None = None) -> tuple[list[Record], list[Record], SplitStats]:
    """``split_records`` plus counts of what was dropped and grouped."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError("eval_fraction must be in [0, 1)")
    unique, dropped = dedupe(records)
    group_of = leakage_groups(unique, near_threshold, group_by)
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(group_of):
        members[group].append(index)
    # A group is stratified by its first record and ranked by its first record's text.
    strata: dict[tuple, list[int]] = defaultdict(list)
    for group, indexes in members.items():
        meta = unique[indexes[0]].metadata
        strata[(meta.subject, meta.teaching_style)].append(group)
    eval_ids: set[int] = set()
    carry = 0.0  # fractional eval quota carried across strata keeps the total near the target
    for key in sorted(strata, key=lambda k: (str(k[0]), str(k[1]))):
        groups = sorted(strata[key], key=lambda g: _rank(normalized_text(unique[members[g][0]]), seed))
        size = sum(len(members[g]) for g in groups)
        quota = size * eval_fraction + carry
        take = int(quota)
        if eval_fraction > 0 and take == 0 and len(groups) >= 2 and quota >= 0.5:
            take = 1
        taken = 0
        for group in groups[:-1] if len(groups) > 1 else groups:  # leave train at least one group
            if taken >= take:
                break
            eval_ids.update(members[group])
            taken += len(members[group])
        carry = quota - taken
    train = [r for i, r in enumerate(unique) if i not in eval_ids]
    held_out = [r for i, r in enumerate(unique) if i in eval_ids]
    grouped = sum(len(m) for m in members.values() if len(m) > 1)
    return train, held_out, SplitStats(len(train), len(held_out), dropped, grouped)
