"""The HTTP server: OpenAI-compatible chat completions, model listing, feedback, the teacher page.

Built on the standard library's ``ThreadingHTTPServer``: one thread per connection, each of
which only validates, enqueues and waits on the engine, so threads stay cheap and the model is
touched by the engine thread alone. Every failure a client can cause is answered with a 4xx and
an OpenAI-style ``{"error": {"message", "type", "param", "code"}}`` body; an unexpected one is a
500 with the same shape, and the server keeps running either way.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from ..data.schema import MAX_FIELD_CHARS
from ..errors import EduloraError
from ..formatting import Message
from ..generation import Sampling
from .engine import ContextTooLong, Engine, EngineStopped, Generation, GenerationFailed, QueueFull
from .feedback import FeedbackItem, FeedbackStore
from .router import Route, Router

log = logging.getLogger(__name__)

#: Larger bodies are refused before they are read (a conversation is kilobytes).
MAX_BODY_BYTES = 1 << 20
MAX_MESSAGES = 200
#: Longest a handler waits for its reply; the engine is stuck if it takes longer.
REPLY_TIMEOUT_S = 600.0
#: The teacher page's files: a fixed list, so no request path ever reaches the file system.
STATIC_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
                "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
                "/static/style.css": ("style.css", "text/css; charset=utf-8")}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_UNSUPPORTED = ("tools", "functions", "tool_choice", "logprobs", "top_logprobs", "logit_bias", "audio")


class ApiError(Exception):
    """A request the server refuses, with the OpenAI error fields."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    sampling: Sampling
    max_tokens: int | None = None
    stream: bool = False
    include_usage: bool = False


def _number(body: dict, name: str, low: float, high: float, default: float, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"'{name}' must be a number, got {json.dumps(value)[:50]}", name, "invalid_type")
    if value > high or value < low or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise _bad(f"'{name}' must be in {interval}, got {value}", name)
    return float(value)


