"""Evaluation reports: JSON for machines, Markdown for reading in a repository, one HTML file.

The HTML page (the ``eval_report.html.j2`` template) is self-contained: plots are PNGs embedded
as base64 data URIs and the style sheet is inline, so the file can be mailed or opened offline.
The template autoescapes everything: replies are model output and may contain anything.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import asdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.io import atomic_write_text
from ..templates import render
from .measures import GROUP_KEYS, LOWER_IS_BETTER, METRICS

if TYPE_CHECKING:  # only annotations: results.py calls this module, so importing it back would be a cycle
    from .results import EvalResult, ModelResult, Rate

METRIC_LABELS = {
    "clarity": "Explanation clarity", "grade_fit": "Grade-level fit", "concept_coverage": "Concept coverage",
    "outcome_alignment": "Learning-outcome alignment", "engagement": "Engagement",
    "style_adherence": "Teaching-style adherence", "answer_revealing": "Answer revealing (lower is better)",
    "guidance": "Providing guidance",
    "answer_correctness": "Answer correctness (no wrong answer asserted)",
}


#: Per-model pedagogy rates (``ModelResult.rates``), in report order.
RATE_LABELS = {"leak_rate": "leak rate where an answer was to be withheld",
               "incorrect_answer_rate": "incorrect-answer rate where keyed",
               "question_rate": "question rate"}
#: Shown where a model has no such rate (e.g. no record carried an answer key).
ABSENT = "—"


def _label(metric: str) -> str:
    """A metric's name as a reader sees it; never the code name, even for a metric added without a label."""
    if metric.startswith("judge_"):
        return "Judge: " + metric.removeprefix("judge_").replace("_", " ")
    if metric.startswith("judged_"):
        return "Learned judge: " + metric.removeprefix("judged_").replace("_", " ")
    return METRIC_LABELS.get(metric) or metric.replace("_", " ").capitalize()


def _rate_label(rate_name: str) -> str:
    if rate_name in RATE_LABELS:
        return RATE_LABELS[rate_name]
    if rate_name.startswith("judged_") and rate_name.endswith("_rate"):
        return "learned judge: " + rate_name.removeprefix("judged_").removesuffix("_rate").replace("_", " ") + " (Yes)"
    return rate_name.replace("_", " ")


def metric_names(result: EvalResult) -> list[str]:
    """The educational metrics, then any judge dimensions, in a stable order."""
    extra = sorted({k for r in result.models for k in r.metrics if k not in METRICS})
    return list(METRICS) + extra


def rate_names(result: EvalResult) -> list[str]:
    """The three pedagogy rates, then any other rate a model carries, in a stable order."""
    extra = sorted({k for r in result.models for k in r.rates if k not in RATE_LABELS})
    return list(RATE_LABELS) + extra


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ABSENT
    return f"{value:.{digits}f}"


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def to_json(result: EvalResult) -> dict[str, Any]:
    """Everything in the result, plus ``summary[model]``: the headline figures, flat."""
    summary = {}
    for r in result.models:
        rates = {name: (None if (rate := r.rates.get(name)) is None else
                        {"value": rate.value, "low": rate.low, "high": rate.high, "n": rate.n})
                 for name in rate_names(result)}
        summary[r.name] = {"eval_loss": r.eval_loss, "perplexity": r.perplexity, "tokens_per_s": r.tokens_per_s,
                           "mean_latency_s": r.mean_latency_s, "peak_rss_mb": r.peak_rss_mb, **r.metrics,
                           "rates": rates, "drift": r.retention and r.retention.drift,
                           "human_preference": next((asdict(p.rate) for p in result.human
                                                     if p.model == r.name and p.rate), None)}
    return {"summary": summary, **result.to_dict()}


