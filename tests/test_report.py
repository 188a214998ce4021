"""Reports from a hand-built ``EvalResult``: no model needed."""

from __future__ import annotations

import html
import json
import re

import pytest

from edulora.evaluation.report import to_markdown, write_reports
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
