"""Agreement of edulora's heuristic metrics with MRBench's human labels.

    python -m edulora.evaluation.calibrate PATH.json [--dialogues START:END] [--split NAME]
                                                     [--predictions OUT.jsonl]

PATH is a file in MRBench V2 format: a JSON array of dialogues, each with
``conversation_history``, ``Ground_Truth_Solution`` and ``anno_llm_responses`` (tutor name ->
``{"response", "annotation"}``). Every labelled tutor response is scored by
``answer_revealing``, ``answer_correctness`` and ``providing_guidance`` and compared with the
annotation:

- ``revealing_of_the_answer``: "No" vs "Yes" (both "Yes (and the answer is correct)" and
  "Yes (but the answer is incorrect)": the reply gave an answer away either way);
- ``answer_correctness``: "Correct" vs "Incorrect" ("Yes (but the answer is incorrect)": the reply
  asserts a wrong final answer), on dialogues with a worked solution (the key) only;
- ``providing_guidance``: the three labels "No", "To some extent", "Yes";
- ``providing_guidance_any``: the same collapsed to "No" vs "Yes" ("To some extent" counts as Yes).

The JSON printed holds, per dimension, accuracy, macro-F1, per-label F1, support and the
confusion matrix (rows: human label, columns: predicted, both in ``labels`` order).
``--predictions OUT.jsonl`` also writes one line per labelled response: its dialogue index, tutor
name, the human labels (as collapsed here, and the raw annotation) and edulora's label and score
for each dimension, so that agreement can be computed on any subset.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ..data.io import write_jsonl
from ..errors import EduloraError
from .answers import extract_final_answer
from .metrics import answer_metrics, providing_guidance

REVEALING_LABELS = ("No", "Yes")
CORRECTNESS_LABELS = ("Correct", "Incorrect")
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
    #: "Incorrect" for "Yes (but the answer is incorrect)", else "Correct"; None without a key
    #: (no worked solution) or without a revealing label.
    correctness: str | None = None
    #: The annotation as MRBench gives it (all eight labels).
    annotation: dict[str, Any] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return any(label is not None for label in (self.revealing, self.guidance))


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


def _correctness_label(raw: Any, has_key: bool) -> str | None:
    if not has_key or _revealing_label(raw) is None:
        return None
    return "Incorrect" if "incorrect" in raw.lower() else "Correct"


def _guidance_label(raw: Any) -> str | None:
    normalized = {label.lower(): label for label in GUIDANCE_LABELS}
    return normalized.get(raw.strip().lower()) if isinstance(raw, str) else None


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
            yield LabelledResponse(
                dialogue=index,
                tutor=tutor,
                history=str(dialogue.get("conversation_history") or ""),
                solution=solution,
                response=item["response"],
                revealing=_revealing_label(annotation.get("Revealing_of_the_Answer")),
                guidance=_guidance_label(annotation.get("Providing_Guidance")),
                correctness=_correctness_label(annotation.get("Revealing_of_the_Answer"), has_key),
                annotation=annotation,
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


@dataclass(frozen=True)
class Prediction:
    """edulora's label and score for one labelled response, beside the human labels."""

    item: LabelledResponse
    #: dimension -> (label, score); ``answer_correctness`` is None on a dialogue without a key.
    predicted: dict[str, tuple[str, float] | None]

    def row(self) -> dict[str, Any]:
        """The line ``--predictions`` writes."""
        human = {"revealing_of_the_answer": self.item.revealing, "answer_correctness": self.item.correctness,
                 "providing_guidance": self.item.guidance}
        predicted = {k: None if v is None else {"label": v[0], "score": v[1]} for k, v in self.predicted.items()}
        return {"dialogue": self.item.dialogue, "tutor": self.item.tutor, "human": human,
                "annotation": self.item.annotation, "predicted": predicted}


def predict(item: LabelledResponse) -> Prediction:
    """Score one response with the metrics, as ``edulora eval`` does."""
    reveal, correctness = answer_metrics(item.response, history=item.history, reference=item.solution)
    guidance = providing_guidance(item.response, history=item.history, answer_revealed=reveal.revealed)
    return Prediction(item, {
        "revealing_of_the_answer": ("Yes" if reveal.revealed else "No", reveal.score),
        "answer_correctness": (None if correctness.score is None else
                               ("Correct" if correctness.score == 1.0 else "Incorrect", correctness.score)),
        "providing_guidance": (guidance.label, guidance.score),
    })


