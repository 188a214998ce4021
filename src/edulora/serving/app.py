"""The HTTP layer: OpenAI routes, the teacher page, feedback and its review, on FastAPI over ``TutorService``.

Handlers parse (``protocol``'s pydantic models), call the service and write the answer; every
failure a client can cause is a 4xx with OpenAI's error body. The API key (or a teacher's token)
is checked in constant time by a dependency that runs before anything reads the body and says
who is asking, and a body is read at most ``MAX_BODY_BYTES`` far. Waiting for a reply holds no
thread, and a client that leaves cancels its generation, streaming or not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from ..templates import teacher_page
from .engine import GenerationFailed
from .protocol import (SERVICE_ERRORS, AdapterBody, ApiError, ChatBody, FeedbackBody, RatingBody, ReviewBody, Strict,
                       chunk, completion, service_error, validation_error)
from .roles import Caller
from .service import Chat, TutorService

#: Larger bodies are refused before they are read (a conversation is kilobytes).
MAX_BODY_BYTES = 1 << 20
#: Row ids are SQLite integers: larger ones are no id at all (and would overflow the query).
SQLITE_INT = (1 << 63) - 1
#: Longest a client waits for its reply; the engine is stuck if it takes longer.
REPLY_TIMEOUT_S = 600.0
#: The teacher page's files: a fixed list, so no request path ever reaches the file system.
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
                "common.js": "text/javascript", "review.html": "text/html", "review.js": "text/javascript"}
#: The page talks only to this server; nothing from elsewhere may run in it.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'",
                "Cache-Control": "no-cache"}


def _error(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), err.status, err.headers)


def _sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


async def _events(service: TutorService, chat: Chat, include_usage: bool) -> AsyncIterator[str]:
    """The reply as server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``."""
    gen, parts = chat.generation, []
    try:
        yield _sse(chunk(chat, {"role": "assistant", "content": ""}, edulora=chat.info))
        try:
            async for text in gen.adeltas(REPLY_TIMEOUT_S):
                parts.append(text)
                yield _sse(chunk(chat, {"content": text}))
        except GenerationFailed as err:  # the status line is sent: the error is the last event (502's body if upstream)
            yield _sse(service_error(err).body())
            return
        except TimeoutError:
            yield _sse(ApiError(500, "the reply took too long", "server_error", code="generation_failed").body())
            return
        flags = await run_in_threadpool(service.complete, chat, "".join(parts))
        yield _sse(chunk(chat, {}, gen.finish_reason, edulora={"flags": flags}))
        if include_usage:
            yield _sse(chunk(chat, None, usage=chat.usage()))
        yield _sse("[DONE]")
    finally:
        gen.cancel()  # a client that left mid-stream frees its batch slot (no-op once the reply is complete)


async def _disconnect(request: Request) -> None:
    """Returns when the client closes the connection (its body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _reply(request: Request, chat: Chat) -> str | None:
    """The whole reply; None (and the generation cancelled) when the client leaves first."""
    gen = chat.generation
    reply, gone = asyncio.ensure_future(gen.atext(REPLY_TIMEOUT_S)), asyncio.ensure_future(_disconnect(request))
    await asyncio.wait({reply, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not reply.done():
        gen.cancel()
        reply.cancel()
        return None
    try:
        return reply.result()
    except TimeoutError:
        gen.cancel()
        raise ApiError(503, "the reply took too long", "server_error", code="timeout") from None


def create_app(service: TutorService, allow_origins: tuple[str, ...] = ()) -> FastAPI:
    """The ASGI application for ``service`` (``TutorServer`` runs it with uvicorn, behind ``guard.OriginGuard``);
    pages of ``allow_origins`` may call it from a browser (CORS)."""
    app = FastAPI(title="edulora", docs_url=None, redoc_url=None, openapi_url=None)
    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["x-edulora-adapter"])

    def authorize(request: Request) -> Caller:
        """Who is asking (and so what they may do); a dependency without body parameters, so FastAPI runs it before anything reads the body."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        who = service.identify(token.strip() if scheme.lower() == "bearer" else None)
        if who is None:
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY' (or a teacher's token)",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return who

    def body(model: type[Strict]) -> Any:
        async def parse(request: Request) -> Strict:
            if "transfer-encoding" in request.headers and "content-length" in request.headers:
                # h11 lets chunking win; a proxy in front may not, and the two would disagree on the body.
                raise ApiError(400, "Transfer-Encoding and Content-Length together are ambiguous",
                               code="invalid_framing")
            too_large = ApiError(413, f"the request body is over {MAX_BODY_BYTES:,} bytes", code="body_too_large")
            if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
                raise too_large  # refused from the header: the body is never read
            if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
                # What a page of another origin can send without asking first (text/plain, forms) is no JSON here.
                raise ApiError(415, "send the body as JSON, with 'Content-Type: application/json'",
                               code="unsupported_media_type")
            raw = bytearray()
            async for part in request.stream():
                raw += part
                if len(raw) > MAX_BODY_BYTES:
                    raise too_large
            return model.model_validate_json(bytes(raw), context={"max_tokens_cap": service.max_tokens_cap})
        return Depends(parse)

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    # HEAD beside GET: what a GET would answer, without the body (uvicorn leaves it out).
    @api.api_route("/models", methods=["GET", "HEAD"])
    def models() -> dict[str, Any]:
        return {"object": "list", "data": service.models()}

    @api.api_route("/models/{model_id:path}", methods=["GET", "HEAD"])
    def model(model_id: str) -> dict[str, Any]:
        return service.model(model_id)

    @api.post("/chat/completions")
    async def chat_completions(request: Request, req: ChatBody = body(ChatBody),
                               who: Caller = Depends(authorize)) -> Response:
        # Routing embeds the question and submitting tokenizes it: off the event loop.
        chat = await run_in_threadpool(service.chat, req.model, req.conversation(),
                                       req.sampling(service.engine.repetition_penalty), max_tokens=req.limit,
                                       key=req.key(), who=who)
        headers = {"x-edulora-adapter": chat.model, "x-request-id": chat.generation.id}
        if req.stream:
            usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_events(service, chat, usage), media_type="text/event-stream",
                                     headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        text = await _reply(request, chat)
        if text is None:
            return Response(status_code=499)  # nobody is listening; the status is for the access log
        await run_in_threadpool(service.complete, chat, text)  # the flags' metrics: off the event loop
        return JSONResponse(completion(chat, text), headers=headers)

    @api.post("/feedback")
    def feedback(req: FeedbackBody = body(FeedbackBody), who: Caller = Depends(authorize)) -> dict[str, Any]:
        row = service.rate(req.completion_id, req.feedback_token, rating=req.rating, comment=req.comment or None,
                           correction=req.correction or None, who=who)
        return {"id": row, "completion_id": req.completion_id, "teacher": who.name, "stored": True}

    @api.api_route("/feedback", methods=["GET", "HEAD"])
    def feedback_list(status: Literal["pending", "approved", "rejected"] | None = None,
                      who: Caller = Depends(authorize)) -> dict[str, Any]:
        return {"object": "list", "data": service.feedback_items(status, who)}

    # What students received, for their teacher: listed and rated without the reply's feedback token.
    @api.api_route("/received", methods=["GET", "HEAD"])
    def received(who: Caller = Depends(authorize)) -> dict[str, Any]:
        return {"object": "list", "data": service.received_replies(who)}

    @api.post("/received/{completion_id}/feedback")
    def rate_received(completion_id: Annotated[str, Path(min_length=1, max_length=200)],
                      req: RatingBody = body(RatingBody), who: Caller = Depends(authorize)) -> dict[str, Any]:
        row = service.rate_received(completion_id, who, rating=req.rating, comment=req.comment or None,
                                    correction=req.correction or None)
        return {"id": row, "completion_id": completion_id, "teacher": who.name, "stored": True}

    @api.post("/feedback/{row}/review")
    def review(row: Annotated[int, Path(ge=-SQLITE_INT, le=SQLITE_INT)], req: ReviewBody = body(ReviewBody), who: Caller = Depends(authorize)) -> dict[str, Any]:
        return service.review(row, who, req.status, req.correction)

    # Loading takes seconds and a removal waits for the replies in flight: both off the event loop.
    @api.post("/admin/adapters")
    async def add_adapter(req: AdapterBody = body(AdapterBody), who: Caller = Depends(authorize)) -> dict[str, Any]:
        return await run_in_threadpool(service.add_adapter, req.path, req.name, who)

    @api.delete("/admin/adapters/{name}")
    async def remove_adapter(name: str, who: Caller = Depends(authorize)) -> dict[str, Any]:
        return await run_in_threadpool(service.remove_adapter, name, who)

    @app.api_route("/health", methods=["GET", "HEAD"])  # HEAD: load balancers' and uptime checkers' probe
    def health() -> dict[str, Any]:
        return service.health()

    @app.api_route("/", methods=["GET", "HEAD"])
    @app.api_route("/static/{name}", methods=["GET", "HEAD"])
    @app.api_route("/review", methods=["GET", "HEAD"], name="review")
    def page(request: Request, name: str | None = None) -> Response:
        name = name or ("review.html" if request.url.path == "/review" else "index.html")
        if name not in STATIC_FILES:
            raise ApiError(404, f"no file {name!r}", code="not_found")
        # The pages are templates (one shared head and header); scripts and the style sheet are plain files.
        data = teacher_page(name) if name.endswith(".html") else resources.files("edulora.serving").joinpath(
            "web", name).read_bytes()
        return Response(data, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)

    app.include_router(api)

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, err: HTTPException) -> Response:
        if err.status_code == 405 and request.method == "OPTIONS":  # say which methods the path allows
            # Every route of the path (routing stops at the first, so /v1/feedback's 405 names only POST).
            methods = {m for r in [*app.routes, *api.routes] if r.matches(request.scope)[0] is not Match.NONE
                       for m in getattr(r, "methods", ())}
            return Response(status_code=204, headers={"Allow": ", ".join(sorted(methods))})
        # A path without this method is as unknown as a path that does not exist.
        status = 404 if err.status_code == 405 else err.status_code
        return _error(ApiError(status, f"no route {request.method} {request.url.path}", code="not_found",
                               headers=err.headers))

    app.add_exception_handler(ApiError, lambda _request, err: _error(err))
    app.add_exception_handler(ClientDisconnect, lambda _request, _err: Response(status_code=499))  # left mid-body
    app.add_exception_handler(ValidationError, lambda _request, err: _error(validation_error(err)))
    app.add_exception_handler(RequestValidationError, lambda _request, err: _error(validation_error(err)))
    for kind in SERVICE_ERRORS:
        app.add_exception_handler(kind, lambda _request, err: _error(service_error(err)))
    return app
