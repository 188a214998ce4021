"""``model: "auto"``: send each question to the adapter whose subject fits it best.

Each adapter gets a profile from two sentence embeddings (all-MiniLM-L6-v2): its metadata
written out as a sentence ("a mathematics tutor for middle school students …"), and the
centroid of the questions it was evaluated on (the run directory's held-out records). The
description alone is thin for a subject whose name rarely appears in questions ("photosynthesis"
says biology without saying it); the centroid fills that in when it is there.

A question whose best score stays under ``threshold`` fits no adapter and goes to the
``fallback`` (the base model unless configured): a general model answers off-topic questions
better than a tutor tuned on another subject. Without the embedding model installed, routing
falls back to matching subject names and their aliases as words.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ..data.formats import iter_format_records
from ..data.schema import SUBJECT_ALIASES, Example
from ..errors import EduloraError
from ..formatting import Message
from .adapters import AdapterSpec

log = logging.getLogger(__name__)

#: Questions per adapter for its centroid; more adds little to a mean and costs start-up time.
CENTROID_QUESTIONS = 200
#: Recent student turns embedded together, so "why?" after a biology answer still reads as biology.
QUESTION_TURNS = 3


@dataclass(frozen=True)
class Route:
    #: Adapter name, or None for the base model.
    adapter: str | None
    score: float
    reason: str


def describe(spec: AdapterSpec) -> str:
    """The adapter's metadata as a sentence, the shape of text MiniLM compares best."""
    info = spec.info
    subject = (info.subject or spec.name).replace("_", " ")
    text = f"A {subject} tutor"
    if info.grade_level:
        text += f" for {info.grade_level.replace('_', ' ')} students"
    if info.teaching_style:
        text += f", teaching in a {info.teaching_style.replace('_', ' ')} style"
    text += f". Questions about {subject}."
    return f"{text} {info.description}".strip()


def training_questions(spec: AdapterSpec, limit: int = CENTROID_QUESTIONS) -> list[str]:
    if spec.run_dir is None:
        return []
    questions: list[str] = []
    try:
        for _, record in iter_format_records(spec.run_dir.eval_file):
            if isinstance(record, Example):
                questions.append(record.instruction)
            elif hasattr(record, "turns"):
                questions.extend(t.content for t in record.turns[:3] if t.role == "user")
            if len(questions) >= limit:
                break
    except EduloraError as err:  # a missing or unreadable file only weakens routing
        log.warning("routing for %s without its eval questions: %s", spec.name, err)
    return questions[:limit]


def question_text(messages: Sequence[Message]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return "\n".join(users[-QUESTION_TURNS:])


def _normalize(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


class Router:
    def __init__(self, adapters: Sequence[AdapterSpec], threshold: float = 0.2, fallback: str | None = None,
                 use_embeddings: bool = True):
        self.adapters = list(adapters)
        self.threshold = threshold
        self.fallback = fallback
        self.use_embeddings = use_embeddings
        self._lock = threading.Lock()  # the embedding tokenizer is not safe across threads
        self._profiles: dict[str, tuple[list[float], list[float] | None]] | None = None
        self._embed = None
        if use_embeddings and self.adapters:
            try:
                from ..evaluation.embeddings import embed, model_dir

                model_dir()
                self._embed = embed
            except EduloraError as err:
                log.warning("auto routing by subject keywords only: %s", err)

    @property
    def method(self) -> str:
        return "embeddings" if self._embed else "keywords"

    def prepare(self) -> None:
        """Embed the adapter profiles now (a second or two) rather than on the first ``auto`` request."""
        if self._embed is None or self._profiles is not None:
            return
        with self._lock:
            profiles = {}
            for spec in self.adapters:
                description = self._embed([describe(spec)])[0]
                questions = training_questions(spec)
                centroid = None
                if questions:
                    vectors = self._embed(questions)
                    centroid = _normalize([sum(col) / len(vectors) for col in zip(*vectors)])
                profiles[spec.name] = (description, centroid)
            self._profiles = profiles

    def scores(self, text: str) -> dict[str, float]:
        if self._embed is None:
            return {spec.name: self._keyword_score(spec, text) for spec in self.adapters}
        self.prepare()
        with self._lock:
            query = self._embed([text])[0]
        out = {}
        for name, (description, centroid) in (self._profiles or {}).items():
            by_description = _dot(query, description)
            out[name] = by_description if centroid is None else 0.5 * by_description + 0.5 * _dot(query, centroid)
        return out

    @staticmethod
    def _keyword_score(spec: AdapterSpec, text: str) -> float:
        subject = (spec.info.subject or spec.name).lower()
        words = {alias for alias, canonical in SUBJECT_ALIASES.items() if canonical == subject}
        words |= {subject, subject.replace("_", " ")}
        return 1.0 if any(re.search(rf"\b{re.escape(w)}\b", text.lower()) for w in words) else 0.0

    def route(self, messages: Sequence[Message]) -> Route:
        if not self.adapters:
            return Route(None, 0.0, "no adapters loaded")
        text = question_text(messages)
        scores = self.scores(text)
        best = max(scores, key=lambda name: scores[name])
        if scores[best] < self.threshold:
            return Route(self.fallback, scores[best],
                         f"no adapter fits (best: {best} at {scores[best]:.2f} < {self.threshold}); fallback")
        return Route(best, scores[best], f"{self.method} similarity {scores[best]:.2f}")
