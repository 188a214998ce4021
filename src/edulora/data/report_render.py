"""Showing a ``DatasetReport``: terminal tables, a self-contained HTML page, and JSON.

The HTML page (the ``data_report.html.j2`` template) embeds its charts as base64 PNG and its style
inline, so it can be mailed or opened offline with nothing missing. matplotlib is imported only
when a page is written.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Sequence
from typing import Any

from ..templates import render
from .quality import NONE_LABEL, DatasetReport
from .schema import GradeLevel, TeachingStyle

_STYLE_SHORT = {
    TeachingStyle.SOCRATIC.value: "socratic",
    TeachingStyle.STEP_BY_STEP.value: "step",
    TeachingStyle.ANALOGY_BASED.value: "analogy",
    TeachingStyle.DIRECT_INSTRUCTION.value: "direct",
    TeachingStyle.INQUIRY_BASED.value: "inquiry",
    TeachingStyle.MISCONCEPTION_CORRECTION.value: "miscon",
    NONE_LABEL: "(none)",
}
_MAX_LISTED = 20


# --------------------------------------------------------------------------- findings


def findings(report: DatasetReport) -> list[str]:
    """One line per thing worth fixing, most serious first; empty when all looks fine."""
    out: list[str] = []
    if report.leakage and report.leakage.pairs:
        out.append(f"{len(report.leakage.leaked_eval_lines)} of {report.leakage.eval_records} eval records "
                   f"also occur in the training data ({report.leakage.eval_path})")
    d = report.duplicates
    if d.exact_groups:
        out.append(f"{len(d.exact_groups)} group(s) of exact duplicates ({d.exact_extra_records} redundant record(s))")
    if d.near_groups:
        out.append(f"{len(d.near_groups)} group(s) of near-duplicates (Jaccard ≥ {d.near_threshold:g})")
    if report.lengths.truncated:
        out.append(f"{len(report.lengths.truncated)} record(s) longer than {report.lengths.max_length} tokens "
                   "would be truncated")
    r = report.readability
    if r.mismatches:
        out.append(f"{len(r.mismatches)} tutor repl(ies) read far above or below their declared grade level")
    c = report.coverage
    if c.thin_cells:
        out.append(f"{len(c.thin_cells)} thin coverage cell(s) with fewer than {c.thin_below} records")
    if c.empty_cells:
        out.append(f"{len(c.empty_cells)} empty coverage cell(s) (subject × grade level × teaching style)")
    missing = {k: v for k, v in c.missing_metadata.items() if v}
    if missing:
        out.append("records without metadata: " + ", ".join(f"{k} {v}" for k, v in missing.items()))
    if report.misconceptions.subjects_without:
        out.append("no misconception coverage in: " + ", ".join(report.misconceptions.subjects_without))
    return out


# --------------------------------------------------------------------------- terminal


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """A plain-text table; numbers are right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] in ("-", "") for row in rows) and bool(rows)
               for i in range(len(headers))]

    def fmt(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return (indent + "  ".join(parts)).rstrip()

    rule = indent + "  ".join("-" * w for w in widths)
    return "\n".join([fmt(list(headers)), rule, *(fmt(r) for r in cells)])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _listed(items: Sequence[Any], fmt=str, limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(fmt(i) for i in items[:limit])
    return shown + (f", … and {len(items) - limit} more" if len(items) > limit else "")


def _style_columns(report: DatasetReport) -> list[str]:
    return [t.value for t in TeachingStyle] + ([NONE_LABEL] if NONE_LABEL in report.coverage.teaching_styles else [])


def _grade_rows(report: DatasetReport) -> list[str]:
    return [g.value for g in GradeLevel if g.value in report.coverage.grade_levels] + (
        [NONE_LABEL] if NONE_LABEL in report.coverage.grade_levels else [])


def matrix_rows(report: DatasetReport, subject: str | None) -> list[list[Any]]:
    """Rows of one subject's (None: all subjects') grade level × teaching style table; '-' marks an empty cell."""
    counts: dict[tuple[str, str], int] = {}
    for c in report.coverage.cells:
        if subject is None or c.subject == subject:
            key = (c.grade_level, c.teaching_style)
            counts[key] = counts.get(key, 0) + c.count
    rows = []
    for grade in _grade_rows(report):
        values: list[Any] = [counts.get((grade, style), "-") for style in _style_columns(report)]
        rows.append([grade, *values, sum(v for v in values if isinstance(v, int))])
    return rows


# Tables shown both in the terminal and on the page: (header, rows).
Table = tuple[list[str], list[list[Any]]]


def misconception_table(report: DatasetReport) -> Table:
    return (["subject", "records", "misconception", "share", "by style", "by wording"],
            [[x.subject, x.records, x.misconception_records, f"{x.share:.0%}", x.by_style, x.by_text]
             for x in report.misconceptions.rows])


def length_table(report: DatasetReport) -> Table:
    ln = report.lengths
    return (["records", "min", "p50", "p90", "p95", "p99", "max", "mean"],
            [[ln.count, ln.min, *ln.percentiles.values(), ln.max, round(ln.mean, 1)]])


def readability_table(report: DatasetReport) -> Table:
    return (["grade level", "expected", "scored", "mean", "min", "max", "flagged"],
            [[x.grade_level, x.expected, x.scored, x.mean, x.min, x.max, x.mismatches] for x in report.readability.rows])


def render_text(report: DatasetReport) -> str:
    """The report as terminal text: a findings summary, then one section per check."""
    c, m, ln, d, r = report.coverage, report.misconceptions, report.lengths, report.duplicates, report.readability
    out: list[str] = [
        f"Dataset report: {report.path} — {report.records} records "
        f"({report.examples} examples, {report.dialogues} dialogues)",
        "",
    ]
    found = findings(report)
    out.append("Findings" if found else "Findings: nothing to flag")
    out += [f"  ! {f}" for f in found]

    out += ["", "Coverage: records per subject, grade level (rows) and teaching style (columns)"]
    style_heads = [_STYLE_SHORT.get(s, s) for s in _style_columns(report)]
    for subject in [None, *c.subjects] if len(c.subjects) > 1 else list(c.subjects):
        title = "all subjects" if subject is None else subject
        count = report.records if subject is None else c.subjects[subject]
        out += ["", f"  {title} ({count} records)",
                table(["grade level", *style_heads, "total"], matrix_rows(report, subject), indent="    ")]
    out.append("")
    if c.thin_cells:
        out.append(f"  Thin cells (< {c.thin_below} records; {len(c.thin_cells)} of "
                   f"{len(c.cells)} filled): "
                   + _listed(c.thin_cells, lambda x: f"{x.subject}/{x.grade_level}/{x.teaching_style} ({x.count})"))
    if c.empty_cells:
        out.append(f"  Empty cells ({len(c.empty_cells)}): " + _listed(c.empty_cells, lambda x: "/".join(x)))
    out.append("  Subjects: " + ", ".join(f"{k} {v}" for k, v in c.subjects.items()))
    if c.unknown_subjects:
        out.append("  Subjects outside the known vocabulary: " + ", ".join(c.unknown_subjects))
    out.append("  Grade levels: " + ", ".join(f"{k} {v}" for k, v in c.grade_levels.items())
               + (f"; never seen: {', '.join(c.unseen_grade_levels)}" if c.unseen_grade_levels else ""))
    out.append("  Teaching styles: " + ", ".join(f"{k} {v}" for k, v in c.teaching_styles.items())
               + (f"; never seen: {', '.join(c.unseen_teaching_styles)}" if c.unseen_teaching_styles else ""))

    out += ["", f"Misconception coverage ({m.total} records)", table(*misconception_table(report))]

    label = "ESTIMATED tokens" if ln.estimate else "tokens"
    out += ["", f"Length in {label} — {ln.tokenizer}", table(*length_table(report))]
    if ln.estimate:
        out.append("  (an estimate; pass --tokenizer PATH for exact counts)")
    if ln.max_length is None:
        out.append("  (pass --max-length N to list records that would be truncated)")
    elif ln.truncated:
        out.append(f"  {len(ln.truncated)} record(s) over {ln.max_length} tokens: "
                   + _listed(ln.truncated, lambda x: f"line {x[0]} ({x[1]})", limit=10))
    else:
        out.append(f"  no record is over {ln.max_length} tokens")

    out += ["", "Duplicates"]
    out.append(f"  exact: {len(d.exact_groups)} group(s)" + ("" if not d.exact_groups else ": "
               + _listed(d.exact_groups, lambda g: "+".join(map(str, g[:5])) + ("+…" if len(g) > 5 else ""), 10)
               + " (lines)"))
    out.append(f"  near (word-shingle Jaccard ≥ {d.near_threshold:g}): {len(d.near_groups)} group(s)"
               + ("" if not d.near_groups else ": " + _listed(
                   d.near_groups, lambda g: "+".join(map(str, g.lines[:5])) + f" ({g.min_similarity:.2f})", 10)
                  + " (lines)"))

    if report.leakage is not None:
        lk = report.leakage
        out += ["", f"Train/eval leakage against {lk.eval_path} ({lk.eval_records} eval records)"]
        if not lk.pairs:
            out.append("  none found")
        for kind, title in (("exact", "same record"), ("same_prompt", "same question"), ("near", "near-duplicate")):
            pairs = lk.by_kind(kind)
            if pairs:
                out.append(f"  {title}: {len(pairs)}: " + _listed(
                    pairs, lambda p: f"eval {p.eval_line}=train {p.train_line}"
                    + (f" ({p.similarity:.2f})" if kind == "near" else ""), 10))

    out += ["", f"Readability of tutor replies (Flesch-Kincaid grade; flagged beyond ±{r.tolerance:g} of the band)"]
    if r.rows:
        out.append(table(*readability_table(report)))
    else:
        out.append("  no reply could be scored")
    notes = []
    if r.too_short:
        notes.append(f"{r.too_short} repl(ies) too short to score")
    if r.no_grade_level:
        notes.append(f"{r.no_grade_level} record(s) without a grade level")
    if notes:
        out.append("  (" + "; ".join(notes) + ")")
    if r.mismatches:
        out.append("  flagged: " + _listed(
            r.mismatches, lambda x: f"line {x.line} {x.grade_level} FK {x.fk_grade:g} ({x.direction})", 10))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- JSON


def length_histogram(lengths: Sequence[int], bins: int = 20) -> dict[str, list[float]]:
    if not lengths:
        return {"edges": [], "counts": []}
    low, high = min(lengths), max(lengths)
    step = max(1.0, (high - low) / bins)
    edges = [low + i * step for i in range(bins + 1)]
    counts = [0] * bins
    for n in lengths:
        counts[min(bins - 1, int((n - low) / step))] += 1
    return {"edges": [round(e, 1) for e in edges], "counts": counts}


def report_to_dict(report: DatasetReport) -> dict[str, Any]:
    """A JSON-ready dict of the whole report (per-record arrays summarized, not listed)."""
    data = dataclasses.asdict(report)
    data["lengths"].pop("lengths", None)
    data["lengths"]["histogram"] = length_histogram(report.lengths.lengths)
    data["readability"].pop("scores", None)
    data["duplicates"]["exact_extra_records"] = report.duplicates.exact_extra_records
    if report.leakage is not None:
        data["leakage"]["leaked_eval_lines"] = report.leakage.leaked_eval_lines
    data["lengths"]["truncated"] = [{"line": a, "tokens": b} for a, b in report.lengths.truncated]
    data["coverage"]["empty_cells"] = [
        {"subject": s, "grade_level": g, "teaching_style": t} for s, g, t in report.coverage.empty_cells]
    data["misconceptions"]["rows"] = [dict(row, share=round(x.share, 4))
                                      for row, x in zip(data["misconceptions"]["rows"], report.misconceptions.rows)]
    data["findings"] = findings(report)
    return data


def render_json(report: DatasetReport) -> str:
    return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- HTML


def _png(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(report: DatasetReport) -> dict[str, str]:
    """Base64 PNGs, built without pyplot so no global matplotlib state is touched."""
    from matplotlib.figure import Figure

    charts: dict[str, str] = {}
    c = report.coverage
    grades, styles = _grade_rows(report), _style_columns(report)
    if grades and styles:
        grid = [[0] * len(styles) for _ in grades]
        for cell in c.cells:
            if cell.grade_level in grades and cell.teaching_style in styles:
                grid[grades.index(cell.grade_level)][styles.index(cell.teaching_style)] += cell.count
        fig = Figure(figsize=(1.2 * len(styles) + 2, 0.6 * len(grades) + 1.5))
        ax = fig.add_subplot()
        ax.imshow(grid, cmap="Blues", aspect="auto")
        ax.set_xticks(range(len(styles)), [_STYLE_SHORT.get(s, s) for s in styles], rotation=30, ha="right")
        ax.set_yticks(range(len(grades)), grades)
        peak = max(max(row) for row in grid) or 1
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(j, i, str(value) if value else "·", ha="center", va="center",
                        color="white" if value > peak / 2 else "black")
        ax.set_title("Records per grade level × teaching style (all subjects)")
        charts["coverage"] = _png(fig)
    if c.subjects:
        fig = Figure(figsize=(6, 0.35 * len(c.subjects) + 1.2))
        ax = fig.add_subplot()
        names = list(c.subjects)
        ax.barh(names, [c.subjects[s] for s in names], color="#4c72b0")
        ax.invert_yaxis()
        ax.set_xlabel("records")
        ax.set_title("Records per subject")
        charts["subjects"] = _png(fig)
    ln = report.lengths
    if ln.lengths:
        fig = Figure(figsize=(6, 3))
        ax = fig.add_subplot()
        ax.hist(ln.lengths, bins=min(40, max(5, len(set(ln.lengths)))), color="#55a868")
        if ln.max_length is not None:
            ax.axvline(ln.max_length, color="#c44e52", linestyle="--", label=f"max length {ln.max_length}")
            ax.legend()
        ax.set_xlabel("estimated tokens" if ln.estimate else "tokens")
        ax.set_ylabel("records")
        ax.set_title("Record length" + (" (estimate)" if ln.estimate else ""))
        charts["lengths"] = _png(fig)
    r = report.readability
    if r.scores:
        order = [g.value for g in GradeLevel if any(s[1] == g.value for s in r.scores)]
        fig = Figure(figsize=(6, 3.2))
        ax = fig.add_subplot()
        ax.boxplot([[fk for _, g, fk in r.scores if g == grade] for grade in order], tick_labels=order)
        for x, grade in enumerate(order, start=1):
            low, high = GradeLevel(grade).band
            # An open band (adult learners: any level) is shaded up to the top of the usual range.
            ax.fill_between([x - 0.4, x + 0.4], low, min(high, 16), color="#dd8452", alpha=0.2)
        ax.set_ylabel("Flesch-Kincaid grade")
        ax.set_title("Readability of tutor replies (shaded: expected band)")
        charts["readability"] = _png(fig)
    return charts


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                classes: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """Cells formatted as in the terminal; numbers (and '-' for none) right-aligned, as ``table`` does."""
    return {"header": list(header), "rows": [[_cell(v) for v in row] for row in rows],
            "classes": [[" ".join(filter(None, (classes[i][j] if classes else "",
                                                "num" if isinstance(v, (int, float)) or v == "-" else "")))
                         for j, v in enumerate(row)] for i, row in enumerate(rows)]}


def render_html(report: DatasetReport) -> str:
    """A single self-contained HTML page: inline CSS, charts as data: URIs, no scripts or links."""
    c, ln, d = report.coverage, report.lengths, report.duplicates
    style_heads = [_STYLE_SHORT.get(s, s) for s in _style_columns(report)]
    coverage_tables = []
    for subject in c.subjects:
        rows = matrix_rows(report, subject)
        classes = [["", *("empty" if v == "-" else "thin" if isinstance(v, int) and v < c.thin_below else ""
                          for v in row[1:-1]), ""] for row in rows]
        coverage_tables.append({"subject": subject, "count": c.subjects[subject],
                                "table": _html_table(["grade level", *style_heads, "total"], rows, classes)})
    vocabulary = [(title, ", ".join(values)) for title, values in (
        ("Grade levels never seen", c.unseen_grade_levels), ("Teaching styles never seen", c.unseen_teaching_styles),
        ("Subjects outside the known vocabulary", c.unknown_subjects),
        ("Known subjects not in the data", c.unseen_subjects)) if values]
    vocabulary += [(f"Records without {key}", count) for key, count in c.missing_metadata.items() if count]
    tables: dict[str, Table] = {
        "misconceptions": misconception_table(report), "lengths": length_table(report),
        "readability": readability_table(report),
        "exact_duplicates": (["lines"], [[", ".join(map(str, g))] for g in d.exact_groups[:200]]),
        "near_duplicates": (["lines", "lowest similarity"],
                            [[", ".join(map(str, g.lines)), g.min_similarity] for g in d.near_groups[:200]]),
        "mismatches": (["line", "grade level", "FK grade", "expected", ""],
                       [[x.line, x.grade_level, x.fk_grade, x.expected, x.direction]
                        for x in report.readability.mismatches[:500]]),
    }
    if report.leakage is not None:
        tables["leakage"] = (["eval line", "train line", "kind", "similarity"],
                             [[p.eval_line, p.train_line, p.kind, p.similarity] for p in report.leakage.pairs[:500]])
    return render("data_report.html.j2", title=f"Dataset report: {report.path}",
                  heading=f"Dataset report: {report.path}",
                  summary=f"{report.records} records ({report.examples} examples, {report.dialogues} dialogues)",
                  report=report, findings=findings(report), charts=_charts(report), coverage_tables=coverage_tables,
                  vocabulary=vocabulary, truncated_lines=_listed([t[0] for t in ln.truncated], limit=50),
                  **{name: _html_table(*table) for name, table in tables.items()})
