"""The evaluation report in a real browser (Debian's chromium driven by playwright, as tests/test_web.py does):
at 1,200 px the page never scrolls sideways, and every table header can be read."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"


def test_report_fits_1200px_and_every_table_header_is_readable(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from test_report import _model

    from edulora.evaluation.report import write_reports
    from edulora.evaluation.runner import METRICS, Delta, EvalResult, RecordInfo, group_means

    # Long replies and every metric in the by-group tables: the widest report the evaluation writes.
    # A subject written as one long unbreakable word makes the by-subject table wider than any page can hold.
    subject = "appliedmathematicsandstatistics" * 8
    records = [RecordInfo(i, "Student: " + "why " * 60, "reference " * 40, subject, "middle_school", "socratic")
               for i in range(2)]
    models = [_model(f"tutor-{k}", k == 0, 0.05 * k) for k in range(6)]
    for model in models:  # six columns of long replies, each up to its 28rem: far wider than the page
        for reply in model.replies:
            reply.text = "Let us think about it step by step. " * 12
    deltas = [Delta("tuned", "base", m, 0.2, 0.1, 0.3, 2) for m in METRICS]
    result = EvalResult(records, models, group_means(records, models), deltas, {"confidence": 0.95}, [], "runs/x")
    page_file = write_reports(result, html_path=tmp_path / "report.html")["html"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            page.goto(page_file.as_uri())
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
            # Each header: some text, not squeezed below one character's width, nothing cut off inside it.
            headers = page.evaluate("""[...document.querySelectorAll('th')].map(th => ({
                text: th.innerText.trim(), width: th.getBoundingClientRect().width,
                clipped: th.scrollWidth > th.clientWidth + 1}))""")
        finally:
            browser.close()
    assert headers
    unreadable = [h for h in headers if not h["text"] or h["width"] < 12 or h["clipped"] or "_" in h["text"]]
    assert not unreadable, unreadable
