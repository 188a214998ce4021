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
    for path in ("/static/app.js", "/static/style.css", "/static/common.js", "/static/review.js", "/review"):
        assert fetch(server, path)[0].status == 200
    assert fetch(server, "/static/../api.py")[0].status == 404


def test_both_pages_are_rendered_from_one_shared_shell(page_server):
    """index.html and review.html extend web/page.html: one head, header and settings, each page's own parts."""
    server, _ = page_server
    pages = {path: fetch(server, path)[1].decode() for path in ("/", "/review", "/static/index.html")}
    assert pages["/"] == pages["/static/index.html"]
    shared = ['<meta name="viewport" content="width=device-width, initial-scale=1">',
              '<link rel="stylesheet" href="/static/style.css">', '<script src="/static/common.js" defer></script>',
              '<input id="key" type="password" autocomplete="off" placeholder="only if the server asks">',
              '<p id="error" class="error" role="alert" hidden></p>']
    for html, title, script in ((pages["/"], "edulora tutor", "app.js"), (pages["/review"], "edulora review",
                                                                         "review.js")):
        assert html.startswith("<!doctype html>\n") and html.endswith("</body>\n</html>\n")
        assert all(html.count(part) == 1 for part in shared)
        assert f"<title>{title}</title>" in html and f"<h1>{title}</h1>" in html
        assert f'<script src="/static/{script}" defer></script>' in html
        assert "{%" not in html and "{{" not in html and "{#" not in html  # rendered, not sent as a template
    assert '<details id="settings" class="teacher-only">' in pages["/"] and '<body>' in pages["/"]
    assert '<details id="settings">' in pages["/review"] and '<body class="review">' in pages["/review"]
    assert '<template id="reply-template">' in pages["/"] and '<form id="ask">' in pages["/"]
    assert '<template id="item-template">' in pages["/review"] and 'id="filter"' in pages["/review"]
    assert fetch(server, "/static/page.html")[0].status == 404  # the shell is no page of its own


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


# ----- the teacher's workbench: a lesson, its flags, review, export -----------------------------------

TEACHER, TOKEN = "ms-lee", "token-of-ms-lee-0001"
QUESTION = "A rectangle is 4 cm wide and 7 cm long. How do I find its area?"
needs_browser = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing")


@pytest.fixture(scope="module")
def workbench(tiny_engine, tmp_path_factory):
    """A server behind a teacher's token, with its own feedback database."""
    db = tmp_path_factory.mktemp("workbench") / "feedback.sqlite3"
    store = FeedbackStore(db)
    service = TutorService(tiny_engine, Router(list(tiny_engine.adapters.values())), store, teachers={TEACHER: TOKEN})
    httpd = TutorServer(service, "127.0.0.1", 0).start()
    yield httpd, db
    httpd.stop()
    store.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                     "--disable-background-networking"])
        yield launched
        launched.close()


