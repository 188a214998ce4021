"""Evaluation reports: JSON for machines, Markdown for reading in a repository, one HTML file.

The HTML page is self-contained: plots are PNGs embedded as base64 data URIs and the style
sheet is inline, so the file can be mailed or opened offline. All text from data or models
goes through ``html.escape``: replies are model output and may contain anything.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.io import atomic_write_text
from .results import GROUP_KEYS, LOWER_IS_BETTER, METRICS, EvalResult

METRIC_LABELS = {
    "clarity": "Explanation clarity", "grade_fit": "Grade-level fit", "concept_coverage": "Concept coverage",
    "outcome_alignment": "Learning-outcome alignment", "engagement": "Engagement",
    "style_adherence": "Teaching-style adherence", "answer_revealing": "Answer revealing (lower is better)",
    "guidance": "Providing guidance",
}


def _label(metric: str) -> str:
    if metric.startswith("judge_"):
        return "Judge: " + metric.removeprefix("judge_").replace("_", " ")
    return METRIC_LABELS.get(metric, metric)


def metric_names(result: EvalResult) -> list[str]:
    """The educational metrics, then any judge dimensions, in a stable order."""
    extra = sorted({k for r in result.models for k in r.metrics if k not in METRICS})
    return list(METRICS) + extra


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def to_json(result: EvalResult) -> dict[str, Any]:
    """Everything in the result, plus ``summary[model]``: the headline figures, flat."""
    summary = {}
    for r in result.models:
        summary[r.name] = {"eval_loss": r.eval_loss, "perplexity": r.perplexity, "tokens_per_s": r.tokens_per_s,
                           "mean_latency_s": r.mean_latency_s, "peak_rss_mb": r.peak_rss_mb, **r.metrics}
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
# Markdown
# --------------------------------------------------------------------------------------------


def _md(text: object) -> str:
    """One table cell: pipes escaped, line breaks as <br> (Markdown tables are one line per row)."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _technical_rows(result: EvalResult) -> list[list[str]]:
    return [[r.name, _fmt(r.eval_loss, 4), _fmt(r.perplexity, 2), _fmt(r.tokens_per_s, 1),
             _fmt(r.mean_latency_s, 2), _fmt(r.peak_rss_mb, 0)] for r in result.models]


TECHNICAL_HEADER = ["model", "eval loss", "perplexity", "tokens/s", "latency per reply (s)", "peak RSS (MB)"]


def _delta_rows(result: EvalResult) -> list[list[str]]:
    level = f"{100 * result.settings.get('confidence', 0.95):.0f}%"
    return [[f"{d.model} − {d.reference}", _label(d.metric), f"{d.mean:+.3f}", f"[{d.low:+.3f}, {d.high:+.3f}] ({level})",
             str(d.n)] for d in result.deltas]


