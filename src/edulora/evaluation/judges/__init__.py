"""Learned judges of a tutor reply on MRBench's eight dimensions, trained on its human labels.

    from edulora.evaluation.judges import JudgeInput, load_judges

    judges = load_judges()                       # the weights shipped with edulora (CPU, no network)
    [verdict] = judges.predict([JudgeInput(reply, history, key)])
    verdict["providing_guidance"].label, verdict["providing_guidance"].probability

Each dimension has a multinomial logistic-regression head over ``features.feature_matrix`` (MiniLM
embeddings of the reply and its context, plus the rule metrics for the ``combined`` set). Heads were
trained with balanced class weights, so a probability says how sure the head is between the labels
as if they were equally common, not how common a label is. ``judges/MODEL_CARD.md`` gives the data,
the license of the weights (CC BY-SA 4.0, as MRBench's labels) and the scores on held-out dialogues;
``edulora judges train MRBENCH.json`` (``judges.train.train_judges``) rebuilds them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EduloraError
from ..judge import label_score
from ..mrbench import DIMENSIONS
from ..rates import rate, record_history
from .features import EMBEDDING_COLUMNS, FEATURE_SETS, FEATURE_VERSION, Embedder, JudgeInput, feature_matrix, rule_columns

__all__ = ["DIMENSIONS", "FEATURE_SETS", "Judgement", "JudgeInput", "Judges", "Head", "WEIGHTS", "load_judges"]

#: The shipped weights; MODEL_CARD.md beside them.
WEIGHTS = Path(__file__).with_name("judges.safetensors")
CARD = "MODEL_CARD.md"
_METADATA_KEY = "edulora_judges"


@dataclass(frozen=True)
class Judgement:
    """One dimension's verdict on one reply."""

    label: str
    #: The head's probability of ``label`` (the largest of ``probabilities``).
    probability: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Head:
    """A linear softmax head: ``softmax(((x - mean) / std) @ weight.T + bias)`` over ``labels``."""

    labels: tuple[str, ...]
    weight: np.ndarray  # (labels, features)
    bias: np.ndarray  # (labels,)

    def probabilities(self, standardized: np.ndarray) -> np.ndarray:
        logits = standardized @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class Judges:
    """Heads per feature set and dimension, with each feature set's standardization."""

    #: feature set -> dimension -> head
    heads: dict[str, dict[str, Head]]
    #: feature set -> (mean, std) of the training rows
    scaling: dict[str, tuple[np.ndarray, np.ndarray]]
    #: Provenance and scores (training file, dialogues trained on, L2 chosen, held-out agreement).
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dimensions(self) -> list[str]:
        return list(next(iter(self.heads.values()), {}))

    @property
    def trained_on(self) -> frozenset[str]:
        """MRBench ``conversation_id`` of every dialogue the heads were trained or selected on."""
        return frozenset(self.info.get("trained_on", ()))

    def predict(self, items: Sequence[JudgeInput], embed: Embedder | None = None,
                feature_set: str = "combined") -> list[dict[str, Judgement]]:
        """Every dimension's verdict on each item (``embed``: default MiniLM, loaded on first use)."""
        return self.predict_sets(items, embed, (feature_set,))[feature_set]

    def predict_sets(self, items: Sequence[JudgeInput], embed: Embedder | None = None,
                     feature_sets: Sequence[str] = FEATURE_SETS) -> dict[str, list[dict[str, Judgement]]]:
        """``predict`` for several feature sets at the cost of one embedding pass."""
        unknown = [s for s in feature_sets if s not in self.heads]
        if unknown:
            raise EduloraError(f"these judges have no {unknown[0]!r} heads (they have {sorted(self.heads)})")
        if not items:
            return {s: [] for s in feature_sets}
        combined = feature_matrix(items, embed or _minilm())
        return {s: self._verdicts(self.columns(combined, s), s) for s in feature_sets}

    @staticmethod
    def columns(combined: np.ndarray, feature_set: str) -> np.ndarray:
        """The ``feature_set`` columns of a ``combined`` feature matrix (``learned`` drops the rules)."""
        return combined if feature_set == "combined" else combined[:, : combined.shape[1] - rule_columns()]

    def probabilities(self, rows: np.ndarray, feature_set: str) -> dict[str, np.ndarray]:
        """dimension -> (items, labels) probabilities for feature rows in ``feature_set``'s layout."""
        mean, std = self.scaling[feature_set]
        if rows.shape[1] != mean.shape[0]:
            raise EduloraError(f"judge weights expect {mean.shape[0]} features, got {rows.shape[1]}: "
                               "retrain them with this edulora (edulora judges train MRBENCH.json)")
        standardized = (rows - mean.astype(np.float64)) / std.astype(np.float64)
        return {dim: head.probabilities(standardized) for dim, head in self.heads[feature_set].items()}

    def _verdicts(self, rows: np.ndarray, feature_set: str) -> list[dict[str, Judgement]]:
        out: list[dict[str, Judgement]] = [{} for _ in range(rows.shape[0])]
        for dim, probs in self.probabilities(rows, feature_set).items():
            labels = self.heads[feature_set][dim].labels
            for verdict, row in zip(out, probs, strict=True):
                best = int(np.argmax(row))
                verdict[dim] = Judgement(labels[best], round(float(row[best]), 4),
                                         {label: round(float(p), 4) for label, p in zip(labels, row)})
        return out

    def save(self, path: str | Path) -> None:
        """Write the heads as safetensors (float32), provenance as one JSON metadata entry.

        One metadata entry with sorted keys, because safetensors stores its metadata as a map whose
        order is not guaranteed: the same judges must give the same bytes."""
        from safetensors.numpy import save

        tensors: dict[str, np.ndarray] = {}
        labels: dict[str, dict[str, list[str]]] = {}
        for feature_set, heads in self.heads.items():
            mean, std = self.scaling[feature_set]
            tensors[f"{feature_set}.mean"], tensors[f"{feature_set}.std"] = _f32(mean), _f32(std)
            for dim, head in heads.items():
                tensors[f"{feature_set}.{dim}.weight"] = _f32(head.weight)
                tensors[f"{feature_set}.{dim}.bias"] = _f32(head.bias)
                labels.setdefault(feature_set, {})[dim] = list(head.labels)
        info = {**self.info, "labels": labels, "feature_version": FEATURE_VERSION}
        _write_shared(Path(path), save(tensors, metadata={_METADATA_KEY: json.dumps(info, sort_keys=True)}))

    @classmethod
    def load(cls, path: str | Path) -> Judges:
        """Judges saved by ``save``; ``EduloraError`` for a missing, foreign or out-of-date file."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="np") as f:
                info = json.loads((f.metadata() or {}).get(_METADATA_KEY, "null"))
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except (OSError, SafetensorError) as err:  # SafetensorError: not a safetensors file (bad header)
            raise EduloraError(f"cannot read judge weights {path}: {err}") from err
        if not isinstance(info, dict) or "labels" not in info:
            raise EduloraError(f"{path}: not edulora judge weights (no '{_METADATA_KEY}' metadata)")
        if info.get("feature_version") != FEATURE_VERSION:
            raise EduloraError(f"{path}: judge weights of feature version {info.get('feature_version')}, this "
                               f"edulora computes version {FEATURE_VERSION}: edulora judges train MRBENCH.json")
        heads = {s: {dim: Head(tuple(labels), tensors[f"{s}.{dim}.weight"], tensors[f"{s}.{dim}.bias"])
                     for dim, labels in dims.items()} for s, dims in info["labels"].items()}
        scaling = {s: (tensors[f"{s}.mean"], tensors[f"{s}.std"]) for s in heads}
        return cls(heads, scaling, {k: v for k, v in info.items() if k not in ("labels", "feature_version")})


def _write_shared(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically, readable by all (0644): the weights ship inside the
    package, which every user of an installation reads; a temp file alone would be private (0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def load_judges(path: str | Path | None = None) -> Judges:
    """The judges at ``path``, by default the ones shipped with edulora (read once per process)."""
    return _load(str(path or WEIGHTS))


def ready_judges(required: bool = False) -> Judges | None:
    """The shipped judges with MiniLM loaded now (so the first reply scored does not wait for it), when
    ``required`` or when MiniLM is installed; else None, and the rules alone score. Required without
    MiniLM: the embedding model's own one-line error naming it."""
    from .. import embeddings

    if not (required or embeddings.installed()):
        return None
    embeddings.embed([""])
    return load_judges()