# --------------------------------------------------------------------------------------------
# Plots (matplotlib without pyplot: no global state, no display needed)
# --------------------------------------------------------------------------------------------


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def loss_curve_png(log: Sequence[dict[str, Any]]) -> str | None:
    """Training loss and eval loss against optimizer step; None when the log has neither."""
    from matplotlib.figure import Figure

    train = [(row["step"], row["loss"]) for row in log if "step" in row and isinstance(row.get("loss"), (int, float))]
    evals = [(row["step"], row["eval_loss"]) for row in log
             if "step" in row and isinstance(row.get("eval_loss"), (int, float))]
    if not train and not evals:
        return None
    fig = Figure(figsize=(6.5, 3.2))
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="training loss", color="#4c72b0")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval loss", color="#dd8452")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per tutor token")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _grouped_bars(categories: Sequence[str], series: dict[str, Sequence[float | None]], ylabel: str,
                  title: str) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.5, 0.9 * len(categories) * max(1, len(series)) / 1.5), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(categories))]
        ax.bar(xs, [0.0 if v is None else v for v in values], width, label=name)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def metric_bars_png(result: EvalResult) -> str:
    names = metric_names(result)
    return _grouped_bars([_label(n).replace(" (lower is better)", " ↓") for n in names],
                         {r.name: [r.metrics.get(n) for n in names] for r in result.models},
                         "mean score", "Educational metrics per model")


def style_bars_png(result: EvalResult) -> str | None:
    styles = result.groups.get("teaching_style")
    if not styles:
        return None
    values = list(styles)
    return _grouped_bars(values, {r.name: [styles[v][r.name]["style_adherence"] for v in values] for r in result.models},
                         "teaching-style adherence", "Style adherence per declared teaching style")


# --------------------------------------------------------------------------------------------
# Tables (the same cells in Markdown and HTML)
# --------------------------------------------------------------------------------------------


def _technical_rows(result: EvalResult) -> list[list[str]]:
    return [[r.name, _fmt(r.eval_loss, 4), _fmt(r.perplexity, 2), _fmt(r.tokens_per_s, 1),
             _fmt(r.mean_latency_s, 2), _fmt(r.peak_rss_mb, 0)] for r in result.models]


#: The time column is the generation's wall time divided by its replies: the replies are decoded together (in
#: batches, or all in flight on llama.cpp), so no reply has a wait of its own to report.
TECHNICAL_HEADER = ["model", "eval loss", "perplexity", "tokens/s", "wall time per reply (s, all replies ÷ n)",
                    "peak RSS (MB)"]


def format_rate(rate: Rate | None) -> str:
    """``12.5% [5.0%, 27.1%] (n=40)``; ``—`` when the model has no such rate."""
    if rate is None:
        return ABSENT
    return f"{100 * rate.value:.1f}% [{100 * rate.low:.1f}%, {100 * rate.high:.1f}%] (n={rate.n})"


RETENTION_HEADER = ["model", "drift: KL per token (95% CI)", "reading", "distinct-2", "longest repeat (words)",
                    "degenerate replies (95% CI)"]


def _retention_table(result: EvalResult) -> tuple[list[str], list[list[str]]] | None:
    """Drift from the base on general prompts, and how repetitive each model's own replies are."""
    if not any(r.retention for r in result.models):
        return None
    rows = []
    for r in result.models:
        k = r.retention
        rows.append([r.name, ABSENT, ABSENT, ABSENT, ABSENT, ABSENT] if k is None else
                    [r.name, format_drift(k), k.reading.split(":")[0], _fmt(k.distinct_2), _fmt(k.longest_repeat, 1),
                     format_rate(k.degenerate)])
    return RETENTION_HEADER, rows


def format_drift(retention) -> str:
    """``0.123 [0.080, 0.170] (n=40)``: the drift score with its interval."""
    return f"{retention.drift:.3f} [{retention.low:.3f}, {retention.high:.3f}] (n={retention.n})"


def retention_note(result: EvalResult) -> str:
    """What the retention table measures and on what, in one paragraph."""
    measured = next((r.retention for r in result.models if r.retention), None)
    source = measured.data if measured else ""
    return (f"On {measured.n if measured else 0} general, non-tutoring prompts ({source}): mean per-token "
            "KL(tuned ‖ base) in nats along the base model's own greedy replies (0: identical to the base), "
            "and the repetitiveness of each model's own replies (degenerate: empty, or a repeated span of "
            "6+ words).")


