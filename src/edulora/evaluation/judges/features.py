"""What a learned judge reads: sentence embeddings of a reply and its context, and the rule metrics.

Two feature sets, so that the rules' contribution can be measured apart:

- ``learned``: MiniLM embeddings of the reply (r), the student's last turn (s), the tutor's turn
  before it (t) and the teacher's key (k): ``[r, s, r*s, |r-s|, r*t, r*k]`` plus the three cosines
  and a few surface counts (length, questions, exclamations, numbers). The products say how the
  reply relates to what it answers, which the reply's own vector cannot: "you forgot to carry the 1"
  is mistake identification only after a wrong sum.
- ``combined``: the same plus the rule metrics of ``metrics.py`` (answer revealing, answer
  correctness against the key, the guidance label and its parts), which are exact where the
  question is "did the reply state this number".

Embedding is the slow part; ``embed_unique`` embeds each distinct text once (a dialogue's student
turn is shared by all its replies), longest first in batches of similar length to spare padding.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..answers import extract_final_answer
from ..metrics import answer_metrics, asks_question, providing_guidance
from ..numbers import find_numbers
from ..text import History, parse_history, split_sentences, words

#: Turns texts into unit vectors, one per text (``edulora.evaluation.embeddings.embed`` is MiniLM).
Embedder = Callable[[list[str]], Sequence[Sequence[float]]]

#: ``learned``: embeddings and surface counts; ``combined``: those and the rule metrics.
FEATURE_SETS = ("learned", "combined")
#: Bumped whenever a feature changes meaning or order: weights trained on another version are refused.
FEATURE_VERSION = 1
#: The key's text is cut to its end, where worked solutions state the result (MiniLM reads 256 pieces).
KEY_CHARS = 600
#: Six MiniLM vectors of 384 lead every row; summary columns (cosines, counts, rules) follow.
EMBEDDING_COLUMNS = 6 * 384
_GUIDANCE = ("No", "To some extent", "Yes")
_NOT_AVAILABLE = re.compile(r"^\s*(not available|n/?a|none)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeInput:
    """One tutor reply to judge: the conversation before it, and the teacher's key when there is one."""

    reply: str
    #: "Tutor: … / Student: …" text, ``(role, text)`` turns or chat messages (``text.parse_history``).
    history: History = None
    #: A worked solution ending in the final answer, or the answer alone; None or "Not Available": no key.
    key: str | None = None

    @property
    def has_key(self) -> bool:
        return self.key is not None and not _NOT_AVAILABLE.match(self.key)


def context_texts(item: JudgeInput) -> tuple[str, str, str]:
    """The student's last turn, the tutor's last turn before it and the key's end ("" where absent)."""
    turns = parse_history(item.history)
    student = next((text for role, text in reversed(turns) if role == "student"), "")
    last_student = max((i for i, (role, _) in enumerate(turns) if role == "student"), default=len(turns))
    tutor = next((text for role, text in reversed(turns[:last_student]) if role == "tutor"), "")
    key = item.key[-KEY_CHARS:] if item.has_key and item.key else ""
    return student, tutor, key


def embed_unique(texts: Sequence[str], embed: Embedder, dim: int | None = None) -> dict[str, np.ndarray]:
    """Each distinct non-empty text of ``texts`` embedded once; "" maps to zeros of the model's size."""
    unique = sorted({t for t in texts if t.strip()}, key=lambda t: (-len(t), t))
    vectors = np.asarray(embed(unique), dtype=np.float64) if unique else np.zeros((0, dim or 0))
    table = dict(zip(unique, vectors, strict=True))
    table[""] = np.zeros(vectors.shape[1] if unique else (dim or 0))
    for text in texts:  # whitespace-only texts read as empty
        table.setdefault(text, table[""])
    return table


def surface_features(reply: str) -> list[float]:
    """Counts any reader sees at a glance, squashed to about [0, 1]."""
    sentences = split_sentences(reply)
    return [
        math.log1p(len(words(reply))) / 5,
        min(len(sentences), 10) / 10,
        min(reply.count("?"), 5) / 5,
        min(reply.count("!"), 5) / 5,
        min(len(find_numbers(reply)), 10) / 10,
        float(asks_question(reply)),
    ]


def rule_features(item: JudgeInput) -> list[float]:
    """The rule metrics of ``metrics.py`` on this reply, as numbers."""
    key = item.key if item.has_key else None
    reveal, correctness = answer_metrics(item.reply, history=item.history, reference=key)
    guidance = providing_guidance(item.reply, item.history, answer_revealed=reveal.revealed)
    keyed = correctness.score is not None and extract_final_answer(key) is not None
    return [
        reveal.score, float(reveal.revealed),
        float(keyed), float(keyed and correctness.score == 0.0),
        *(float(guidance.label == label) for label in _GUIDANCE),
        guidance.on_topic, float(bool(guidance.hints)), float(bool(guidance.explanations)),
        min(guidance.pointed_questions, 3) / 3, float(bool(guidance.vague_prompts)),
    ]


@functools.lru_cache(maxsize=1)  # a fixed count: worked out once, not on every prediction
def rule_columns() -> int:
    """How many trailing columns of a ``feature_matrix`` are rule metrics (``learned`` drops them)."""
    return len(rule_features(JudgeInput("")))


def feature_matrix(items: Sequence[JudgeInput], embed: Embedder) -> np.ndarray:
    """One row of ``combined`` features per item (float64); ``learned`` is all but the last
    ``rule_columns()``, so both sets come from one embedding pass."""
    contexts = [context_texts(item) for item in items]
    table = embed_unique([item.reply for item in items] + [t for c in contexts for t in c], embed)
    rows = []
    for item, (student, tutor, key) in zip(items, contexts, strict=True):
        r, s, t, k = (table[x] for x in (item.reply, student, tutor, key))
        rows.append(np.concatenate([
            r, s, r * s, np.abs(r - s), r * t, r * k,
            np.array([r @ s, r @ t, r @ k, float(bool(key))]), np.array(surface_features(item.reply)),
            np.array(rule_features(item)),
        ]))
    return np.stack(rows) if rows else np.zeros((0, 0))


def rule_labels(item: JudgeInput) -> dict[str, tuple[str, float] | None]:
    """The rules' own verdicts, where rules exist: revealing (any answer given away), guidance, and
    answer correctness against the key (None without one) -- the "rules" column of a calibration."""
    key = item.key if item.has_key else None
    reveal, correctness = answer_metrics(item.reply, history=item.history, reference=key)
    guidance = providing_guidance(item.reply, item.history, answer_revealed=reveal.revealed)
    return {
        "revealing_of_the_answer": ("Yes" if reveal.revealed else "No", reveal.score),
        "providing_guidance": (guidance.label, guidance.score),
        "answer_correctness": (None if correctness.score is None else
                               ("Correct" if correctness.score == 1.0 else "Incorrect", correctness.score)),
    }