@lru_cache(maxsize=4)
def _load(path: str) -> Judges:
    if not Path(path).is_file():
        raise EduloraError(f"no judge weights at {path}: edulora judges train MRBENCH.json builds them")
    return Judges.load(path)


def _minilm() -> Embedder:
    # Imported here: MiniLM (and torch) load only when a reply is judged.
    from ..embeddings import embed

    return embed


def verdict_rows(verdicts: Sequence[Mapping[str, Judgement]]) -> list[dict[str, dict[str, Any]]]:
    """Verdicts as plain JSON-ready dicts: dimension -> {"label", "probability", "probabilities"}."""
    return [{dim: {"label": j.label, "probability": j.probability, "probabilities": j.probabilities}
             for dim, j in verdict.items()} for verdict in verdicts]


#: The dimensions ``edulora eval`` reports from the learned (combined) judges: whether a tutor notices
#: the mistake, guides, leaves the student something to do, and gives the answer away.
EVAL_DIMENSIONS = ("mistake_identification", "providing_guidance", "actionability", "revealing_of_the_answer")
#: The prefix of their names in a report: ``judged_providing_guidance`` and so on.
PREFIX = "judged_"


def judged_names(verdicts: Sequence[Mapping[str, Judgement]]) -> list[str]:
    """The judged metrics' names, in report order, where there are verdicts (else none)."""
    return [PREFIX + dim for dim in EVAL_DIMENSIONS] if verdicts else []


