"""MODEL_CARD.md of the learned judges, rendered from what training measured (no number typed in)."""

from __future__ import annotations

from typing import Any

from ..mrbench import DIMENSIONS

#: Best macro-F1 of the BEA 2025 shared task on pedagogical ability (its tracks only), for comparison.
BEA_2025_BEST = {"mistake_identification": 0.72, "mistake_location": 0.60, "providing_guidance": 0.58,
                 "actionability": 0.71}


def _cell(scores: dict[str, Any], feature_set: str, dimension: str) -> str:
    result = scores.get(feature_set)
    if result is None:
        return "—"
    text = f"{result['macro_f1']:.3f}"
    return f"{text} (Yes F1 {result['f1']['Yes']:.3f})" if dimension == "revealing_of_the_answer" else text


def score_table(report: dict[str, Any]) -> str:
    """Markdown table: macro-F1 of rules / learned / combined per dimension (and revealing's "Yes" F1)."""
    lines = ["| dimension | labels | rules | learned | combined | BEA 2025 best |", "|---|---|---|---|---|---|"]
    for dimension, (_, labels) in DIMENSIONS.items():
        scores = report[dimension]
        support = next(iter(scores.values()))["support"]
        counts = " / ".join(f"{label} {support[label]}" for label in labels)
        best = BEA_2025_BEST.get(dimension)
        cells = " | ".join(_cell(scores, s, dimension) for s in ("rules", "learned", "combined"))
        lines.append(f"| {dimension} | {counts} | {cells} | {f'{best:.2f}' if best else '—'} |")
    return "\n".join(lines)


def model_card(info: dict[str, Any]) -> str:
    report = info["held_out_scores"]
    source = info["source"]
    chosen = info["selection"]["combined"]
    l2 = "; ".join(f"{dim} {chosen[dim]['l2']:g}" for dim in DIMENSIONS)
    nested = "; ".join(f"{dim} {c['cv'][str(c['l2'])]:.3f} -> {c['cv_offsets_nested']:.3f}"
                       for dim, c in ((dim, chosen[dim]) for dim in DIMENSIONS))
    return f"""# edulora learned judges (MRBench dimensions)

Eight small classification heads that judge a tutor's reply as MRBench's annotators did: mistake
identification, mistake location, revealing the answer, providing guidance, actionability, coherence,
tutor tone and human-likeness. They run on a CPU without network access.

## Model
- Input: the reply, the student's last turn, the tutor's turn before it and the teacher's key (worked
  solution) when there is one; embedded with {info['embedding_model']}, combined as
  `[r, s, r*s, |r-s|, r*t, r*k]`, cosines and surface counts (`learned`), plus edulora's rule metrics
  (answer revealing, answer correctness, guidance; `combined`). See `edulora/evaluation/judges/features.py`.
- Heads: one multinomial logistic regression per dimension and feature set, balanced class weights
  (capped at 10), L2 chosen by 5-fold cross-validation over training dialogues (combined: {l2}).
  Per-label offsets tuned on that CV's out-of-fold logits are added to a head's bias where offsets
  chosen on the other folds beat none (CV score without -> with them, combined: {nested}).
  Probabilities are those of the balanced (and offset) fit: a decision score between the labels, not
  how common a label is.
- Files: `judges.safetensors` (float32 weights, provenance and scores in its metadata).

## Data and license
- Trained on human labels of MRBench V2 ("Unifying AI Tutor Evaluation: An Evaluation Taxonomy for
  Pedagogical Ability Assessment of LLM-Powered AI Tutors", Maurya et al., NAACL 2025;
  github.com/kaushal0494/UnifyingAITutorEvaluation), licensed CC BY-SA 4.0.
- These weights are derived from that data and are therefore licensed **CC BY-SA 4.0** (attribution:
  MRBench's authors, as above; share-alike), unlike edulora's code (Apache-2.0).
- Training file: `{source['file']}` (sha256 `{source['sha256'][:16]}…`), {source['dialogues']} dialogues,
  {source['responses']} labelled responses; {len(info['trained_on'])} dialogues for training and selection,
  {len(info['held_out'])} held out (one in five by a hash of `conversation_id`; listed in the metadata).

## Held-out scores
Macro-F1 on the {report['responses']} responses of the {report['dialogues']} held-out dialogues, which were
used neither for training nor for choosing anything; `rules` exists only where edulora has a rule.
Counts are the human labels there. Rebuild: `edulora judges train {source['file']}`; re-score:
`edulora calibrate {source['file']} --unseen`.

{score_table(report)}

## Limits
- A few hundred training replies, from ~100 maths dialogues (MathDial, Bridge) and nine tutors:
  held-out scores on ~20 dialogues move by several points with the split; rare labels ("To some
  extent", "Offensive") are learned from a few dozen examples or fewer.
- The judges read English maths tutoring; other subjects and languages are outside what they saw.
- Sentence embeddings see what a reply is about more than whether its arithmetic is right: where a
  number must match the key, trust the rules (answer correctness).
"""
