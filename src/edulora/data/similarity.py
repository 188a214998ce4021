"""What makes two records the same: the text that identifies a record, its prompt, and near-duplicates.

Both the train/eval split (``split.py``: records that would leak across the split stay together)
and the dataset report (``quality.py``: duplicates and leakage findings) use these, so the two
agree on what a duplicate or a leak is — and neither imports the other.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

from .schema import Dialogue, Example, Record


def record_text(record: Record) -> str:
    """The text that identifies a record (used for hashing and duplicate checks)."""
    if isinstance(record, Example):
        return "\n".join(part for part in (record.instruction, record.context or "", record.response))
    return "\n".join(f"{t.role}: {t.content}" for t in record.turns)


def normalized_text(record: Record) -> str:
    return " ".join(record_text(record).lower().split())


def prompt_key(record: Record) -> str:
    """The normalized student side of a record: instruction + context, or the user turns."""
    if isinstance(record, Dialogue):
        text = "\n".join(t.content for t in record.turns if t.role == "user")
    else:
        text = f"{record.instruction}\n{record.context or ''}"
    return " ".join(text.lower().split())


_WORD = re.compile(r"\w+")
_BANDS, _ROWS = 20, 5  # 100 MinHash values; pairs at Jaccard 0.8 collide in some band with p > 0.999
_STAR_BUCKET = 100  # beyond this many members a bucket is compared against its first member only


def shingles(text: str, k: int = 3) -> set[int]:
    """Hashes of the text's k-word shingles (lower-cased words, punctuation ignored)."""
    words = _WORD.findall(text.lower())
    if len(words) <= k:
        return {zlib.crc32(" ".join(words).encode())} if words else set()
    return {zlib.crc32(" ".join(words[i:i + k]).encode()) for i in range(len(words) - k + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def similar_pairs(texts: Sequence[str], threshold: float = 0.8, k: int = 3, seed: int = 0) -> list[tuple[int, int, float]]:
    """Index pairs ``(i, j, jaccard)`` with word-shingle Jaccard ≥ ``threshold``.

    MinHash with LSH banding finds candidate pairs in about linear time; each candidate is
    then checked with the exact Jaccard, so no reported pair is a false positive.
    """
    import numpy as np

    sets = [shingles(t, k) for t in texts]
    rng = np.random.default_rng(seed)
    perms = _BANDS * _ROWS
    mul = rng.integers(1, 2**63 - 1, size=perms, dtype=np.uint64) | np.uint64(1)
    add = rng.integers(0, 2**63 - 1, size=perms, dtype=np.uint64)
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for index, items in enumerate(sets):
        if not items:
            continue
        values = np.fromiter(items, dtype=np.uint64, count=len(items))
        # Multiply-add-shift hashing: uint64 arithmetic wraps, the high 32 bits are the hash.
        signature = ((values[:, None] * mul[None, :] + add[None, :]) >> np.uint64(32)).min(axis=0)
        for band in range(_BANDS):
            buckets[(band, signature[band * _ROWS:(band + 1) * _ROWS].tobytes())].append(index)
    checked: set[tuple[int, int]] = set()
    found: list[tuple[int, int, float]] = []
    for members in buckets.values():
        if len(members) < 2:
            continue
        if len(members) > _STAR_BUCKET:
            pairs: Iterable[tuple[int, int]] = ((members[0], m) for m in members[1:])
        else:
            pairs = ((a, b) for n, a in enumerate(members) for b in members[n + 1:])
        for a, b in pairs:
            if (a, b) in checked:
                continue
            checked.add((a, b))
            score = jaccard(sets[a], sets[b])
            if score >= threshold:
                found.append((a, b, score))
    return sorted(found)
