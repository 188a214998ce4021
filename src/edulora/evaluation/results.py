"""What an evaluation produces: per-reply scores, per-model means and rates, paired deltas.

Kept apart from the runner (which produces them) and the report (which renders them), so that
neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Defined apart so the report can use them without importing this module (which imports the report);
# importable from here too, beside the result types they name.
from .measures import GROUP_KEYS, LOWER_IS_BETTER, METRICS


@dataclass
class RecordInfo:
    index: int
    prompt: str
    reference: str
    subject: str | None
    grade_level: str | None
    teaching_style: str | None


@dataclass
class ReplyResult:
    record: int
    text: str
    new_tokens: int
    #: Wall time of the batch the reply was decoded in (shared with the replies decoded beside it).
    seconds: float
    metrics: dict[str, float | None]
    #: MRBench labels from an LLM judge, when one was used.
    judge: dict[str, str | None] | None = None


@dataclass
class Rate:
    """A proportion over replies (e.g. the share that give the answer away) with its 95% interval."""

    value: float
    low: float
    high: float
    #: Replies the rate is taken over (those where it applies, e.g. records with an answer key).
    n: int


@dataclass
class Retention:
    """How far a model has drifted from its base on general, non-tutoring requests (``evaluation.retention``)."""

    #: Mean over prompts of the mean per-token KL(tuned ‖ base), in nats, on the base's own greedy
    #: continuations; 0 for the base itself. With its bootstrap interval over prompts.
    drift: float
    low: float
    high: float
    #: Prompts measured, and continuation tokens the KL was averaged over.
    n: int
    tokens: int
    #: The drift in words (``retention.drift_reading``).
    reading: str
    #: Mean distinct-2 (unique word pairs / word pairs) of the model's own replies; 1.0 = no repeated pair.
    distinct_2: float
    #: Mean length, in words, of the longest word sequence that occurs twice in a reply.
    longest_repeat: float
    #: Share of replies that are empty or loop (a repeated span of ``DEGENERATE_SPAN`` words or more).
    degenerate: Rate
    #: The general prompts measured on (our packaged set, or the user's file).
    data: str = ""


@dataclass
class ModelResult:
    name: str
    source: str
    is_base: bool
    eval_loss: float | None
    perplexity: float | None
    eval_tokens: int
    tokens_per_s: float | None
    #: Generation wall time per reply (``generation_seconds`` / replies): replies are decoded together, so a
    #: reply's own ``ReplyResult.seconds`` is its batch's wall time, not its latency.
    mean_latency_s: float | None
    generation_seconds: float
    #: Peak resident memory of the process so far (MB); it includes everything loaded before.
    peak_rss_mb: float
    metrics: dict[str, float | None]
    replies: list[ReplyResult]
    #: Per-model pedagogy rates (``leak_rate``, ``incorrect_answer_rate``, ``question_rate``) with 95% CIs.
    rates: dict[str, Rate] = field(default_factory=dict)
    #: Drift from the base on general prompts (None when the evaluation skipped retention).
    retention: Retention | None = None


@dataclass
class Delta:
    """Mean paired difference ``model − reference`` on one metric, with a bootstrap interval."""

    model: str
    reference: str
    metric: str
    mean: float
    low: float
    high: float
    n: int


@dataclass
class HumanPreference:
    """How often a person rating a blind sheet (``evaluation.blind``) preferred ``model`` to ``other``."""

    model: str
    other: str
    wins: int
    losses: int
    #: Rows rated "same", and rows left blank: outside the rate, which counts rows with a preference.
    ties: int
    unrated: int
    #: The ratings sheet read.
    sheet: str
    #: ``wins / (wins + losses)`` with its Wilson interval; None when no row showed a preference.
    rate: Rate | None


@dataclass
class EvalResult:
    records: list[RecordInfo]
    models: list[ModelResult]
    #: ``groups[key][value][model][metric]`` = mean; ``[key][value]["n"]`` = records in the group.
    groups: dict[str, dict[str, dict[str, Any]]]
    deltas: list[Delta]
    settings: dict[str, Any]
    #: Rows of the run's metrics.jsonl (step, loss, eval_loss, …), for the loss curves.
    training_log: list[dict[str, Any]] = field(default_factory=list)
    run_dir: str | None = None
    judge_model: str | None = None
    #: A person's preferences from a blind sheet read back (``blind.read_ratings``), when given.
    human: list[HumanPreference] = field(default_factory=list)

    def model(self, name: str) -> ModelResult:
        return next(r for r in self.models if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_reports(self, out_dir: str | Path | None = None, html_path: str | Path | None = None,
                      json_path: str | Path | None = None, markdown_path: str | Path | None = None) -> dict[str, Path]:
        """Write report.html / report.md / report.json into ``out_dir`` (or only to the paths given).

        Returns ``{"html" | "json" | "markdown": path}`` for what was written.
        """
        # Imported here: the report pulls in templates and plotting, which a result alone does not need.
        from .report import write_reports

        return write_reports(self, out_dir, html_path=html_path, json_path=json_path, markdown_path=markdown_path)
