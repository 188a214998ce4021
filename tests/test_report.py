"""Reports from a hand-built ``EvalResult``: no model needed."""

from __future__ import annotations

import html
import json
import re

import pytest

from edulora.data.quality import build_report
from edulora.data.report_render import render_html
from edulora.data.schema import Example, Metadata
from edulora.evaluation.report import to_html, to_markdown, write_reports
from edulora.evaluation.results import Rate
from edulora.evaluation.runner import (
    METRICS,
    Delta,
    EvalResult,
    ModelResult,
    RecordInfo,
    ReplyResult,
    group_means,
)

NASTY = '<script>alert("x")</script> & <img src="https://evil.example/x.png"> | pipe'


def _model(name: str, is_base: bool, offset: float) -> ModelResult:
    replies = [ReplyResult(i, f"{name} reply {i}: " + (NASTY if i == 0 else "What do you think?"), 5, 0.1,
                           {m: min(1.0, 0.3 + offset + 0.1 * i) for m in METRICS}) for i in range(2)]
    return ModelResult(name, "src", is_base, 2.5 - offset, 12.2, 40, 30.0, 0.1, 0.2, 512.0,
                       {m: 0.4 + offset for m in METRICS}, replies)


@pytest.fixture
def result() -> EvalResult:
    records = [RecordInfo(0, "Student: What is 2 < 3 & why?", "Reference <b>bold</b>", "mathematics", "elementary",
                          "socratic"),
               RecordInfo(1, "Student: Explain cells", "Cells are units.", "biology", "middle_school", "step_by_step")]
    models = [_model("base", True, 0.0), _model("tuned", False, 0.2)]
    deltas = [Delta("tuned", "base", m, 0.2, 0.1, 0.3, 2) for m in METRICS]
    log = [{"step": s, "loss": 3.0 - 0.1 * s} for s in range(1, 9)] + [{"step": 4, "eval_loss": 2.8},
                                                                       {"step": 8, "eval_loss": 2.4}]
    return EvalResult(records, models, group_means(records, models), deltas, {"confidence": 0.95}, log, "runs/x")


def test_all_three_reports_are_written(result, tmp_path):
    paths = write_reports(result, out_dir=tmp_path / "out")
    assert {k: p.name for k, p in paths.items()} == {"html": "report.html", "json": "report.json",
                                                      "markdown": "report.md"}
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["tuned"]["eval_loss"] == pytest.approx(2.3)
    assert all(m in data["summary"]["base"] for m in METRICS)
    assert data["models"][0]["replies"][0]["text"].endswith(NASTY)
    only_json = write_reports(result, json_path=tmp_path / "only.json")
    assert list(only_json) == ["json"] and not (tmp_path / "report.html").exists()


def test_html_is_self_contained_and_escaped(result, tmp_path):
    page = write_reports(result, html_path=tmp_path / "r.html")["html"].read_text()
    assert "<script>" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.IGNORECASE)
    assert html.escape(NASTY, quote=True) in page
    assert html.escape("Reference <b>bold</b>") in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 3  # loss curve, metric bars, per-style bars
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "By teaching style" in page and "tuned − base" in page


def test_html_without_training_log_has_no_curve(result, tmp_path):
    result.training_log = []
    page = write_reports(result, html_path=tmp_path / "r.html")["html"].read_text()
    assert "<h2>Training</h2>" not in page


def test_markdown_tables_survive_pipes_and_newlines(result):
    text = to_markdown(result)
    assert "\\|" in text and "<script>" not in text
    assert "| tuned − base | Explanation clarity | +0.200 |" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| tuned |")]
    assert table_rows and all(line.endswith("|") for line in table_rows)


def _section(page: str, title: str) -> str:
    """The HTML between ``<h2>title</h2>`` and the next heading."""
    return page.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]