def _integer(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{name}' must be an integer, got {json.dumps(value)[:50]}", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low} and {high}, got {value}", name)
    return value


def _content(value: Any, index: int) -> str:
    """A message's text: a string, or OpenAI's list of content parts (text parts only)."""
    param = f"messages[{index}].content"
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        parts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad(f"{param}: only text parts are supported", param, "invalid_type")
            parts.append(part["text"])
        text = "\n".join(parts)
    else:
        raise _bad(f"{param} must be a string or a list of text parts", param, "invalid_type")
    if len(text) > MAX_FIELD_CHARS:
        raise _bad(f"{param} is {len(text):,} characters long (limit {MAX_FIELD_CHARS:,})", param)
    return text


def parse_messages(value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise _bad("'messages' must be a non-empty list", "messages", "invalid_type")
    if len(value) > MAX_MESSAGES:
        raise _bad(f"'messages' has {len(value)} entries (limit {MAX_MESSAGES})", "messages")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        role = _ROLES.get(message.get("role"))
        if role is None:
            raise _bad(f"messages[{i}].role must be one of {', '.join(_ROLES)}", f"messages[{i}].role")
        messages.append({"role": role, "content": _content(message.get("content"), i)})
    if messages[-1]["role"] != "user":
        raise _bad("the last message must be from the user (the tutor replies to it)", "messages")
    return messages


def parse_chat_request(body: Any, max_tokens_cap: int, repetition_penalty: float) -> ChatRequest:
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", None, "invalid_type")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: an adapter name, the base model's name, or \"auto\"", "model",
                   "invalid_type")
    for name in _UNSUPPORTED:
        if body.get(name) not in (None, False, [], {}):
            raise _bad(f"'{name}' is not supported by this server", name, "unsupported_parameter")
    for name in ("frequency_penalty", "presence_penalty"):
        if _number(body, name, -2, 2, 0.0) != 0.0:
            raise _bad(f"'{name}' is not supported; use 'repetition_penalty'", name, "unsupported_parameter")
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise _bad("'n' must be 1", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("'stream' must be true or false", "stream", "invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise _bad("'stream_options' must be an object like {\"include_usage\": true}", "stream_options",
                   "invalid_type")
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s for s in stop):
        stops = tuple(stop)
    else:
        raise _bad("'stop' must be a string or a list of at most 4 non-empty strings", "stop", "invalid_type")
    max_tokens = _integer(body, "max_completion_tokens", 1, max_tokens_cap)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, max_tokens_cap)
    sampling = Sampling(
        temperature=_number(body, "temperature", 0.0, 2.0, 0.0),
        top_p=_number(body, "top_p", 0.0, 1.0, 1.0, low_open=True),
        stop=stops,
        seed=_integer(body, "seed", -(2**63), 2**63 - 1),
        repetition_penalty=_number(body, "repetition_penalty", 0.0, 10.0, repetition_penalty, low_open=True))
    return ChatRequest(model, parse_messages(body.get("messages")), sampling, max_tokens, stream,
                       bool(options.get("include_usage", False)))


@dataclass
class App:
    """Everything the handlers share."""

    engine: Engine
    router: Router
    feedback: FeedbackStore | None = None
    api_key: str | None = None
    max_tokens_cap: int = 2048
    started: int = field(default_factory=lambda: int(time.time()))

    def resolve(self, model: str, messages: list[Message]) -> Route:
        if model == "auto":
            return self.router.route(messages)
        if model in self.engine.adapters:
            return Route(model, 1.0, "requested")
        if model in (self.engine.base_id, "base"):
            return Route(None, 1.0, "requested")
        raise ApiError(404, f"the model {model!r} does not exist; GET /v1/models lists them", param="model",
                       code="model_not_found")

    def model_id(self, adapter: str | None) -> str:
        return adapter if adapter is not None else self.engine.base_id

    def describe(self, adapter: str | None) -> dict[str, Any]:
        """The metadata shown with a model and with every reply: who answered, for which grade, how."""
        if adapter is None:
            return {"kind": "base", "subject": None, "grade_level": None, "teaching_style": None}
        spec = self.engine.adapters[adapter]
        meta = spec.metadata
        return {"kind": "adapter", "subject": meta.get("subject"), "grade_level": meta.get("grade_level"),
                "teaching_style": meta.get("teaching_style"), "description": spec.info.description or None}

    def models(self) -> dict[str, Any]:
        def entry(model_id: str, extra: dict[str, Any]) -> dict[str, Any]:
            return {"id": model_id, "object": "model", "created": self.started, "owned_by": "edulora", **extra}

        data = [entry(self.engine.base_id, self.describe(None))]
        data += [entry(name, {**self.describe(name), "base_model": self.engine.base_id})
                 for name in self.engine.adapters]
        if self.engine.adapters:
            data.append(entry("auto", {"kind": "router", "subject": None, "grade_level": None,
                                       "teaching_style": None, "routing": self.router.method}))
        return {"object": "list", "data": data}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edulora"
    #: Idle keep-alive connections close after this many seconds instead of holding a thread forever.
    timeout = 120
    server: TutorServer

    @property
    def app(self) -> App:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # ----- plumbing ----------------------------------------------------------------------------
    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: ApiError) -> None:
        self._send_json(err.status, err.body(), err.headers)

    def _dispatch(self, method: str) -> None:
        try:
            path = self.path.split("?", 1)[0]
            if method == "GET" and path in STATIC_FILES:
                return self._static(path)
            if method == "GET" and path == "/health":
                return self._send_json(200, self._health())
            body = self._read_body() if method == "POST" else None
            self._authorize()
            route = {("GET", "/v1/models"): self._list_models,
                     ("POST", "/v1/chat/completions"): self._chat,
                     ("POST", "/v1/feedback"): self._feedback}.get((method, path))
            if route is not None:
                return route(body)
            if method == "GET" and path.startswith("/v1/models/"):
                return self._get_model(path.removeprefix("/v1/models/"))
            raise ApiError(404, f"no route {method} {path}", code="not_found")
        except ApiError as err:
            if err.code in ("length_required", "body_too_large", "invalid_header"):
                self.close_connection = True  # the body was never read, so the connection cannot be reused
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # a bug: answer, log, keep serving
            log.exception("internal error on %s %s", method, self.path)
            self.close_connection = True
            try:
                self._send_error(ApiError(500, f"internal server error: {type(err).__name__}", "server_error",
                                          code="internal_error"))
            except OSError:
                pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise ApiError(411, "a Content-Length header is required", code="length_required")
        try:
            length = int(length_text)
        except ValueError:
            raise ApiError(400, "bad Content-Length header", code="invalid_header") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is over {MAX_BODY_BYTES:,} bytes", code="body_too_large")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ApiError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from None

    def _authorize(self) -> None:
        key = self.app.api_key
        if not key:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def _static(self, path: str) -> None:
        name, content_type = STATIC_FILES[path]
        data = resources.files("edulora.serving").joinpath("web", name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        # The page talks only to this server; nothing from elsewhere may run in it.
        self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(data)

    def _health(self) -> dict[str, Any]:
        stats = self.app.engine.stats
        return {"status": "ok", "model": self.app.engine.base_id, "adapters": list(self.app.engine.adapters),
                "queued": self.app.engine.pending, "batches": stats.batches, "mixed_batches": stats.mixed_batches,
                "largest_batch": stats.largest_batch, "auth": bool(self.app.api_key),
                "feedback": self.app.feedback is not None}

    # ----- endpoints ---------------------------------------------------------------------------
    def _list_models(self, _body: Any) -> None:
        self._send_json(200, self.app.models())

    def _get_model(self, model_id: str) -> None:
        for entry in self.app.models()["data"]:
            if entry["id"] == model_id:
                return self._send_json(200, entry)
        raise ApiError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")

    def _chat(self, body: Any) -> None:
        app = self.app
        request = parse_chat_request(body, app.max_tokens_cap, app.engine.repetition_penalty)
        route = app.resolve(request.model, request.messages)
        try:
            gen = app.engine.submit(request.messages, route.adapter, request.sampling, max_tokens=request.max_tokens)
        except ContextTooLong as err:
            raise ApiError(400, str(err), param="messages", code="context_length_exceeded") from None
        except QueueFull as err:
            raise ApiError(429, f"the server is busy: {err}", "rate_limit_error", code="queue_full",
                           headers={"Retry-After": "1"}) from None
        except EngineStopped as err:
            raise ApiError(503, str(err), "server_error", code="shutting_down") from None
        info = {"adapter": route.adapter, "model": app.model_id(route.adapter), **app.describe(route.adapter),
                "routed": request.model == "auto", "route_score": round(route.score, 4),
                "route_reason": route.reason}
        headers = {"x-edulora-adapter": app.model_id(route.adapter), "x-request-id": gen.id}
        if request.stream:
            self._stream(gen, request, info, headers)
        else:
            self._complete(gen, info, headers)

    def _usage(self, gen: Generation) -> dict[str, int]:
        prompt = len(gen.prompt_ids)
        return {"prompt_tokens": prompt, "completion_tokens": gen.completion_tokens,
                "total_tokens": prompt + gen.completion_tokens}

    def _complete(self, gen: Generation, info: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            text = gen.text(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            gen.cancel()
            raise ApiError(503, "the reply took too long", "server_error", code="timeout") from None
        except GenerationFailed as err:
            raise ApiError(500, str(err), "server_error", code="generation_failed") from None
        self._send_json(200, {
            "id": gen.id, "object": "chat.completion", "created": gen.created, "model": info["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": gen.finish_reason, "logprobs": None}],
            "usage": self._usage(gen), "system_fingerprint": None, "edulora": info}, headers)

    def _stream(self, gen: Generation, request: ChatRequest, info: dict[str, Any], headers: dict[str, str]) -> None:
        # No Content-Length for a stream: the body ends when the connection closes.
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
            return {"id": gen.id, "object": "chat.completion.chunk", "created": gen.created, "model": info["model"],
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}

        try:
            self._event(chunk({"role": "assistant", "content": ""}, edulora=info))
            try:
                for text in gen.deltas(timeout=REPLY_TIMEOUT_S):
                    self._event(chunk({"content": text}))
            except (GenerationFailed, queue.Empty) as err:
                gen.cancel()
                failure = ApiError(500, str(err) or "the reply took too long", "server_error",
                                   code="generation_failed")
                self._event(failure.body())
                return
            self._event(chunk({}, gen.finish_reason))
            if request.include_usage:
                self._event({"id": gen.id, "object": "chat.completion.chunk", "created": gen.created,
                             "model": info["model"], "choices": [], "usage": self._usage(gen)})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except OSError:  # the client went away: free its batch slot
            gen.cancel()

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n")
        self.wfile.flush()

    def _feedback(self, body: Any) -> None:
        store = self.app.feedback
        if store is None:
            raise ApiError(404, "feedback is off on this server", code="feedback_disabled")
        if not isinstance(body, dict):
            raise _bad("the request body must be a JSON object", None, "invalid_type")

        def text(name: str, required: bool = False) -> str | None:
            value = body.get(name)
            if value is None or (value == "" and not required):
                if required:
                    raise _bad(f"'{name}' is required", name, "missing")
                return None
            if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
                raise _bad(f"'{name}' must be a string of at most {MAX_FIELD_CHARS:,} characters", name,
                           "invalid_type")
            return value

        rating = body.get("rating")
        if rating not in (None, 1, -1) or isinstance(rating, bool):
            raise _bad("'rating' must be 1 (good), -1 (bad) or null", "rating")
        completion_id, model = text("completion_id", True), text("model", True)
        if model in self.app.engine.adapters:
            adapter: str | None = model
        elif model in (self.app.engine.base_id, "base"):
            adapter = None
        else:
            raise ApiError(404, f"the model {model!r} does not exist", param="model", code="model_not_found")
        meta = self.app.describe(adapter)
        item = FeedbackItem(completion_id=completion_id or "", model=self.app.model_id(adapter),
                            messages=parse_messages(body.get("messages")), reply=text("reply", True) or "",
                            adapter=adapter, subject=meta["subject"], grade_level=meta["grade_level"],
                            teaching_style=meta["teaching_style"], rating=rating, comment=text("comment"),
                            correction=text("correction"))
        row = store.record(item)
        self._send_json(200, {"id": row, "completion_id": item.completion_id, "stored": True})


class TutorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App):
        self.app = app
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host if ':' not in str(host) else f'[{host}]'}:{port}"


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000) -> TutorServer:
    """Bind the server (port 0 picks a free one); refuses a non-loopback host without an API key."""
    if not is_loopback(host) and not app.api_key:
        raise EduloraError(f"serving on {host} exposes the tutor to the network: set --api-key "
                           "(or EDULORA_API_KEY), or bind to 127.0.0.1")
    try:
        return TutorServer((host, port), app)
    except OSError as err:
        raise EduloraError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def run_in_thread(server: TutorServer) -> threading.Thread:
    """Serve from a background thread (tests, notebooks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="edulora-http", daemon=True)
    thread.start()
    return thread