def turns_note(result: EvalResult) -> str:
    """Which tutor turns the replies answer, said plainly: the numbers mean different things at each."""
    settings = result.settings
    turns, replies, records = settings.get("turns_scored"), settings.get("replies"), settings.get("records")
    if turns == "open":
        return (f"Turns scored: open — {replies} replies at every tutor turn of the {records} records before the "
                "student reached the key (--turns last: only each record's last turn).")
    if turns == "last":
        why = " (no multi-turn dialogue in the data)" if settings.get("turns") == "auto" else ""
        return f"Turns scored: last — each of the {records} records at its last tutor turn{why}."
    return ""


HUMAN_HEADER = ["model", "preferred over", "human preference where one was chosen (95% CI)", "same", "unrated",
                "sheet"]


def _human_table(result: EvalResult) -> tuple[list[str], list[list[str]]] | None:
    """A person's blind ratings (``blind.read_ratings``): how often they preferred each model."""
    if not result.human:
        return None
    return HUMAN_HEADER, [[p.model, p.other, format_rate(p.rate), str(p.ties), str(p.unrated), p.sheet]
                          for p in result.human]


def _rates_table(result: EvalResult) -> tuple[list[str], list[list[str]]]:
    names = rate_names(result)
    header = ["model", *[f"{_rate_label(n)} (95% CI)" for n in names]]
    return header, [[r.name, *[format_rate(r.rates.get(n)) for n in names]] for r in result.models]