def open_page(browser, server, path="/", width=1000, height=900):
    """A fresh page signed in with the teacher's token (as a teacher types it under Settings)."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server.url + path)
    page.locator("#error", has_text="needs a key").wait_for()  # the page asks for the key (and opens Settings)
    page.fill("#key", TOKEN)
    page.dispatch_event("#key", "change")
    return page, errors


def ask(page, question: str):
    """Send ``question``; returns the reply card once its rating controls are shown."""
    before = page.locator(".message.assistant").count()
    page.fill("#input", question)
    page.click("#send")
    reply = page.locator(".message.assistant").nth(before)
    reply.locator(".feedback").wait_for(state="visible", timeout=30_000)
    return reply


def start_lesson(page, answer: str = "28"):
    page.wait_for_selector("#model option[value=math]", state="attached")
    page.select_option("#model", "math")
    page.select_option("#grade", "elementary")
    page.select_option("#style", "socratic")
    page.click("#key-box summary")
    page.fill("#answer", answer)


def lesson(browser, server, question: str, answer: str = "28", **viewport):
    """A signed-in page with a Socratic lesson set up and ``question`` answered: (page, errors, reply card)."""
    page, errors = open_page(browser, server, **viewport)
    start_lesson(page, answer)
    return page, errors, ask(page, question)


@needs_browser
def test_workbench_from_question_to_an_exported_training_record(workbench, browser, tmp_path):
    from edulora.cli import main
    from edulora.data.formats import validate_any
    from edulora.data.schema import Metadata, TeachingStyle
    from edulora.serving.flags import reply_flags

    server, db = workbench
    page, errors = open_page(browser, server)
    start_lesson(page)
    # Every time the reply's text is replaced while it streams, note how long it is: the length of the text
    # node put in then (observer callbacks run later, and when the whole reply came in one network read,
    # reading the box's text there saw only its final length, once per replacement).
    page.evaluate("""() => {
        window.shown = [];
        new MutationObserver((records) => {
          for (const r of records) if (r.target.classList && r.target.classList.contains('text'))
            for (const added of r.addedNodes) window.shown.push(added.textContent.length);
        }).observe(document.querySelector('#log'), {childList: true, subtree: true});
    }""")
    first = ask(page, QUESTION)
    shown = page.evaluate("window.shown")
    text = first.locator(".text").inner_text()
    assert len(set(shown)) >= 2 and shown == sorted(shown) and shown[-1] == len(text), shown  # it grew, piece by piece
    assert text == text.strip() and "\n\n\n" not in text  # no blank lines around or piled up in the reply
    flags = first.locator(".flags li")
    codes = [flags.nth(i).get_attribute("data-code") for i in range(flags.count())]
    answered = first.locator(".answered-by").inner_text()
    assert "elementary" in answered and "socratic" in answered  # the conversation's own grade level and style
    # Rate with the controls a teacher sees, write a better reply, save.
    page.get_by_role("button", name="Bad reply").first.click()
    first.locator(".better-box summary").click()
    first.locator(".better").fill("What is 4 times 7? Count the squares in 4 rows of 7.")
    first.locator(".save").click()
    first.locator(".status", has_text="Saved ✓").wait_for()
    page.click("#reset")
    second = ask(page, "What is a prime number?")
    second.get_by_role("button", name="Good reply").click()
    second.locator(".status", has_text="Saved ✓").wait_for()
    page.wait_for_timeout(200)  # the rating's save may still be in flight
    assert not errors, errors

    rows = list(server.service.feedback.items())
    assert len(rows) == 2 and {r.teacher for r in rows} == {TEACHER}
    [corrected] = [r for r in rows if r.correction]
    [praised] = [r for r in rows if r.rating == 1]
    # The page shows the flags the server computed and stored, which are edulora's metrics on the stored reply.
    socratic = Metadata(teaching_style=TeachingStyle.SOCRATIC, extra={"answer": "28"})
    assert codes and codes == [f["code"] for f in corrected.flags]
    assert corrected.flags == reply_flags(corrected.reply, corrected.messages, socratic)
    assert text == page.evaluate("(reply) => displayText(reply)", corrected.reply)

    # The review view: locked without a token, then approve the corrected reply (edited) and reject the other.
    review = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
    review.on("pageerror", lambda err: errors.append(str(err)))
    review.goto(server.url + "/review")
    review.locator("#error", has_text="needs a key").wait_for()  # nothing is listed without a token
    assert review.locator(".item").count() == 0
    review.fill("#key", TOKEN)
    review.dispatch_event("#key", "change")
    review.locator(".item").nth(1).wait_for()
    assert review.locator(".item").count() == 2
    card = review.locator(f".item[data-id='{corrected.id}']")
    assert QUESTION in card.inner_text() and "rated bad" in card.inner_text()
    assert card.locator(".flags li").count() == len(codes) and corrected.flags[0]["label"] in card.inner_text()
    edited = "What is 4 times 7? Count the squares: 4 rows of 7."
    card.locator(".correction").fill(edited)
    card.get_by_role("button", name="Approve").click()
    card.locator(".state", has_text=f"approved by {TEACHER}").wait_for()
    other = review.locator(f".item[data-id='{praised.id}']")
    other.get_by_role("button", name="Reject").click()
    other.locator(".state", has_text=f"rejected by {TEACHER}").wait_for()
    assert not errors, errors

    # Export: the approved item (as edited) and not the rejected one; valid, scrubbed, with the loser's flags.
    out, pairs, everything = tmp_path / "sft.jsonl", tmp_path / "pairs.jsonl", tmp_path / "all.jsonl"
    assert main(["feedback", "export", "--out", str(out), "--db", str(db), "--pairs", str(pairs)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [{"instruction": QUESTION, "response": edited, "metadata": {
        "subject": "mathematics", "grade_level": "elementary", "teaching_style": "socratic", "answer": "28",
        "written_by": TEACHER, "approved_by": TEACHER}}]  # who wrote and who approved the example
    assert "prime number" not in out.read_text() and validate_any(out).ok
    assert main(["data", "validate", str(out)]) == 0  # the command a teacher would run accepts it
    [pair] = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert pair["chosen"][0]["content"] == edited and [f["code"] for f in pair["rejected_flags"]] == codes
    assert main(["feedback", "export", "--out", str(everything), "--db", str(db), "--all"]) == 0
    assert "prime number" in everything.read_text()  # it was left out by the review, not lost


@needs_browser
def test_rating_controls_show_text_or_a_sized_icon_and_have_accessible_names(workbench, browser):
    page, errors, reply = lesson(browser, workbench[0], "What is 7 times 8?")
    for name in ("Good reply", "Bad reply"):
        button = reply.get_by_role("button", name=name)  # found by its accessible name
        assert button.is_visible()
        seen = button.evaluate(r"""(b) => {
            const letters = /\p{L}{2,}/u.test(b.innerText);  // an emoji alone is no letters: a font-less box
            const icons = [...b.querySelectorAll('svg')].map((s) => s.getBoundingClientRect())
              .filter((r) => r.width > 0 && r.height > 0).length;
            return { letters, icons, height: b.getBoundingClientRect().height };
        }""")
        assert seen["letters"] or seen["icons"], seen
        assert seen["height"] >= 24, seen  # big enough to hit with a finger
    assert not errors, errors


@needs_browser
def test_rating_works_from_the_keyboard(workbench, browser):
    page, errors, reply = lesson(browser, workbench[0], "Why is any number times zero equal to zero?")
    good = reply.locator(".rate-up")
    page.locator("#input").focus()
    for _ in range(60):  # Tab through the page until the rating control has the focus
        if good.evaluate("(b) => b === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("the rating buttons cannot be reached with Tab")
    page.keyboard.press("Space")
    reply.locator(".status", has_text="Saved ✓").wait_for()
    assert good.get_attribute("aria-pressed") == "true"
    page.keyboard.press("Tab")  # on to "Bad reply"; Enter presses it
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('.rate-down').getAttribute('aria-pressed') === 'true'")
    assert good.get_attribute("aria-pressed") == "false" and not errors, errors


@needs_browser
def test_the_workbench_fits_a_360_px_screen(workbench, browser):
    page, errors, reply = lesson(browser, workbench[0], QUESTION, width=360, height=740)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing scrolls sideways
    for selector in (".rate-up", ".rate-down", ".save", ".comment"):
        box = reply.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, (selector, box)
    reply.get_by_role("button", name="Good reply").click()
    reply.locator(".status", has_text="Saved ✓").wait_for()
    page.goto(workbench[0].url + "/review")  # the review view on the same small screen
    page.locator(".item").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.get_by_role("button", name="Approve").first.bounding_box()["x"] >= 0
    assert not errors, errors


@needs_browser
def test_replies_are_shown_without_stray_blank_lines_and_with_readable_powers(workbench, browser):
    server, _ = workbench
    page, _ = open_page(browser, server)
    shown = page.evaluate("(t) => displayText(t)", "\n\n  The area is 4 x 7 cm^2.\n\n\n\nWhat is 10^{-3}?  \n\n")
    assert shown == "The area is 4 x 7 cm².\n\nWhat is 10⁻³?"


@needs_browser
def test_student_view_hides_the_key_the_flags_and_the_rating(workbench, browser):
    page, _, reply = lesson(browser, workbench[0], "What is 7 times 8?", answer="fifty-six")
    page.check("#student-view")
    visible = page.inner_text("body")
    assert "fifty-six" not in visible and not page.locator("#answer").is_visible()
    assert not reply.locator(".feedback").is_visible() and not reply.locator(".flags").is_visible()
    assert reply.locator(".text").is_visible()


# ----- what a teacher's students received ----------------------------------------------------------------

STUDENT_TOKEN = "token-of-ms-lees-class"


@pytest.fixture(scope="module")
def classroom(tiny_engine, tmp_path_factory):
    """Ms Lee's server with a token for her class."""
    db = tmp_path_factory.mktemp("classroom") / "feedback.sqlite3"
    store = FeedbackStore(db)
    service = TutorService(tiny_engine, Router(list(tiny_engine.adapters.values())), store, teachers={TEACHER: TOKEN},
                           students={STUDENT_TOKEN: TEACHER})
    httpd = TutorServer(service, "127.0.0.1", 0).start()
    yield httpd, db
    httpd.stop()
    store.close()


