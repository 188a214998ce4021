"""The OpenAI chat-completions wire format: request bodies as pydantic models, response bodies, errors.

No web framework here: ``app`` (FastAPI) parses bodies with these models and writes what these
functions build. Bodies are validated strictly ("0.5" is not a number, 1 is not ``true``), and
every refusal is an ``ApiError`` carrying OpenAI's ``{"error": {"message", "type", "param",
"code"}}`` fields, with ``param`` naming the field (``messages[0].role``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ..data.schema import MAX_FIELD_CHARS, GradeLevel, Metadata, TeachingStyle, parse_grade_level, parse_teaching_style
from ..generation import Sampling
from .engine import (MAX_STOP_CHARS, MAX_STOPS, AdapterConflict, ContextTooLong, EngineStopped, GenerationFailed,
                     QueueFull, UpstreamFailed)
from .service import (BadAdapter, Chat, FeedbackDisabled, NotAdmin, NotYourConversation, NotYours, StudentsOnlyChat,
                      UnknownFeedback, UnknownModel, UnknownReply)

MAX_MESSAGES = 200
_UNSUPPORTED = ("frequency_penalty", "presence_penalty", "tools", "functions", "tool_choice", "logprobs",
                "top_logprobs", "logit_bias", "audio")


class ApiError(Exception):
    """A request the server refuses, with the OpenAI error fields."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _text(value: Any) -> str:
    """A message's text: a string, or OpenAI's list of content parts (text parts only)."""
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                       and isinstance(p.get("text"), str) for p in value):
        value = "\n".join(p["text"] for p in value)
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_type", "must be a string or a list of text parts")
    if len(value) > MAX_FIELD_CHARS:
        raise PydanticCustomError("invalid_value", f"is {len(value):,} characters long (limit {MAX_FIELD_CHARS:,})")
    return value


def _stops(value: Any) -> tuple[str, ...]:
    """OpenAI's ``stop``; bounded, since every new token is checked against each stop string."""
    stops = [] if value is None else [value] if isinstance(value, str) else value
    if not (isinstance(stops, list) and len(stops) <= MAX_STOPS
            and all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)):
        raise PydanticCustomError("invalid_type", f"must be a string or a list of at most {MAX_STOPS} non-empty "
                                                  f"strings of at most {MAX_STOP_CHARS} characters")
    return tuple(stops)


def _not_bool(value: Any) -> Any:
    """Pydantic matches ``true`` to ``Literal[1]`` (True == 1 in Python); the API's types are strict."""
    if isinstance(value, bool):
        raise PydanticCustomError("invalid_type", "must be a number, not true or false")
    return value


def _level(parse: Any) -> Any:
    """A validator reading a teacher's wording ("grade 7", "Socratic") into the schema's value, or refusing it."""
    def check(value: Any) -> Any:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise PydanticCustomError("invalid_type", "must be a string")
        try:
            return parse(value)
        except ValueError as err:
            raise PydanticCustomError("invalid_value", str(err)) from None
    return BeforeValidator(check)


Text = Annotated[str, BeforeValidator(_text)]
Id = Annotated[str, Field(min_length=1, max_length=200)]
Note = Annotated[str | None, Field(max_length=MAX_FIELD_CHARS)]
#: What a random generator can be seeded with (torch takes these; larger seeds overflow it).
Seed = Annotated[int | None, Field(ge=-(1 << 63), lt=1 << 64)]


class Strict(BaseModel):
    # Other OpenAI options are accepted and ignored, as OpenAI-compatible servers do.
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text


class Key(Strict):
    """The request's ``metadata``: the teacher's key for the conversation (the tutor never states it),
    and the grade level and teaching style to teach in when not the adapter's own."""

    answer: Note = None
    solution: Note = None
    grade_level: Annotated[GradeLevel | None, _level(parse_grade_level)] = None
    teaching_style: Annotated[TeachingStyle | None, _level(parse_teaching_style)] = None


class StreamOptions(Strict):
    include_usage: bool = False


class ChatBody(Strict):
    model: Id
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_tokens: Annotated[int | None, Field(ge=1)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1)] = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    repetition_penalty: Annotated[float | None, Field(gt=0, le=10)] = None
    stop: Annotated[tuple[str, ...], BeforeValidator(_stops)] = ()
    seed: Seed = None
    n: Annotated[Literal[1] | None, BeforeValidator(_not_bool)] = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: Key | None = None

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise PydanticCustomError("invalid_value", "the last message must be from the user (the tutor replies)")
        return messages

    @field_validator("max_tokens", "max_completion_tokens")
    @classmethod
    def _capped(cls, value: int | None, info: ValidationInfo) -> int | None:
        cap = (info.context or {}).get("max_tokens_cap")
        if value is not None and cap is not None and value > cap:
            raise PydanticCustomError("invalid_value", f"must be at most {cap} on this server")
        return value

    def model_post_init(self, context: Any) -> None:
        for name in _UNSUPPORTED:  # unknown options are ignored; these would change the reply, so they are refused
            if (self.model_extra or {}).get(name) not in (None, False, 0, [], {}):
                hint = "; use 'repetition_penalty'" if name.endswith("_penalty") else ""
                raise ApiError(400, f"'{name}' is not supported by this server{hint}", param=name,
                               code="unsupported_parameter")
        if (self.model_extra or {}).get("response_format") not in (None, {"type": "text"}):  # only text is written
            raise ApiError(400, "'response_format' other than {\"type\": \"text\"} is not supported by this server",
                           param="response_format", code="unsupported_parameter")

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def conversation(self) -> list[dict[str, str]]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in self.messages]

    def sampling(self, repetition_penalty: float) -> Sampling:
        """The decoding rules asked for; ``repetition_penalty`` is the server's default."""
        return Sampling(temperature=self.temperature, top_p=self.top_p, stop=self.stop, seed=self.seed,
                        repetition_penalty=self.repetition_penalty or repetition_penalty)

    def key(self) -> Metadata | None:
        if self.metadata is None:
            return None
        key = self.metadata.model_dump(include={"answer", "solution"}, exclude_none=True)
        meta = Metadata(grade_level=self.metadata.grade_level, teaching_style=self.metadata.teaching_style, extra=key)
        return meta if key or meta.grade_level or meta.teaching_style else None


