"""Agreement of edulora's heuristic metrics with MRBench's human labels.

    python -m edulora.evaluation.calibrate PATH.json [--dialogues START:END] [--split NAME]

PATH is a file in MRBench V2 format: a JSON array of dialogues, each with
``conversation_history``, ``Ground_Truth_Solution`` and ``anno_llm_responses`` (tutor name ->
``{"response", "annotation"}``). Every labelled tutor response is scored by
``answer_revealing`` and ``providing_guidance`` and compared with the annotation:

- ``revealing_of_the_answer``: "No" vs "Yes" (both "Yes (and the answer is correct)" and
  "Yes (but the answer is incorrect)": the reply gave an answer away either way);
- ``providing_guidance``: the three labels "No", "To some extent", "Yes";
- ``providing_guidance_any``: the same collapsed to "No" vs "Yes" ("To some extent" counts as Yes).

The JSON printed holds, per dimension, accuracy, macro-F1, per-label F1, support and the
confusion matrix (rows: human label, columns: predicted, both in ``labels`` order).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EduloraError
from .metrics import answer_revealing, providing_guidance

REVEALING_LABELS = ("No", "Yes")
GUIDANCE_LABELS = ("No", "To some extent", "Yes")


@dataclass(frozen=True)
class LabelledResponse:
    """One tutor response of an MRBench dialogue with its human labels."""

    dialogue: int
    tutor: str
    history: str
    solution: str | None
    response: str
    revealing: str | None
    guidance: str | None


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


def _revealing_label(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    return "Yes" if raw.strip().lower().startswith("yes") else "No" if raw.strip().lower() == "no" else None


def _guidance_label(raw: Any) -> str | None:
    normalized = {label.lower(): label for label in GUIDANCE_LABELS}
    return normalized.get(raw.strip().lower()) if isinstance(raw, str) else None


def labelled_responses(dialogues: Sequence[dict[str, Any]], offset: int = 0) -> Iterator[LabelledResponse]:
    """Every tutor response of ``dialogues`` with its labels (None where a label is missing or unknown)."""
    for index, dialogue in enumerate(dialogues, start=offset):
        solution = dialogue.get("Ground_Truth_Solution")
        for tutor, item in (dialogue.get("anno_llm_responses") or {}).items():
            if not isinstance(item, dict) or not isinstance(item.get("response"), str):
                continue
            annotation = item.get("annotation") or {}
            yield LabelledResponse(
                dialogue=index,
                tutor=tutor,
                history=str(dialogue.get("conversation_history") or ""),
                solution=solution if isinstance(solution, str) else None,
                response=item["response"],
                revealing=_revealing_label(annotation.get("Revealing_of_the_Answer")),
                guidance=_guidance_label(annotation.get("Providing_Guidance")),
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
    """Accuracy, macro-F1 (unweighted mean of per-label F1), per-label F1, support and confusion."""
    matrix = confusion(gold, predicted, labels)
    f1 = per_label_f1(matrix)
    total = len(gold)
    return {
        "accuracy": round(sum(matrix[i][i] for i in range(len(labels))) / total, 4) if total else 0.0,
        "macro_f1": round(sum(f1) / len(f1), 4) if total else 0.0,
        "f1": {label: round(score, 4) for label, score in zip(labels, f1)},
        "support": {label: sum(matrix[i]) for i, label in enumerate(labels)},
        "labels": list(labels),
        "confusion_matrix": matrix,
    }


def calibrate(dialogues: Sequence[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """Agreement figures of ``answer_revealing`` and ``providing_guidance`` on ``dialogues``."""
    revealing_gold: list[str] = []
    revealing_pred: list[str] = []
    guidance_gold: list[str] = []
    guidance_pred: list[str] = []
    responses = 0
    for item in labelled_responses(dialogues, offset):
        responses += 1
        revealed = answer_revealing(item.response, history=item.history, reference=item.solution).revealed
        if item.revealing is not None:
            revealing_gold.append(item.revealing)
            revealing_pred.append("Yes" if revealed else "No")
        if item.guidance is not None:
            guidance_gold.append(item.guidance)
            guidance_pred.append(providing_guidance(item.response, history=item.history, answer_revealed=revealed).label)

    def any_guidance(labels: list[str]) -> list[str]:
        return ["No" if label == "No" else "Yes" for label in labels]

    return {
        "dialogues": len(dialogues),
        "responses": responses,
        "revealing_of_the_answer": agreement(revealing_gold, revealing_pred, REVEALING_LABELS),
        "providing_guidance": agreement(guidance_gold, guidance_pred, GUIDANCE_LABELS),
        "providing_guidance_any": agreement(any_guidance(guidance_gold), any_guidance(guidance_pred), ("No", "Yes")),
    }


def _slice(text: str) -> slice:
    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END (e.g. 61: or :61), got {text!r}") from None
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected START:END (e.g. 61: or :61), got {text!r}")
    return slice(parts[0], parts[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edulora.evaluation.calibrate",
        description="Agreement of edulora's answer-revealing and guidance metrics with MRBench human labels.",
    )
    parser.add_argument("path", help="MRBench V2 JSON file")
    parser.add_argument(
        "--dialogues", type=_slice, metavar="START:END", help="only these dialogues, by position (e.g. 61:)"
    )
    parser.add_argument("--split", help="only dialogues whose 'Split' field is this (train, val, test)")
    args = parser.parse_args(argv)
    try:
        dialogues = load_mrbench(args.path)
    except EduloraError as err:
        print(f"edulora: error: {err}", file=sys.stderr)
        return 2
    offset = 0
    if args.dialogues is not None:
        offset = range(len(dialogues))[args.dialogues].start if dialogues else 0
        dialogues = dialogues[args.dialogues]
    if args.split is not None:
        dialogues = [d for d in dialogues if str(d.get("Split", "")).lower() == args.split.lower()]
    result = {"file": str(args.path), **calibrate(dialogues, offset)}
    if args.dialogues is not None:
        result["selection"] = {"dialogues": f"{args.dialogues.start or ''}:{args.dialogues.stop or ''}"}
    if args.split is not None:
        result.setdefault("selection", {})["split"] = args.split
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