def judge_records(replies: Sequence[str], records: Sequence[Any], embed: Embedder | None = None,
                  judges: Judges | None = None) -> list[dict[str, Judgement]]:
    """The combined judges' verdicts on ``replies``, one per record of ``records`` (its history before the
    reply and its key: ``metadata.solution``, else ``metadata.answer``)."""
    items = [JudgeInput(reply, record_history(record), record.metadata.solution or record.metadata.answer)
             for reply, record in zip(replies, records, strict=True)]
    embed = embed or _minilm()
    # The heads read MiniLM's 384-wide vectors; a stand-in embedder's (tests) gives no verdicts, not an error.
    if not items or len(embed([items[0].reply])[0]) * 6 != EMBEDDING_COLUMNS:
        return []
    return (judges or load_judges()).predict(items, embed)


def judged_metrics(verdict: Mapping[str, Judgement]) -> dict[str, float]:
    """A reply's verdicts as report metrics in [0, 1]: 1 "Yes", 0.5 "To some extent", 0 "No"."""
    return {PREFIX + dim: float(label_score(dim, verdict[dim].label) or 0.0) for dim in EVAL_DIMENSIONS}


def judged_rates(verdicts: Sequence[Mapping[str, Judgement]], confidence: float = 0.95) -> dict[str, Any]:
    """Share of replies judged "Yes" on each of ``EVAL_DIMENSIONS``, with its Wilson interval."""
    if not verdicts:
        return {}
    return {f"{PREFIX}{dim}_rate": rate(sum(v[dim].label == "Yes" for v in verdicts), len(verdicts), confidence)
            for dim in EVAL_DIMENSIONS}
