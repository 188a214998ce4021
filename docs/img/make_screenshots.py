"""Regenerate docs/img/workbench-chat.png and workbench-review.png from a trained tutor.

    .venv/bin/python docs/img/make_screenshots.py RUN [--out docs/img]      (or: make screenshots RUN=…)

RUN is a run folder of ``edulora train`` / ``edulora demo`` (the docs' images come from the demo's run on
SmolLM2-135M). The script starts ``edulora serve --adapter tutor=RUN`` on a free loopback port, with a
teacher's token and the feedback database in a temporary folder (nothing is written to the user's own
database), drives Debian's Chromium through the flow docs/serving.md describes — a Socratic middle-school
lesson with the teacher's key set, the reply rated and corrected, a second reply rated; then the review
page with the corrected item approved with an edited better reply and the other rejected — and saves the
two full-page screenshots with the settings panels folded. The server is stopped however the run ends.

Kept out of the ``edulora`` CLI on purpose: it needs a browser and exists for the docs only.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
TEACHER, TOKEN = "ms-lee", "token-of-ms-lee-0001"
ADAPTER = "tutor"  # the name the run is served under (a demo run has no single subject to name it by)
QUESTION = "A jacket costs $40 and is on sale for 25% off. How do I find the sale price?"
ANSWER, SOLUTION = "$30", "25% of $40 is $10, and $40 - $10 = $30."
BETTER = "What is 25% of $40? Once you know how much is taken off, what is left of the $40?"
EDITED = "What fraction of the price is 25%? Find that part of $40, then take it away from $40: what is left?"
SECOND = "What is a prime number?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments; a RUN that is no trained run is a one-line error (exit 2) before anything starts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained run folder (with adapter/)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="where the PNGs go (default: docs/img)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the server to start")
    args = parser.parse_args(argv)
    if not (args.run / "adapter" / "adapter_config.json").is_file():
        parser.error(f"{args.run}: not a trained run (no adapter/adapter_config.json in it)")
    if not os.path.exists(CHROMIUM):
        parser.error(f"{CHROMIUM} is missing (apt-get install chromium); no browser is downloaded")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    """Return once the server answers /health; raise with its log's tail if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edulora serve exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"edulora serve did not answer within {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops it (replies finish, the database closes); killed if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----- the pages --------------------------------------------------------------------------------------

def open_page(browser, url: str, path: str = "/", width: int = 1000, height: int = 900):
    """A fresh page signed in with the teacher's token (as a teacher types it under Settings)."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url + path)
    page.locator("#error", has_text="needs a key").wait_for()  # the page asks for the key (and opens Settings)
    page.fill("#key", TOKEN)
    page.dispatch_event("#key", "change")
    return page, errors


def ask(page, question: str, timeout_ms: float = 300_000):
    """Send ``question``; returns the reply card once its rating controls are shown."""
    before = page.locator(".message.assistant").count()
    page.fill("#input", question)
    page.click("#send")
    reply = page.locator(".message.assistant").nth(before)
    reply.locator(".feedback").wait_for(state="visible", timeout=timeout_ms)
    return reply


def shoot(page, path: Path) -> None:
    """The whole page with the settings panels folded, written to a temporary name first, then renamed."""
    page.evaluate("() => { for (const d of document.querySelectorAll('#settings, #key-box')) d.open = false; }")
    partial = path.with_name(f".{path.name}.partial.png")
    page.screenshot(path=str(partial), full_page=True)
    os.replace(partial, path)


def rate(card) -> None:
    """As a teacher would, whatever this run's tutor said: a flagged reply is rated bad with the first flag's
    label as the comment, an unflagged one good (the trained tutor's replies differ from run to run)."""
    flags = card.locator(".flags li[data-code]")  # an unflagged reply lists "no pedagogy flags", without a code
    if flags.count():
        card.get_by_role("button", name="Bad reply").click()
        card.locator(".comment").fill(f"{flags.first.locator('strong').inner_text()}: ask one step at a time")
    else:
        card.get_by_role("button", name="Good reply").click()
        card.locator(".comment").fill("Good: it leaves the working to the student")


def chat_and_review(browser, url: str, out: Path) -> str:
    """The lesson, rated and corrected, then the review; saves both screenshots, returns the first reply."""
    page, errors = open_page(browser, url)
    page.wait_for_selector(f"#model option[value={ADAPTER}]", state="attached")
    page.select_option("#model", ADAPTER)
    page.select_option("#grade", "middle_school")
    page.select_option("#style", "socratic")
    page.click("#key-box summary")
    page.fill("#answer", ANSWER)
    page.fill("#solution", SOLUTION)
    first = ask(page, QUESTION)
    reply = first.locator(".text").inner_text()
    rate(first)
    first.locator(".better-box summary").click()
    first.locator(".better").fill(BETTER)
    first.locator(".save").click()
    first.locator(".status", has_text="Saved ✓").wait_for()
    shoot(page, out / "workbench-chat.png")
    page.click("#reset")
    second = ask(page, SECOND)
    rate(second)
    second.locator(".save").click()
    second.locator(".status", has_text="Saved ✓").wait_for()

    review, _ = open_page(browser, url, "/review")
    review.on("pageerror", lambda err: errors.append(str(err)))
    review.locator(".item").nth(1).wait_for()
    corrected = review.locator(".item", has_text=QUESTION)
    corrected.locator(".correction").fill(EDITED)
    corrected.get_by_role("button", name="Approve").click()
    corrected.locator(".state", has_text=f"approved by {TEACHER}").wait_for()
    other = review.locator(".item", has_text=SECOND)
    other.get_by_role("button", name="Reject").click()
    other.locator(".state", has_text=f"rejected by {TEACHER}").wait_for()
    shoot(review, out / "workbench-review.png")
    if errors:
        raise RuntimeError(f"the page reported errors: {errors}")
    return reply


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from playwright.sync_api import Error as PageError, sync_playwright  # only once the arguments are known good

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edulora-screenshots-") as tmp:
        log, port = Path(tmp) / "serve.log", free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "edulora", "serve", "--adapter", f"{ADAPTER}={args.run}", "--port", str(port),
               "--feedback-db", str(Path(tmp) / "feedback.sqlite3")]
        env = {**os.environ, "EDULORA_TEACHERS": f"{TEACHER}={TOKEN}"}  # kept off the command line
        print(f"Starting the server for {args.run} on {url} ...", flush=True)
        with log.open("w") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until_up(proc, url, log, args.timeout)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                try:
                    reply = chat_and_review(browser, url, args.out)
                except PageError as err:  # a step timed out or the page broke: its first line says which
                    raise RuntimeError(f"the browser: {err.message.splitlines()[0]}") from err
                finally:
                    browser.close()
        finally:
            stop(proc)
    print(f"The tutor's reply:\n{reply}\nWrote {args.out / 'workbench-chat.png'} and {args.out / 'workbench-review.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as err:  # the server or the page failed: say what, without a traceback
        sys.exit(f"make_screenshots: {err}")
