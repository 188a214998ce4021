"""The server as a web origin: what pages of other sites, re-pointed host names and slow clients can do to it.

The default server (loopback, no key) is the one at risk: anything in the teacher's browser can reach it.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from test_serving_support import tiny_engine, tiny_runs  # noqa: F401  (fixtures)

from edulora.cli import main
from edulora.errors import EduloraError
from edulora.generation import Sampling
from edulora.serving.feedback import FeedbackStore
from edulora.serving.guard import HttpSettings
from edulora.serving.router import Router
from edulora.serving.server import TutorServer
from edulora.serving.service import TutorService

QUESTION = [{"role": "user", "content": "What is 7 times 8?"}]
LMS = "https://lms.school.example"


@pytest.fixture(scope="module")
def open_server(tiny_engine, tmp_path_factory):
    """A server as ``edulora serve`` starts it by default: loopback, no key, feedback on; one rated reply."""
    store = FeedbackStore(tmp_path_factory.mktemp("origin") / "feedback.sqlite3")
    service = TutorService(tiny_engine, Router(list(tiny_engine.adapters.values())), store)
    httpd = TutorServer(service, "127.0.0.1", 0, HttpSettings(allow_origins=(LMS,))).start()
    chat = service.chat("math", QUESTION, Sampling(), max_tokens=4)
    service.complete(chat, chat.generation.text(timeout=60))
    httpd.row = service.rate(chat.generation.id, chat.info["feedback_token"], rating=-1)
    yield httpd
    httpd.stop()
    store.close()


def request(server, method: str, path: str, body: dict | None = None, **headers: str):
    conn = http.client.HTTPConnection(*server.address, timeout=30)
    names = {k.replace("_", "-"): v for k, v in headers.items()}
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=names)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, json.loads(data) if data and data[:1] == b"{" else data


def test_a_text_plain_body_on_a_json_route_is_415_and_changes_nothing(open_server, tiny_runs):
    # What a page of another origin sends with mode "no-cors": no preflight, so the browser does not ask first.
    for path, body in ((f"/v1/feedback/{open_server.row}/review", {"status": "approved", "correction": "x"}),
                       ("/v1/admin/adapters", {"path": str(tiny_runs["bio"]), "name": "planted"}),
                       ("/v1/feedback", {"completion_id": "x", "feedback_token": "y", "rating": 1})):
        for kind in ("text/plain", "application/x-www-form-urlencoded", None):
            response, payload = request(open_server, "POST", path, body, **({"Content-Type": kind} if kind else {}))
            assert response.status == 415 and payload["error"]["code"] == "unsupported_media_type", (path, kind)
    assert open_server.service.feedback.item(open_server.row).status == "pending"
    assert "planted" not in open_server.service.engine.adapters
    response, _ = request(open_server, "POST", "/v1/chat/completions", {"model": "math", "messages": QUESTION,
                                                                        "max_tokens": 2},
                          Content_Type="application/json; charset=utf-8")
    assert response.status == 200


def test_a_foreign_host_header_is_refused_against_dns_rebinding(open_server):
    # A page at attacker.example whose name now resolves to 127.0.0.1 is "same origin" to the browser: only
    # the Host header it sends tells it apart.
    port = open_server.address[1]
    response, payload = request(open_server, "GET", "/v1/feedback", Host=f"attacker.example:{port}")
    assert response.status == 403 and payload["error"]["code"] == "host_not_allowed"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", "lms.school.example"):
        response, payload = request(open_server, "GET", "/v1/feedback", Host=host)
        assert response.status == 200 and payload["data"], host


def test_a_page_of_another_origin_is_refused_unless_allowed(open_server):
    port = open_server.address[1]
    review = f"/v1/feedback/{open_server.row}/review"
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null"):
        response, payload = request(open_server, "POST", review, {"status": "approved"}, Origin=origin,
                                    Content_Type="application/json")
        assert response.status == 403 and payload["error"]["code"] == "origin_not_allowed", origin
    assert open_server.service.feedback.item(open_server.row).status == "pending"
    # The server's own page (same origin), and an origin allowed on purpose, with the CORS answers a browser needs.
    response, _ = request(open_server, "GET", "/v1/models", Origin=f"http://localhost:{port}", Host=f"localhost:{port}")
    assert response.status == 200
    response, _ = request(open_server, "OPTIONS", review, Origin=LMS, Access_Control_Request_Method="POST",
                          Access_Control_Request_Headers="content-type")
    assert response.status == 200 and response.getheader("Access-Control-Allow-Origin") == LMS
    response, payload = request(open_server, "GET", "/v1/models", Origin=LMS)
    assert response.status == 200 and response.getheader("Access-Control-Allow-Origin") == LMS


def test_allow_origin_takes_origins_only(capsys):
    assert HttpSettings(allow_origins=("HTTPS://LMS.example:443/",)).allow_origins == ("https://lms.example",)
    assert HttpSettings(allow_origins=("http://[::1]:3000",)).allow_origins == ("http://[::1]:3000",)
    for bad in ("lms.example", "ftp://lms.example", "https://lms.example/app", "https://user@lms.example", "http://x:99999"):
        with pytest.raises(EduloraError, match="--allow-origin"):
            HttpSettings(allow_origins=(bad,))
    assert main(["serve", "--allow-origin", "lms.example", "--port", "0"]) == 2  # before any model is loaded
    assert "--allow-origin 'lms.example'" in capsys.readouterr().err


def test_incomplete_headers_are_closed_after_the_header_timeout(tiny_engine):
    server = TutorServer(TutorService(tiny_engine, Router([])), "127.0.0.1", 0,
                         HttpSettings(header_timeout_s=1.0)).start()
    try:
        silent = [socket.create_connection(server.address, timeout=10) for _ in range(10)]
        dripping = [socket.create_connection(server.address, timeout=10) for _ in range(10)]
        for sock in dripping:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        began = time.monotonic()
        while time.monotonic() - began < 2.5:  # a byte now and then: never the end of the headers
            for sock in dripping:
                try:
                    sock.sendall(b"X")
                except OSError:
                    pass
            time.sleep(0.2)
        for sock in silent + dripping:
            sock.settimeout(5)
            try:
                assert sock.recv(100) == b"", "the connection is still open"
            except ConnectionResetError:
                pass
            sock.close()
        assert time.monotonic() - began < 8
        # A request whose headers come at once is served as before, and kept alive.
        conn = http.client.HTTPConnection(*server.address, timeout=10)
        for _ in range(2):
            conn.request("GET", "/health")
            assert conn.getresponse().read() and True
        conn.close()
    finally:
        server.stop()