def test_pedagogy_rates_with_intervals_in_every_format(result, tmp_path):
    result.model("base").rates = {"leak_rate": Rate(0.125, 0.05, 0.271, 40),
                                  "incorrect_answer_rate": Rate(0.1, 0.04, 0.23, 30),
                                  "question_rate": Rate(0.02, 0.0, 0.1, 40)}
    # The tuned model was evaluated without answer keys: it has no incorrect-answer rate.
    result.model("tuned").rates = {"leak_rate": Rate(0.0, 0.0, 0.088, 40), "question_rate": Rate(0.7, 0.55, 0.82, 40)}
    paths = result.write_reports(tmp_path)

    rates = _section(paths["html"].read_text(), "Pedagogy rates")
    assert re.findall(r"<th>([^<]*)</th>", rates) == [
        "model", "leak rate where an answer was to be withheld (95% CI)", "incorrect-answer rate where keyed (95% CI)",
        "question rate (95% CI)"]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", rates) if "<td" in row]
    assert rows == [["base", "12.5% [5.0%, 27.1%] (n=40)", "10.0% [4.0%, 23.0%] (n=30)", "2.0% [0.0%, 10.0%] (n=40)"],
                    ["tuned", "0.0% [0.0%, 8.8%] (n=40)", "—", "70.0% [55.0%, 82.0%] (n=40)"]]

    markdown = paths["markdown"].read_text()
    assert "## Pedagogy rates" in markdown
    assert "| tuned | 0.0% [0.0%, 8.8%] (n=40) | — | 70.0% [55.0%, 82.0%] (n=40) |" in markdown

    summary = json.loads(paths["json"].read_text())["summary"]
    assert summary["base"]["rates"]["incorrect_answer_rate"] == {"value": 0.1, "low": 0.04, "high": 0.23, "n": 30}
    assert summary["tuned"]["rates"]["incorrect_answer_rate"] is None
    assert summary["tuned"]["rates"]["question_rate"]["value"] == pytest.approx(0.7)


def test_rates_absent_everywhere_show_dashes(result):
    table = to_markdown(result).split("## Pedagogy rates", 1)[1].split("##", 1)[0]
    assert "| base | — | — | — |" in table and "| tuned | — | — | — |" in table


def test_eval_result_writes_its_reports(result, tmp_path):
    paths = result.write_reports(tmp_path / "reports")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["report.html", "report.json", "report.md"]
    assert paths["markdown"].read_text() == to_markdown(result) + "\n"
    only = result.write_reports(html_path=tmp_path / "one.html")
    assert list(only) == ["html"] and only["html"].read_text().startswith("<!DOCTYPE html>")


def test_both_html_reports_share_the_base_page(result):
    data_page = render_html(build_report([Example("q?", "a reply", metadata=Metadata("mathematics"))], path="d.jsonl"))
    eval_page = to_html(result)
    shell = re.compile(r"<!DOCTYPE html>.*?<style>(.*?)</style>.*?<header>\s*<h1>", re.DOTALL)
    assert shell.match(data_page).group(1) == shell.match(eval_page).group(1)
    assert "<h1>Dataset report: d.jsonl</h1>" in data_page and "<h1>edulora evaluation report</h1>" in eval_page


def test_every_metric_and_table_header_has_a_readable_name(result):
    """No code name (``answer_correctness``, ``teaching_style``) reaches a reader as a header or a metric's name."""
    from edulora.evaluation.measures import METRICS as NAMES

    page = to_html(result)
    headers = [html.unescape(h) for h in re.findall(r"<th>([^<]*)</th>", page)]
    assert headers and not [h for h in headers if "_" in h]
    metrics = _section(page, "Educational metrics")
    names = [html.unescape(n) for n in re.findall(r"<tr><td>([^<]*)</td>", metrics)]
    assert len(names) == len(NAMES) and not [n for n in names if "_" in n]
    assert "Answer correctness" in metrics and "answer_correctness" not in to_markdown(result)


def test_every_table_scrolls_inside_its_box(result):
    """A table wider than the page scrolls sideways in its own box instead of widening the page."""
    page = to_html(result)
    assert re.search(r"\.wide\{[^}]*overflow-x:auto", page)
    assert page.count("<table>") == page.count('<div class="wide"><table>') > 0

