"""What the server does, as typed Python calls: the HTTP layer (``app``) only parses, calls and prints.

``TutorService`` holds the engine, the router and the feedback store, and answers in plain data:
which models exist (with their subject, grade level and style), which adapter a request goes
to, a queued reply, a teacher's rating. Its exceptions say what went wrong in the caller's
terms; the HTTP layer maps each to a status code.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..data.schema import Metadata
from ..formatting import Message
from ..generation import Sampling
from .engine import Engine, Generation
from .feedback import FeedbackItem, FeedbackStore
from .router import Route, Router


class UnknownModel(LookupError):
    """The request names a model this server does not serve."""


class FeedbackDisabled(LookupError):
    """The server was started without a feedback database."""


class UnknownReply(LookupError):
    """Feedback for a completion id this server did not produce (or has forgotten)."""


class NotYours(PermissionError):
    """Feedback whose token is not the one sent with the reply: someone else's reply."""


@dataclass
class Chat:
    """A queued reply and who answers it."""

    generation: Generation
    route: Route
    #: The ``edulora`` block of the response: adapter, its metadata, routing (and the feedback token).
    info: dict[str, Any]
    #: The conversation as the client sent it, and the teacher's key: what a rating refers to.
    messages: list[Message] = field(default_factory=list)
    key: Metadata | None = None

    @property
    def model(self) -> str:
        return self.info["model"]

    def usage(self) -> dict[str, int]:
        prompt, completion = len(self.generation.prompt_ids), self.generation.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass(frozen=True)
class Served:
    """What the server remembers of a reply it produced, for a teacher's rating of it."""

    info: dict[str, Any]
    messages: list[Message]
    key: Metadata | None
    reply: str

    @property
    def chars(self) -> int:
        return len(self.reply) + sum(len(m["content"]) for m in self.messages)


@dataclass
class TutorService:
    """Everything a request needs: the engine, ``auto`` routing, and (optionally) the feedback store."""

    engine: Engine
    router: Router
    feedback: FeedbackStore | None = None
    #: Clients must send ``Authorization: Bearer api_key`` when set.
    api_key: str | None = None
    #: Highest ``max_tokens`` a request may ask for.
    max_tokens_cap: int = 2048
    #: Characters of recent conversations and replies kept in memory so teachers can rate them; the
    #: oldest are forgotten first (and can no longer be rated).
    remember_chars: int = 50_000_000
    started: int = field(default_factory=lambda: int(time.time()))
    _served: OrderedDict[str, Served] = field(default_factory=OrderedDict, init=False, repr=False)
    _served_chars: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def adapter(self, model: str) -> str | None:
        """The adapter a model id names (None: the base model)."""
        if model in self.engine.adapters:
            return model
        if model in (self.engine.base_id, "base"):
            return None
        raise UnknownModel(f"the model {model!r} does not exist; GET /v1/models lists them")

    def resolve(self, model: str, messages: list[Message]) -> Route:
        if model == "auto":
            return self.router.route(messages)
        return Route(self.adapter(model), 1.0, "requested")

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

    def models(self) -> list[dict[str, Any]]:
        """OpenAI model objects for the base model, each adapter, and ``auto`` (when there are adapters)."""
        def entry(model_id: str, extra: dict[str, Any]) -> dict[str, Any]:
            return {"id": model_id, "object": "model", "created": self.started, "owned_by": "edulora", **extra}

        data = [entry(self.engine.base_id, self.describe(None))]
        data += [entry(name, {**self.describe(name), "base_model": self.engine.base_id})
                 for name in self.engine.adapters]
        if self.engine.adapters:
            data.append(entry("auto", {"kind": "router", "subject": None, "grade_level": None,
                                       "teaching_style": None, "routing": self.router.method}))
        return data

    def model(self, model_id: str) -> dict[str, Any]:
        for entry in self.models():
            if entry["id"] == model_id:
                return entry
        raise UnknownModel(f"the model {model_id!r} does not exist")

    def chat(self, model: str, messages: list[Message], sampling: Sampling, *, max_tokens: int | None = None,
             key: Metadata | None = None) -> Chat:
        """Queue the tutor's next turn; raises the engine's ``QueueFull`` / ``ContextTooLong`` / ``EngineStopped``.

        ``key`` is the teacher's answer / solution: the tutor gets it as private material.
        """
        route = self.resolve(model, messages)
        gen = self.engine.submit(messages, route.adapter, sampling, max_tokens=max_tokens, key=key)
        info = {"adapter": route.adapter, "model": self.model_id(route.adapter), **self.describe(route.adapter),
                "routed": model == "auto", "route_score": round(route.score, 4), "route_reason": route.reason}
        if self.feedback is not None:
            info["feedback_token"] = secrets.token_urlsafe(16)
        return Chat(gen, route, info, [dict(m) for m in messages], key)

    def complete(self, chat: Chat, text: str) -> None:
        """Remember a finished reply, so that whoever received it can rate it."""
        if self.feedback is None or not text.strip() or chat.generation.finish_reason not in ("stop", "length"):
            return
        served = Served(chat.info, chat.messages, chat.key, text)  # not the generation: its token ids are large
        with self._lock:
            self._served[chat.generation.id] = served
            self._served_chars += served.chars
            while self._served_chars > self.remember_chars and len(self._served) > 1:
                self._served_chars -= self._served.popitem(last=False)[1].chars

    def rate(self, completion_id: str, token: str, *, rating: int | None, comment: str | None = None,
             correction: str | None = None) -> int:
        """Store a teacher's rating / comment / better reply of a reply this server produced.

        The conversation, the reply, the key and the adapter's metadata are the server's own
        record, never the client's; ``token`` (sent with the reply) proves the rater received it.
        """
        if self.feedback is None:
            raise FeedbackDisabled("feedback is off on this server")
        with self._lock:
            served = self._served.get(completion_id)
        if served is None:
            raise UnknownReply(f"no reply {completion_id!r} was served here recently; only recent replies of "
                               "this server can be rated")
        info = served.info
        if not hmac.compare_digest(info["feedback_token"].encode(), token.encode()):
            raise NotYours("this feedback_token is not the one sent with that reply")
        key = served.key or Metadata()
        return self.feedback.record(FeedbackItem(
            completion_id=completion_id, model=info["model"], messages=served.messages, reply=served.reply,
            adapter=info["adapter"], subject=info["subject"], grade_level=info["grade_level"],
            teaching_style=info["teaching_style"], rating=rating, comment=comment, correction=correction,
            answer=key.answer, solution=key.solution))

    def health(self) -> dict[str, Any]:
        stats = self.engine.stats
        return {"status": "ok", "model": self.engine.base_id, "adapters": list(self.engine.adapters),
                "queued": self.engine.pending, "batches": stats.batches, "mixed_batches": stats.mixed_batches,
                "largest_batch": stats.largest_batch, "cancelled": stats.cancelled, "auth": bool(self.api_key),
                "feedback": self.feedback is not None}