@needs_browser
def test_a_teacher_corrects_a_reply_a_student_received_from_the_review_page(classroom, browser):
    from test_serving_support import request_as

    server, db = classroom
    status, reply = request_as(server, STUDENT_TOKEN, "POST", "/v1/chat/completions",
                               {"model": "math", "messages": [{"role": "user", "content": "What is 9 times 3?"}],
                                "max_tokens": 6})
    assert status == 200
    page, errors = open_page(browser, server, "/review")
    page.select_option("#filter", "received")
    card = page.locator(f".item.received[data-id='{reply['id']}']")
    card.wait_for()
    assert "What is 9 times 3?" in card.inner_text() and f"A student of {TEACHER}" in card.inner_text()
    assert "not rated by you" in card.locator(".state").inner_text()
    card.locator(".rate-down").click()
    assert card.locator(".rate-down").get_attribute("aria-pressed") == "true"
    card.locator(".correction").fill("What do three groups of nine make?")
    card.locator(".save").click()
    card.locator(".status", has_text="Saved").wait_for()
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT teacher, owner, rating, correction, status, reply, id FROM feedback "
                           "WHERE completion_id = ?", (reply["id"],)).fetchone()
    assert row[:6] == (TEACHER, TEACHER, -1, "What do three groups of nine make?", "pending",
                       reply["choices"][0]["message"]["content"])
    page.select_option("#filter", "pending")  # it now waits for review like any other feedback
    item = page.locator(f".item[data-id='{row[6]}']")
    item.wait_for()
    assert item.locator(".correction").input_value() == "What do three groups of nine make?"
    assert not errors