class RatingBody(Strict):
    """A teacher's rating, comment and better reply of a reply a student received (the review page sends it)."""

    rating: Annotated[Literal[1, -1] | None, BeforeValidator(_not_bool)] = None
    comment: Note = None
    correction: Note = None


class FeedbackBody(RatingBody):
    """A teacher's rating of a reply this server produced (the page sends it)."""

    completion_id: Id
    #: The secret that came with the reply: only whoever received it can rate it.
    feedback_token: Id


class AdapterBody(Strict):
    """An adapter to serve from now on: a run or adapter folder on the server's machine, and its name."""

    path: Annotated[str, Field(min_length=1, max_length=4096)]
    #: Default: the adapter's subject (as ``--adapter RUN``).
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class ReviewBody(Strict):
    """A teacher's decision on a feedback item: approve (optionally with an edited better reply), reject, reopen."""

    status: Literal["approved", "rejected", "pending"]
    #: The better reply to train on, as edited in review; absent: keep the rater's.
    correction: Note = None


def validation_error(err: ValidationError | Any) -> ApiError:
    """Pydantic's first complaint (or FastAPI's, which has the same ``errors()``) as an OpenAI error."""
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or None
    code = first["type"]
    if code == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON: {first['msg']}", code="invalid_json")
    message = first["msg"] if code.startswith("invalid_") else first["msg"].lower()
    return ApiError(400, f"'{param}' {message}" if param else f"the request body: {message}", param=param, code=code)


#: What the service's exceptions mean: status, error type, param, code.
_SERVICE_ERRORS: dict[type[Exception], tuple[int, str, str | None, str]] = {
    UnknownModel: (404, "invalid_request_error", "model", "model_not_found"),
    UnknownReply: (404, "invalid_request_error", "completion_id", "completion_not_found"),
    UnknownFeedback: (404, "invalid_request_error", None, "feedback_not_found"),
    NotYours: (403, "permission_error", "feedback_token", "invalid_feedback_token"),
    FeedbackDisabled: (404, "invalid_request_error", None, "feedback_disabled"),
    ContextTooLong: (400, "invalid_request_error", "messages", "context_length_exceeded"),
    QueueFull: (429, "rate_limit_error", None, "queue_full"),
    EngineStopped: (503, "server_error", None, "shutting_down"),
    UpstreamFailed: (502, "server_error", None, "upstream_error"),  # before its base class: the first match wins
    GenerationFailed: (500, "server_error", None, "generation_failed"),
    NotAdmin: (403, "permission_error", None, "admin_only"),
    StudentsOnlyChat: (403, "permission_error", None, "students_chat_only"),
    NotYourConversation: (403, "permission_error", "completion_id", "not_your_conversation"),
    BadAdapter: (400, "invalid_request_error", "path", "invalid_adapter"),
    AdapterConflict: (409, "invalid_request_error", "name", "adapter_conflict"),
    TimeoutError: (503, "server_error", None, "timeout"),
}
SERVICE_ERRORS = tuple(_SERVICE_ERRORS)


def service_error(err: Exception) -> ApiError:
    status, kind, param, code = next(v for k, v in _SERVICE_ERRORS.items() if isinstance(err, k))
    if status == 429:
        return ApiError(status, f"the server is busy: {err}", kind, param, code, {"Retry-After": "1"})
    return ApiError(status, str(err), kind, param, code)


def completion(chat: Chat, text: str) -> dict[str, Any]:
    gen = chat.generation
    return {"id": gen.id, "object": "chat.completion", "created": gen.created, "model": chat.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": gen.finish_reason, "logprobs": None}],
            "usage": chat.usage(), "system_fingerprint": None, "edulora": {**chat.info, "flags": chat.flags}}


def chunk(chat: Chat, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One streamed chunk; ``delta`` None makes the closing usage chunk (no choices)."""
    gen = chat.generation
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    return {"id": gen.id, "object": "chat.completion.chunk", "created": gen.created, "model": chat.model,
            "system_fingerprint": None, "choices": choices, **extra}