def predictions(dialogues: Sequence[dict[str, Any]], offset: int = 0) -> list[Prediction]:
    """A ``Prediction`` for every labelled response of ``dialogues``."""
    return [predict(item) for item in labelled_responses(dialogues, offset) if item.labelled]


def summarize(predicted: Sequence[Prediction], dialogues: int, responses: int) -> dict[str, Any]:
    """Agreement figures of the predictions with the human labels, per dimension."""

    def pairs(dimension: str, human: str) -> tuple[list[str], list[str]]:
        kept = [(getattr(p.item, human), p.predicted[dimension]) for p in predicted]
        kept = [(gold, guess[0]) for gold, guess in kept if gold is not None and guess is not None]
        return [gold for gold, _ in kept], [guess for _, guess in kept]

    def any_guidance(labels: list[str]) -> list[str]:
        return ["No" if label == "No" else "Yes" for label in labels]

    guidance_gold, guidance_pred = pairs("providing_guidance", "guidance")
    return {
        "dialogues": dialogues,
        "responses": responses,
        "revealing_of_the_answer": agreement(*pairs("revealing_of_the_answer", "revealing"), REVEALING_LABELS),
        "answer_correctness": agreement(*pairs("answer_correctness", "correctness"), CORRECTNESS_LABELS),
        "providing_guidance": agreement(guidance_gold, guidance_pred, GUIDANCE_LABELS),
        "providing_guidance_any": agreement(any_guidance(guidance_gold), any_guidance(guidance_pred), ("No", "Yes")),
    }


def calibrate(dialogues: Sequence[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """Agreement figures of ``answer_revealing``, ``answer_correctness`` and ``providing_guidance``."""
    responses = sum(1 for _ in labelled_responses(dialogues, offset))
    return summarize(predictions(dialogues, offset), len(dialogues), responses)


def _slice(text: str) -> slice:
    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) != 2:
        raise typer.BadParameter(f"expected START:END (e.g. 61: or :61), got {text!r}", param_hint="--dialogues")
    return slice(parts[0], parts[1])


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


@app.command()
def run(
    path: Annotated[Path, typer.Argument(help="MRBench V2 JSON file", show_default=False)],
    dialogues: Annotated[str | None, typer.Option(metavar="START:END",
                                                  help="only these dialogues, by position (e.g. 61:)")] = None,
    split: Annotated[str | None, typer.Option(help="only dialogues whose 'Split' field is this (train, val, test)")] = None,
    predictions_path: Annotated[Path | None, typer.Option(
        "--predictions", metavar="OUT.jsonl", help="also write edulora's label and score for each labelled response",
    )] = None,
) -> None:
    """Agreement of edulora's answer-revealing, answer-correctness and guidance metrics with MRBench human labels."""
    selection = _slice(dialogues) if dialogues is not None else None
    chosen = load_mrbench(path)
    offset = 0
    if selection is not None:
        offset = range(len(chosen))[selection].start if chosen else 0
        chosen = chosen[selection]
    if split is not None:
        chosen = [d for d in chosen if str(d.get("Split", "")).lower() == split.lower()]
    predicted = predictions(chosen, offset)
    responses = sum(1 for _ in labelled_responses(chosen, offset))
    result = {"file": str(path), **summarize(predicted, len(chosen), responses)}
    if selection is not None:
        result["selection"] = {"dialogues": f"{selection.start if selection.start is not None else ''}:"
                                            f"{selection.stop if selection.stop is not None else ''}"}
    if split is not None:
        result.setdefault("selection", {})["split"] = split
    if predictions_path is not None:
        try:
            write_jsonl(predictions_path, (p.row() for p in predicted))
        except OSError as err:
            raise EduloraError(f"cannot write {predictions_path}: {err.strerror or err}") from err
    print(json.dumps(result, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2 for a usage error or bad input)."""
    command = typer.main.get_command(app)
    try:
        # Standalone mode: the library prints its own usage errors (exit 2) and help (exit 0).
        command.main(args=list(argv) if argv is not None else None, prog_name="python -m edulora.evaluation.calibrate")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except EduloraError as err:
        print(f"edulora: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