def to_text(result: EvalResult) -> str:
    """The terminal summary: loss, speed and metric means per model, then the pedagogy rates."""
    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        return ["  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                          for i, (cell, w) in enumerate(zip(row, widths))) for row in [header, *rows]]

    names = metric_names(result)
    header = ["model", "eval loss", "tokens/s", *[n[:10] for n in names]]
    rows = [[r.name, _fmt(r.eval_loss, 4), _fmt(r.tokens_per_s, 1), *[_fmt(r.metrics.get(n)) for n in names]]
            for r in result.models]
    lines = [note for note in [turns_note(result)] if note] + [*table(header, rows), "", *table(*_rates_table(result))]
    if result.human:
        lines += ["", "Human preference (blind sheet)"] + table(*_human_table(result))
    retention = _retention_table(result)
    if retention:
        lines += ["", "Retention (drift from the base). " + retention_note(result)] + table(*retention)
    return "\n".join(lines)


def _delta_table(result: EvalResult) -> dict[str, Any]:
    """Deltas whose interval excludes 0 are coloured: green in the metric's good direction, red in the bad."""
    level = f"{100 * result.settings.get('confidence', 0.95):.0f}%"
    rows, classes = [], []
    for d in result.deltas:
        improves = (d.low > 0) if d.metric not in LOWER_IS_BETTER else (d.high < 0)
        worsens = (d.high < 0) if d.metric not in LOWER_IS_BETTER else (d.low > 0)
        rows.append([f"{d.model} − {d.reference}", _label(d.metric), f"{d.mean:+.3f}", f"[{d.low:+.3f}, {d.high:+.3f}]",
                     str(d.n)])
        classes.append(["", "", "better" if improves else "worse" if worsens else "", "", ""])
    return {"header": ["comparison", "metric", "mean Δ", f"{level} interval", "records"], "rows": rows,
            "classes": classes}


def _group_rows(result: EvalResult, groups: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [[value, str(entry["n"]), r.name, *[_fmt(entry[r.name].get(n)) for n in METRICS]]
            for value, entry in groups.items() for r in result.models]


def _metrics_table(result: EvalResult) -> tuple[list[str], list[list[str]]]:
    return (["metric", *[r.name for r in result.models]],
            [[_label(n), *[_fmt(r.metrics.get(n)) for r in result.models]] for n in metric_names(result)])


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _md(text: object) -> str:
    """One table cell: pipes escaped, line breaks as <br> (Markdown tables are one line per row)."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(result: EvalResult) -> str:
    parts = ["# edulora evaluation report", "",
             f"{len(result.records)} held-out records; models: {', '.join(r.name for r in result.models)}."
             + (f" Run: `{result.run_dir}`." if result.run_dir else "") + (f" **{turns_note(result)}**" if turns_note(result) else ""), "",
             "## Technical", "", _md_table(TECHNICAL_HEADER, _technical_rows(result)), "",
             "## Pedagogy rates", "", _md_table(*_rates_table(result)), "",
             *(["## Human preference (blind sheet)", "", _md_table(*_human_table(result)), ""] if result.human else []),
             *(["## Retention (drift from the base)", "", retention_note(result), "",
                _md_table(*_retention_table(result)), ""] if _retention_table(result) else []),
             "## Educational metrics (means)", "", _md_table(*_metrics_table(result)), ""]
    if result.deltas:
        deltas = _delta_table(result)
        parts += ["## Differences (paired bootstrap)", "",
                  _md_table(deltas["header"], deltas["rows"]), ""]
    for key in GROUP_KEYS:
        groups = result.groups.get(key)
        if not groups:
            continue
        parts += [f"## By {key.replace('_', ' ')}", ""]
        parts += [_md_table([key.replace("_", " "), "n", "model", *[_label(n) for n in METRICS]],
                            _group_rows(result, groups)), ""]
    parts += ["## Replies", ""]
    for info in result.records:
        parts += [f"### Record {info.index + 1}" + "".join(f" · {v}" for v in (info.subject, info.grade_level,
                                                                            info.teaching_style) if v), ""]
        rows = [["prompt", info.prompt], ["reference", info.reference]]
        rows += [[r.name, r.replies[info.index].text] for r in result.models]
        parts += [_md_table(["", "text"], rows), ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------


def _scores(model: ModelResult, record: int) -> str:
    return ", ".join(f"{_label(k).replace(' (lower is better)', ' ↓')} {v:.2f}"
                     for k, v in model.replies[record].metrics.items() if v is not None)


def to_html(result: EvalResult) -> str:
    summary = (f"{len(result.records)} held-out records · models: {', '.join(r.name for r in result.models)}"
               + (f" · run {result.run_dir}" if result.run_dir else "")
               + (f" · judge {result.judge_model}" if result.judge_model else "") + (f" · {turns_note(result)}" if turns_note(result) else ""))
    style_png = style_bars_png(result)
    groups = []
    for key in GROUP_KEYS:
        if result.groups.get(key):
            groups.append({"title": key.replace("_", " "), "plot": style_png if key == "teaching_style" else None,
                           "header": [key.replace("_", " "), "n", "model", *[_label(n) for n in METRICS]],
                           "rows": _group_rows(result, result.groups[key])})
    replies = [{"number": info.index + 1, "prompt": info.prompt, "reference": info.reference,
                "tags": " · ".join(v for v in (info.subject, info.grade_level, info.teaching_style) if v),
                "replies": [{"text": r.replies[info.index].text, "scores": _scores(r, info.index)}
                            for r in result.models]}
               for info in result.records]
    return render("eval_report.html.j2", title="edulora evaluation", heading="edulora evaluation report",
                  summary=summary, loss_curve=loss_curve_png(result.training_log),
                  technical=(TECHNICAL_HEADER, _technical_rows(result)), rates=_rates_table(result),
                  human=_human_table(result),
                  retention=_retention_table(result), retention_note=retention_note(result),
                  metric_bars=metric_bars_png(result),
                  metrics=_metrics_table(result),
                  deltas=_delta_table(result) if result.deltas else None, groups=groups,
                  model_names=[r.name for r in result.models], replies=replies)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_reports(result: EvalResult, out_dir: str | Path | None = None, html_path: str | Path | None = None,
                  json_path: str | Path | None = None, markdown_path: str | Path | None = None) -> dict[str, Path]:
    """Write the requested reports; ``out_dir`` fills in report.html/.md/.json for those not given.

    Returns ``{"html" | "json" | "markdown": path}`` for what was written.
    """
    if out_dir is not None:
        folder = Path(out_dir)
        html_path = html_path or folder / "report.html"
        json_path = json_path or folder / "report.json"
        markdown_path = markdown_path or folder / "report.md"
    from ..progress import bar

    written: dict[str, Path] = {}
    formats = [(kind, path, text) for kind, path, text in (
        ("json", json_path, lambda: json.dumps(to_json(result), indent=2) + "\n"),
        ("markdown", markdown_path, lambda: to_markdown(result) + "\n"),
        ("html", html_path, lambda: to_html(result))) if path is not None]
    # The HTML draws its charts with matplotlib: seconds on a CPU, so the wait is shown.
    for kind, path, text in bar(formats, desc="writing reports", unit="report"):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text())
        written[kind] = path
    return written
