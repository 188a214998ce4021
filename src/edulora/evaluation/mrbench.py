"""MRBench V2 files: their tutor responses with the eight human labels, and agreement arithmetic.

A file is a JSON array of dialogues, each with ``conversation_id``, ``conversation_history``,
``Ground_Truth_Solution`` and ``anno_llm_responses`` (tutor name -> ``{"response", "annotation"}``).
Both the calibration (``calibrate.py``) and the learned judges' training (``judges/train.py``) read
them through this module, so the two always agree on what a label is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EduloraError
from .answers import extract_final_answer
from .judge import DIMENSIONS as JUDGE_DIMENSIONS
from .judge import normalize_label

YES_SCALE = ("No", "To some extent", "Yes")
#: Revealing is collapsed to "did the reply give an answer away", right or wrong: "No" / "Yes".
#: Whether a given answer was wrong is ``answer_correctness``, scored against the key by the rules.
REVEALING = ("No", "Yes")
CORRECTNESS = ("Correct", "Incorrect")

#: edulora's name of each dimension -> (MRBench's annotation field, the labels we predict, in order).
DIMENSIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mistake_identification": ("Mistake_Identification", YES_SCALE),
    "mistake_location": ("Mistake_Location", YES_SCALE),
    "revealing_of_the_answer": ("Revealing_of_the_Answer", REVEALING),
    "providing_guidance": ("Providing_Guidance", YES_SCALE),
    "actionability": ("Actionability", YES_SCALE),
    "coherence": ("Coherence", YES_SCALE),
    "tutor_tone": ("Tutor_Tone", ("Encouraging", "Neutral", "Offensive")),
    "human_likeness": ("humanlikeness", YES_SCALE),
}
assert set(DIMENSIONS) == set(JUDGE_DIMENSIONS)  # the LLM judge and the learned judges rate the same things


def label_of(dimension: str, raw: Any) -> str | None:
    """The label of ``dimension`` in our label set for MRBench's raw annotation value (None if unknown)."""
    label = normalize_label(dimension, raw)
    if dimension == "revealing_of_the_answer" and label is not None:
        return "No" if label == "No" else "Yes"
    return label


@dataclass(frozen=True)
class LabelledResponse:
    """One tutor response of an MRBench dialogue with its human labels."""

    dialogue: int
    tutor: str
    history: str
    solution: str | None
    response: str
    #: dimension -> label in ``DIMENSIONS``' label set; None where MRBench's label is missing or unknown.
    labels: dict[str, str | None] = field(default_factory=dict)
    #: "Incorrect" for "Yes (but the answer is incorrect)", else "Correct"; None without a key
    #: (no worked solution) or without a revealing label.
    correctness: str | None = None
    #: The annotation as MRBench gives it (all eight labels).
    annotation: dict[str, Any] = field(default_factory=dict)
    #: MRBench's ``conversation_id``: dialogues sharing one are kept on the same side of every split.
    conversation: str = ""

    @property
    def revealing(self) -> str | None:
        return self.labels.get("revealing_of_the_answer")

    @property
    def guidance(self) -> str | None:
        return self.labels.get("providing_guidance")

    @property
    def labelled(self) -> bool:
        return any(label is not None for label in self.labels.values())


def load_mrbench(path: str | Path) -> list[dict[str, Any]]:
    """The dialogues of an MRBench V2 JSON file; raises ``EduloraError`` on a file that is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as err:
        raise EduloraError(f"cannot read {path}: {err.strerror or err}") from err
    except json.JSONDecodeError as err:
        raise EduloraError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, list) or not all(isinstance(d, dict) and "anno_llm_responses" in d for d in data):
        raise EduloraError(f"{path}: expected a JSON array of MRBench dialogues with 'anno_llm_responses'")
    return data


def labelled_responses(dialogues: Sequence[dict[str, Any]], offset: int = 0) -> Iterator[LabelledResponse]:
    """Every tutor response of ``dialogues`` with its labels (None where a label is missing or unknown)."""
    for index, dialogue in enumerate(dialogues, start=offset):
        solution = dialogue.get("Ground_Truth_Solution")
        solution = solution if isinstance(solution, str) else None
        has_key = extract_final_answer(solution) is not None
        for tutor, item in (dialogue.get("anno_llm_responses") or {}).items():
            if not isinstance(item, dict) or not isinstance(item.get("response"), str):
                continue
            annotation = item.get("annotation") if isinstance(item.get("annotation"), dict) else {}
            labels = {dim: label_of(dim, annotation.get(field_name)) for dim, (field_name, _) in DIMENSIONS.items()}
            revealing = labels["revealing_of_the_answer"]
            raw = str(annotation.get("Revealing_of_the_Answer", "")).lower()
            yield LabelledResponse(
                dialogue=index, tutor=tutor, history=str(dialogue.get("conversation_history") or ""),
                solution=solution, response=item["response"], labels=labels,
                correctness=None if not has_key or revealing is None else "Incorrect" if "incorrect" in raw else "Correct",
                annotation=annotation, conversation=str(dialogue.get("conversation_id", index)),
            )


def confusion(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts ``matrix[i][j]`` of items labelled ``labels[i]`` and predicted ``labels[j]``."""
    position = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        matrix[position[g]][position[p]] += 1
    return matrix


def per_label_f1(matrix: list[list[int]]) -> list[float]:
    """F1 of each label from a confusion matrix; 0.0 for a label never labelled nor predicted."""
    scores = []
    for i in range(len(matrix)):
        true_positive = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        scores.append(2 * true_positive / (predicted + actual) if predicted + actual else 0.0)
    return scores


def agreement(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label F1, support and confusion.

    Macro-F1 averages the labels that occur, labelled or predicted (as scikit-learn's ``f1_score``
    does when not given the labels, and so as the BEA 2025 shared task scored): MRBench's
    "Offensive" tone, one response in a thousand, would otherwise put a 0 in every subset without it.
    """
    matrix = confusion(gold, predicted, labels)
    f1 = per_label_f1(matrix)
    seen = [score for i, score in enumerate(f1) if sum(matrix[i]) or sum(row[i] for row in matrix)]
    total = len(gold)
    return {
        "accuracy": round(sum(matrix[i][i] for i in range(len(labels))) / total, 4) if total else 0.0,
        "macro_f1": round(sum(seen) / len(seen), 4) if seen else 0.0,
        "f1": {label: round(score, 4) for label, score in zip(labels, f1)},
        "support": {label: sum(matrix[i]) for i, label in enumerate(labels)},
        "labels": list(labels),
        "confusion_matrix": matrix,
    }