# ----- a page of another site in the teacher's browser ------------------------------------------------

#: What such a page tries: fetches that need no preflight ("no-cors", text/plain), a JSON one, and a read.
ATTACK = """async ([server, row, adapter]) => {
  const plain = body => ({method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                          body: JSON.stringify(body)});
  const json = body => ({method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const tries = [
    fetch(`${server}/v1/feedback/${row}/review`, plain({status: "approved", correction: "planted reply"})),
    fetch(`${server}/v1/admin/adapters`, plain({path: adapter, name: "planted"})),
    fetch(`${server}/v1/feedback/${row}/review`, json({status: "rejected"})),
    fetch(`${server}/v1/feedback`).then(r => r.text()),
  ];
  return (await Promise.allSettled(tries)).map(r => r.status === "fulfilled" ? String(r.value.type || r.value)
                                                                             : String(r.reason));
}"""


@needs_browser
def test_a_page_of_another_origin_changes_nothing_on_a_default_server(page_server, browser, tiny_runs):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from edulora.generation import Sampling

    server, _ = page_server
    service = server.service
    chat = service.chat("math", [{"role": "user", "content": "What is 2 + 2?"}], Sampling(), max_tokens=4)
    service.complete(chat, chat.generation.text(timeout=60))
    row = service.rate(chat.generation.id, chat.info["feedback_token"], rating=-1, correction="the teacher's own")

    class Page(BaseHTTPRequestHandler):  # another origin: same machine, another port
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>another site</title>")

        def log_message(self, *args):
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        outcomes = page.evaluate(ATTACK, [server.url, row, str(tiny_runs["bio"])])
        page.context.close()
    finally:
        other.shutdown()
    item = service.feedback.item(row)
    assert (item.status, item.correction) == ("pending", "the teacher's own"), outcomes
    assert "planted" not in service.engine.adapters, outcomes
    assert "the teacher's own" not in "".join(outcomes)  # nothing was read either
