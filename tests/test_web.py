"""The teacher page, in a real browser (Debian's chromium driven by playwright), down to the database row."""

from __future__ import annotations

import http.client
import json
import os
import sqlite3

import pytest

from test_serving_support import tiny_engine, tiny_runs  # noqa: F401  (fixtures)

from edulora.serving.feedback import FeedbackStore
from edulora.serving.router import Router
from edulora.serving.server import TutorServer
from edulora.serving.service import TutorService

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def page_server(tiny_engine, tmp_path_factory):
    db = tmp_path_factory.mktemp("web") / "feedback.sqlite3"
    store = FeedbackStore(db)
    service = TutorService(tiny_engine, Router(list(tiny_engine.adapters.values())), store)
    httpd = TutorServer(service, "127.0.0.1", 0).start()
    yield httpd, db
    httpd.stop()
    store.close()


def fetch(server, path: str):
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    return response, response.read()


def test_page_and_assets_are_served_without_outside_resources(page_server):
    server, _ = page_server
    response, html = fetch(server, "/")
    assert response.status == 200 and b"<title>edulora tutor</title>" in html
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")
    assert b"http://" not in html and b"https://" not in html  # no CDN
    for path in ("/static/app.js", "/static/style.css"):
        assert fetch(server, path)[0].status == 200
    assert fetch(server, "/static/../api.py")[0].status == 404


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_teacher_chats_rates_and_the_rating_is_stored(page_server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    server, db = page_server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            sent: list[dict] = []
            page.on("request", lambda r: sent.append(json.loads(r.post_data))
                    if r.url.endswith("/v1/chat/completions") else None)
            page.goto(server.url + "/")
            page.wait_for_selector("#model option[value=math]", state="attached")
            page.select_option("#model", "math")
            page.click("#key-box summary")  # the teacher's key, once for this conversation
            page.fill("#answer", "56")
            page.fill("#solution", "Seven groups of eight: 8 + 8 + 8 + 8 + 8 + 8 + 8 = 56.")
            page.fill("#input", "What is 7 times 8?")
            page.click("#send")
            reply = page.locator(".message.assistant").last
            reply.locator(".feedback").wait_for(state="visible", timeout=30_000)
            assert reply.locator(".text").inner_text().strip()
            answered = reply.locator(".answered-by").inner_text()
            assert "math" in answered and "mathematics" in answered and "middle school" in answered
            reply.locator(".rate-up").click()
            reply.locator(".comment").fill("Clear, but too short")
            reply.locator(".better-box summary").click()
            reply.locator(".better").fill("7 times 8 is 56: seven groups of eight.")
            reply.locator(".save").click()
            page.wait_for_function("() => [...document.querySelectorAll('.status')].some(s => s.textContent === 'Saved ✓')")
            page.wait_for_timeout(200)  # the rating click and the save may both be in flight
            assert not errors, errors
            # The key went with the request, and never into the student's view of the chat.
            assert sent[0]["metadata"] == {"answer": "56", "solution": "Seven groups of eight: 8 + 8 + 8 + 8 + 8 + "
                                                                   "8 + 8 = 56."}
            assert "Seven groups" not in page.inner_text("#log")
            page.click("#reset")  # a new conversation starts without the old key
            page.fill("#input", "What is a prime number?")
            page.click("#send")
            page.locator(".message.assistant .feedback").last.wait_for(state="visible", timeout=30_000)
            assert len(sent) == 2 and "metadata" not in sent[1]
        finally:
            browser.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT adapter, subject, rating, comment, correction, messages, answer FROM feedback"
                            ).fetchall()
    assert len(rows) == 1
    adapter, subject, rating, comment, correction, messages, answer = rows[0]
    assert (adapter, subject, rating) == ("math", "mathematics", 1)
    assert comment == "Clear, but too short" and correction.startswith("7 times 8 is 56")
    assert "What is 7 times 8?" in messages
    assert answer == "56"  # the rated reply was written with the key, and the export will say so
