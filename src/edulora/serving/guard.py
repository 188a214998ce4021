"""What the HTTP server lets web pages and slow clients do: its origin, the hosts it answers for, idle connections.

A tutor on loopback needs no key, so any page open in the teacher's browser could otherwise talk to
it: a page from another origin can POST a ``text/plain`` body without asking first (``no-cors``),
and a page whose name is re-pointed at 127.0.0.1 (DNS rebinding) even reads the answers. So the
server answers only for its own host names (on loopback, where rebinding aims), and a request a
browser marks as coming from another origin is refused unless that origin was allowed on purpose
(``--allow-origin``). The JSON routes also refuse any body that is not ``application/json`` (``app``),
which a cross-origin page cannot send without a CORS preflight this server does not grant.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import EduloraError
from .protocol import ApiError

#: A request's head (line and headers, a few hundred bytes) must arrive within this many seconds.
HEADER_TIMEOUT_S = 10.0
#: Open connections (idle ones included) beyond which new requests get 503.
MAX_CONNECTIONS = 1000
#: The names a loopback server answers for, besides the address it is bound to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class HttpSettings:
    """How the HTTP server meets its clients (``TutorServer``; ``edulora serve`` sets ``allow_origins``)."""

    #: Web origins (``https://lms.school.org``) whose pages may call the API from the browser; their
    #: host names are answered for too (a proxy in front of the server that keeps ``Host:``).
    allow_origins: tuple[str, ...] = ()
    header_timeout_s: float = HEADER_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_origins", tuple(parse_origin(o) for o in self.allow_origins))
        if self.header_timeout_s <= 0 or self.max_connections < 1:
            raise EduloraError("header_timeout_s must be positive and max_connections at least 1")


def parse_origin(url: str) -> str:
    """``url``'s web origin as browsers send it in ``Origin:`` (``scheme://host[:port]``, lower case)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") \
            or parts.query or parts.username:
        raise EduloraError(f"--allow-origin {url!r}: give a web origin like https://lms.school.org or "
                           "http://localhost:3000 (scheme, host and port only)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def served_hosts(host: str, port: int, origins: tuple[str, ...]) -> frozenset[str]:
    """The ``Host:`` values a loopback server at ``host:port`` answers for (its names, and the allowed origins')."""
    names = {*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host}
    hosts = {f"{name}:{port}" for name in names} | names  # the name is what rebinding forges; a port may be left out
    return frozenset(hosts | {o.split("://", 1)[1] for o in origins})


class OriginGuard:
    """ASGI middleware: 403 for a ``Host:`` this server does not answer for, or an ``Origin:`` not its own.

    ``hosts`` None: any host (a server bound off loopback, which needs a key anyway, is reached by
    names it cannot know). Requests without ``Origin:`` (the API's own clients, same-origin GETs) pass.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None, origins: tuple[str, ...] = ()):
        self.app, self.hosts, self.origins = app, hosts, frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await JSONResponse(refusal.body(), refusal.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: dict[str, Any]) -> ApiError | None:
        headers = {k.decode("latin-1"): v.decode("latin-1").strip().lower() for k, v in scope["headers"]
                   if k in (b"host", b"origin")}
        host, origin = headers.get("host"), headers.get("origin")
        if host is not None and self.hosts is not None and host not in self.hosts:
            return ApiError(403, f"this server does not answer for host {host!r}; reach it by its own address "
                                 "(or start it with --allow-origin)", "permission_error", code="host_not_allowed")
        if origin is not None and origin not in self.origins and origin != f"{scope['scheme']}://{host}":
            return ApiError(403, f"requests from pages of {origin!r} are refused; start the server with "
                                 f"--allow-origin {origin} to allow them", "permission_error",
                            code="origin_not_allowed")
        return None


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete ``header_timeout_s``
    after it opened (or after its previous reply): a client dripping bytes, or sending none, holds no
    connection for ever. uvicorn's own keep-alive timer stops at the first byte, so it cannot do this."""

    header_timeout_s = HEADER_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None

    @classmethod
    def with_timeout(cls, seconds: float) -> type[TimedH11Protocol]:
        """This protocol with its own deadline (uvicorn builds the protocol from a class: ``Config(http=...)``)."""
        return type(cls.__name__, (cls,), {"header_timeout_s": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in: the request's own limits take over
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # a kept-alive connection's next request gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._deadline = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