def to_markdown(result: EvalResult) -> str:
    names = metric_names(result)
    parts = ["# edulora evaluation report", "",
             f"{len(result.records)} held-out records; models: {', '.join(r.name for r in result.models)}."
             + (f" Run: `{result.run_dir}`." if result.run_dir else ""), "",
             "## Technical", "", _md_table(TECHNICAL_HEADER, _technical_rows(result)), "",
             "## Educational metrics (means)", "",
             _md_table(["metric", *[r.name for r in result.models]],
                       [[_label(n), *[_fmt(r.metrics.get(n)) for r in result.models]] for n in names]), ""]
    if result.deltas:
        parts += ["## Differences (paired bootstrap)", "",
                  _md_table(["comparison", "metric", "mean Δ", "interval", "records"], _delta_rows(result)), ""]
    for key in GROUP_KEYS:
        groups = result.groups.get(key)
        if not groups:
            continue
        parts += [f"## By {key.replace('_', ' ')}", ""]
        rows = [[value, str(entry["n"]), r.name, *[_fmt(entry[r.name].get(n)) for n in METRICS]]
                for value, entry in groups.items() for r in result.models]
        parts += [_md_table([key, "n", "model", *[_label(n) for n in METRICS]], rows), ""]
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

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.reply{white-space:pre-wrap;max-width:28rem} .better{color:#1a7f37} .worse{color:#c62828}
img{max-width:100%} .meta{color:#666;font-size:.85rem}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i >= numeric_from else ""}>{_e(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: str | None, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{png}">' if png else ""


def _delta_html(result: EvalResult) -> str:
    level = f"{100 * result.settings.get('confidence', 0.95):.0f}%"
    rows = []
    for d in result.deltas:
        improves = (d.low > 0) if d.metric not in LOWER_IS_BETTER else (d.high < 0)
        worsens = (d.high < 0) if d.metric not in LOWER_IS_BETTER else (d.low > 0)
        css = "better" if improves else "worse" if worsens else ""
        rows.append(f"<tr><td>{_e(d.model)} − {_e(d.reference)}</td><td>{_e(_label(d.metric))}</td>"
                    f'<td class="num {css}">{d.mean:+.3f}</td><td class=num>[{d.low:+.3f}, {d.high:+.3f}]</td>'
                    f"<td class=num>{d.n}</td></tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in ("comparison", "metric", "mean Δ", f"{level} interval", "records"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _replies_html(result: EvalResult) -> str:
    head = "<tr><th>#</th><th>prompt</th><th>reference</th>" + "".join(
        f"<th>{_e(r.name)}</th>" for r in result.models) + "</tr>"
    rows = []
    for info in result.records:
        tags = " · ".join(v for v in (info.subject, info.grade_level, info.teaching_style) if v)
        cells = [f"<td class=num>{info.index + 1}</td>",
                 f'<td class=reply>{_e(info.prompt)}<div class=meta>{_e(tags)}</div></td>',
                 f"<td class=reply>{_e(info.reference)}</td>"]
        for r in result.models:
            reply = r.replies[info.index]
            scores = ", ".join(f"{k} {v:.2f}" for k, v in reply.metrics.items() if v is not None)
            cells.append(f"<td class=reply>{_e(reply.text)}<div class=meta>{_e(scores)}</div></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def to_html(result: EvalResult) -> str:
    names = metric_names(result)
    sections = [f"<h1>edulora evaluation report</h1><p class=meta>{len(result.records)} held-out records · models: "
                f"{_e(', '.join(r.name for r in result.models))}"
                + (f" · run {_e(result.run_dir)}" if result.run_dir else "")
                + (f" · judge {_e(result.judge_model)}" if result.judge_model else "") + "</p>"]
    curve = loss_curve_png(result.training_log)
    if curve:
        sections.append("<h2>Training</h2>" + _img(curve, "training and eval loss by step"))
    sections.append("<h2>Technical</h2>" + _html_table(TECHNICAL_HEADER, _technical_rows(result)))
    sections.append("<h2>Educational metrics</h2>" + _img(metric_bars_png(result), "metric means per model")
                    + _html_table(["metric", *[r.name for r in result.models]],
                                  [[_label(n), *[_fmt(r.metrics.get(n)) for r in result.models]] for n in names]))
    if result.deltas:
        sections.append("<h2>Differences (paired bootstrap)</h2><p class=meta>Green: the interval excludes 0 in the "
                        "good direction; red: in the bad one.</p>" + _delta_html(result))
    style_png = style_bars_png(result)
    for key in GROUP_KEYS:
        groups = result.groups.get(key)
        if not groups:
            continue
        rows = [[value, str(entry["n"]), r.name, *[_fmt(entry[r.name].get(n)) for n in METRICS]]
                for value, entry in groups.items() for r in result.models]
        title = f"<h2>By {_e(key.replace('_', ' '))}</h2>"
        plot = _img(style_png, "style adherence per teaching style") if key == "teaching_style" else ""
        sections.append(title + plot + _html_table([key, "n", "model", *[_label(n) for n in METRICS]], rows,
                                                   numeric_from=3))
    sections.append("<h2>Replies</h2>" + _replies_html(result))
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>edulora evaluation</title>"
            f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n")


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
    written: dict[str, Path] = {}
    for kind, path, render in (("json", json_path, lambda: json.dumps(to_json(result), indent=2) + "\n"),
                               ("markdown", markdown_path, lambda: to_markdown(result) + "\n"),
                               ("html", html_path, lambda: to_html(result))):
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, render())
        written[kind] = path
    return written
