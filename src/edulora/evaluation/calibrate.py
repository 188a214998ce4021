"""Agreement of edulora's judges with MRBench's human labels: rules, learned and combined.

    edulora calibrate PATH.json [--dialogues START:END] [--split NAME] [--unseen] [--predictions OUT.jsonl]

PATH is a file in MRBench V2 format (``mrbench.py``). Every labelled tutor response is judged three ways
and compared with its annotation, per dimension:

- ``rules``: the rule metrics, where they exist: ``answer_revealing`` (revealing of the answer: "No"
  vs "Yes", right or wrong), ``providing_guidance`` (three labels) and ``answer_correctness``
  ("Correct" vs "Incorrect", on dialogues with a key only; rules alone, a learned judge cannot check
  arithmetic);
- ``learned``: the learned judges on embeddings (``judges``), all eight dimensions;
- ``combined``: the learned judges that also read the rule metrics.

``unseen=True`` keeps only dialogues the judges were neither trained nor selected on (by
``conversation_id``): on the training file that is the held-out fifth the model card reports.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.io import atomic_write_text, write_jsonl
from ..data.outputs import check_outputs
from ..errors import EduloraError
from .judges import FEATURE_SETS, Judgement, Judges, load_judges, verdict_rows
from .judges.features import Embedder, JudgeInput, rule_labels
from .mrbench import CORRECTNESS, DIMENSIONS, LabelledResponse, agreement, labelled_responses, load_mrbench

#: Dimensions the rules judge, with their labels (answer correctness is not an MRBench field of its own).
RULE_DIMENSIONS = {"revealing_of_the_answer": ("No", "Yes"), "providing_guidance": DIMENSIONS["providing_guidance"][1],
                   "answer_correctness": CORRECTNESS}
SOURCES = ("rules", *FEATURE_SETS)


@dataclass(frozen=True)
class Prediction:
    """Rules' and judges' verdicts on one labelled response, beside the human labels."""

    item: LabelledResponse
    #: dimension -> (label, score) of the rules; ``answer_correctness`` is None without a key.
    rules: dict[str, tuple[str, float] | None]
    #: feature set -> dimension -> verdict of the learned judges
    judged: dict[str, dict[str, Judgement]]
    #: Was this dialogue among those the judges were trained or selected on?
    seen: bool = False

    def human(self, dimension: str) -> str | None:
        return self.item.correctness if dimension == "answer_correctness" else self.item.labels.get(dimension)

    def label(self, source: str, dimension: str) -> str | None:
        if source == "rules":
            verdict = self.rules.get(dimension)
            return verdict[0] if verdict else None
        judged = self.judged.get(source, {}).get(dimension)
        return judged.label if judged else None

    def row(self) -> dict[str, Any]:
        """The line ``--predictions`` writes."""
        human = {dim: self.human(dim) for dim in (*DIMENSIONS, "answer_correctness")}
        rules = {k: None if v is None else {"label": v[0], "score": v[1]} for k, v in self.rules.items()}
        judged = {s: verdict_rows([v])[0] for s, v in self.judged.items()}
        return {"dialogue": self.item.dialogue, "conversation_id": self.item.conversation, "tutor": self.item.tutor,
                "seen_by_judges": self.seen, "human": human, "annotation": self.item.annotation,
                "predicted": {"rules": rules, **judged}}


def parse_span(span: str) -> slice:
    """``"START:END"`` (either side may be empty) as a slice of dialogues; ``EduloraError`` otherwise."""
    try:
        bounds = [int(p) if p.strip() else None for p in span.split(":")]
    except ValueError:
        bounds = []
    if len(bounds) != 2:
        raise EduloraError(f"--dialogues: expected START:END (e.g. 61: or :61), got {span!r}")
    return slice(*bounds)


def select(dialogues: Sequence[dict[str, Any]], span: str | None = None, split: str | None = None,
           unseen_by: Judges | None = None) -> tuple[list[dict[str, Any]], int]:
    """The dialogues chosen by position (``span`` "START:END"), MRBench ``Split`` and, with ``unseen_by``,
    not trained on by those judges; and the position of the first (so item indexes stay the file's)."""
    chosen, offset = list(dialogues), 0
    if span is not None:
        window = parse_span(span)
        offset = range(len(chosen))[window].start if chosen else 0
        chosen = chosen[window]
    if split is not None:
        chosen = [d for d in chosen if str(d.get("Split", "")).lower() == split.lower()]
    if unseen_by is not None:
        seen = unseen_by.trained_on
        chosen = [d for d in chosen if str(d.get("conversation_id")) not in seen]
    return chosen, offset


def predictions(dialogues: Sequence[dict[str, Any]], offset: int = 0, judges: Judges | None = None,
                embed: Embedder | None = None, learned: bool = True) -> list[Prediction]:
    """A ``Prediction`` for every labelled response of ``dialogues``; ``learned=False``: rules only
    (no model is loaded). ``judges``: default the shipped ones; ``embed``: default MiniLM."""
    items = [item for item in labelled_responses(dialogues, offset) if item.labelled]
    inputs = [JudgeInput(item.response, item.history, item.solution) for item in items]
    judges = (judges or load_judges()) if learned else None
    judged = judges.predict_sets(inputs, embed) if judges is not None else {}
    seen = judges.trained_on if judges is not None else frozenset()
    return [Prediction(item, rule_labels(x), {s: v[i] for s, v in judged.items()}, item.conversation in seen)
            for i, (item, x) in enumerate(zip(items, inputs, strict=True))]


def summarize(predicted: Sequence[Prediction], dialogues: int, responses: int) -> dict[str, Any]:
    """Agreement with the human labels per dimension and source (rules / learned / combined)."""
    out: dict[str, Any] = {"dialogues": dialogues, "responses": responses,
                           "seen_by_judges": sum(p.seen for p in predicted)}
    for dimension in (*DIMENSIONS, "answer_correctness"):
        labels = RULE_DIMENSIONS.get(dimension) or DIMENSIONS[dimension][1]
        scores = {}
        for source in SOURCES:
            pairs = [(p.human(dimension), p.label(source, dimension)) for p in predicted]
            pairs = [(g, q) for g, q in pairs if g is not None and q is not None]
            if pairs:
                scores[source] = agreement([g for g, _ in pairs], [q for _, q in pairs], labels)
        out[dimension] = scores
    return out


def calibrate(dialogues: Sequence[dict[str, Any]], offset: int = 0, judges: Judges | None = None,
              embed: Embedder | None = None, learned: bool = True) -> dict[str, Any]:
    """Agreement figures of rules, learned and combined judges with ``dialogues``' human labels."""
    responses = sum(1 for _ in labelled_responses(dialogues, offset))
    return summarize(predictions(dialogues, offset, judges, embed, learned), len(dialogues), responses)


def calibrate_file(path: str | Path, span: str | None = None, split: str | None = None, unseen: bool = False,
                   predictions_path: str | Path | None = None, weights: str | Path | None = None,
                   learned: bool = True, json_path: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """``edulora calibrate``: the agreement on the chosen dialogues of an MRBench file (see ``select``),
    with one line per labelled response written to ``predictions_path`` and the agreement to ``json_path``
    when given (never written onto an input; an existing one replaced only with ``overwrite``)."""
    check_outputs({"MRBENCH": path, "--judges": weights}, {"--predictions": predictions_path, "--json": json_path},
                  overwrite=overwrite)
    judges = load_judges(weights) if learned else None
    chosen, offset = select(load_mrbench(path), span, split, judges if unseen else None)
    predicted = predictions(chosen, offset, judges, learned=learned)
    if predictions_path is not None:
        write_jsonl(predictions_path, (p.row() for p in predicted))
    result = {"file": str(path), **summarize(predicted, len(chosen), sum(1 for _ in labelled_responses(chosen)))}
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
    return result


def to_text(result: dict[str, Any]) -> str:
    """The agreement as a plain table: per dimension and source, macro-F1, accuracy and per-label F1."""
    lines = [f"{result['dialogues']} dialogues, {result['responses']} responses"
             + (f" ({result['seen_by_judges']} from dialogues the judges were trained on)"
                if result.get("seen_by_judges") else ""),
             f"{'dimension':<24} {'source':<9} {'n':>5} {'macro-F1':>8} {'accuracy':>8}  F1 per label"]
    for dimension in (*DIMENSIONS, "answer_correctness"):
        for source, score in result.get(dimension, {}).items():
            per_label = ", ".join(f"{label} {f1:.3f}" for label, f1 in score["f1"].items())
            n = sum(score["support"].values())
            lines.append(f"{dimension:<24} {source:<9} {n:>5} {score['macro_f1']:>8.3f} {score['accuracy']:>8.3f}  "
                         f"{per_label}")
    return "\n".join(lines)
