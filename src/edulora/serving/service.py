"""What the server does, as typed Python calls: the HTTP layer (``app``) only parses, calls and prints.

``TutorService`` holds the engine, the router and the feedback store, and answers in plain data:
which models exist (with their subject, grade level and style), which adapter a request goes
to, a queued reply and its pedagogy flags, a teacher's rating, the review of collected feedback.
Its exceptions say what went wrong in the caller's terms; the HTTP layer maps each to a status code.

Who is asking: the holder of the API key (``api-key``), a teacher by the name their token was
given (``teachers``; ``reviewers`` among them), a student of a teacher (``students``), or ``local``
on a loopback server without keys; ``roles`` says what each may do. Ratings are stored per
teacher, so one teacher's rating never replaces another's, and every reply remembers whose
conversation it is, so a teacher reads and reviews only their own.
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
from ..errors import EduloraError
from ..formatting import Message
from ..generation import Sampling
from .engine import AdapterConflict, Engine, Generation
from .feedback import FeedbackItem, FeedbackStore
from .flags import Flag, reply_flags
from .received import ReceivedLog, ReceivedReply
from .roles import API_KEY, LOCAL, LOCAL_IDENTITY, Caller, Roles
from .router import Route, Router


class UnknownModel(LookupError):
    """The request names a model this server does not serve."""


class FeedbackDisabled(LookupError):
    """The server was started without a feedback database."""


class UnknownReply(LookupError):
    """Feedback for a completion id this server did not produce (or has forgotten)."""


class NotYours(PermissionError):
    """Feedback whose token is not the one sent with the reply: someone else's reply."""


class UnknownFeedback(LookupError):
    """A review of a feedback row that does not exist."""


class NotAdmin(PermissionError):
    """Only the API key's holder (or anyone on a loopback server without keys) changes the served adapters."""


class StudentsOnlyChat(PermissionError):
    """A student's token opens the chat (and the model list), never feedback, its review or the admin routes."""


class NotYourConversation(PermissionError):
    """A teacher rates only their own conversations (asked with their token or by their students)."""


class BadAdapter(ValueError):
    """An adapter folder that cannot be served here (missing, damaged, another base model)."""


def parse_teachers(values: list[str], api_key: str | None = None) -> dict[str, str]:
    """``NAME=TOKEN`` strings as {name: token}; names and tokens must be unique (a token names one teacher)."""
    return Roles.parse(values, (), api_key).teachers


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
    #: Pedagogy flags computed on the finished reply (``complete``).
    flags: list[Flag] = field(default_factory=list)
    #: Whose conversation it is (``Caller.name`` of who asked: a student's is their teacher's).
    owner: str = LOCAL_IDENTITY
    #: Asked with a student's token: the finished reply is kept for their teacher (``received``).
    student: bool = False

    @property
    def model(self) -> str:
        return self.info["model"]

    def usage(self) -> dict[str, Any]:
        prompt, completion = len(self.generation.prompt_ids), self.generation.completion_tokens
        # OpenAI's field for prompt tokens served from a cache: llama.cpp's slot of the conversation (0 on
        # transformers, which keeps none, and on vLLM, whose count is not passed on).
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": self.generation.cached_tokens}}


@dataclass(frozen=True)
class Served:
    """What the server remembers of a reply it produced, for a teacher's rating of it."""

    info: dict[str, Any]
    messages: list[Message]
    key: Metadata | None
    reply: str
    flags: list[Flag]
    owner: str = LOCAL_IDENTITY

    @property
    def chars(self) -> int:
        return len(self.reply) + sum(len(m["content"]) for m in self.messages)


@dataclass
class TutorService:
    """Everything a request needs: the engine, ``auto`` routing, and (optionally) the feedback store."""

    engine: Engine
    router: Router
    feedback: FeedbackStore | None = None
    #: Clients must send ``Authorization: Bearer api_key`` (or a teacher's token) when set.
    api_key: str | None = None
    #: Teachers' own tokens, {name: token}: each rates under their name, and reviews their own conversations.
    teachers: dict[str, str] = field(default_factory=dict)
    #: Teachers (by name) who read and review every teacher's feedback.
    reviewers: frozenset[str] = frozenset()
    #: Students' tokens, {token: their teacher's name}: chat only.
    students: dict[str, str] = field(default_factory=dict)
    #: Highest ``max_tokens`` a request may ask for.
    max_tokens_cap: int = 2048
    #: Characters of recent conversations and replies kept in memory so teachers can rate them; the
    #: oldest are forgotten first (and can no longer be rated).
    remember_chars: int = 50_000_000
    #: The learned judges whose verdicts join each reply's flags (``flags.judged_flags``); None: rules only.
    judges: Any = None
    started: int = field(default_factory=lambda: int(time.time()))
    #: The replies students received, for their teacher to rate (None: the feedback database's, when there is one).
    received: ReceivedLog | None = None
    _served: OrderedDict[str, Served] = field(default_factory=OrderedDict, init=False, repr=False)
    _served_chars: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _admin_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    #: Who holds each key, with the key as bytes: built once, as the roles are fixed when the service is created.
    _callers: list[tuple[Caller, bytes]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.received is None and self.feedback is not None:
            self.received = ReceivedLog(self.feedback.path)
        callers = [(API_KEY, self.api_key)]
        callers += [(Caller(name, "reviewer" if name in self.reviewers else "teacher"), secret)
                    for name, secret in self.teachers.items()]
        callers += [(Caller(teacher, "student"), secret) for secret, teacher in self.students.items()]
        self._callers = [(caller, (secret or "").encode()) for caller, secret in callers]

    @property
    def locked(self) -> bool:
        """Whether requests must carry a key (the API key, a teacher's or a student's token)."""
        return bool(self.api_key or self.teachers or self.students)

    def identify(self, token: str | None) -> Caller | None:
        """Who sends bearer ``token`` (``roles``): the API key's holder, a teacher, a student, or ``local`` when
        no key is needed; None: nobody."""
        if not self.locked:
            return LOCAL
        given, found = (token or "").encode(), None
        for caller, secret in self._callers:
            # Every secret is compared, found or not: the time taken says nothing about which matched.
            if secret and hmac.compare_digest(given, secret) and found is None:
                found = caller
        return found

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
             key: Metadata | None = None, who: Caller = LOCAL) -> Chat:
        """Queue the tutor's next turn; raises the engine's ``QueueFull`` / ``ContextTooLong`` / ``EngineStopped``.

        ``key`` is the teacher's answer / solution (the tutor gets it as private material) and the
        grade level / teaching style this conversation asks for instead of the adapter's.
        """
        route = self.resolve(model, messages)
        gen = self.engine.submit(messages, route.adapter, sampling, max_tokens=max_tokens, key=key)
        info = {"adapter": route.adapter, "model": self.model_id(route.adapter), **self.describe(route.adapter),
                "routed": model == "auto", "route_score": round(route.score, 4), "route_reason": route.reason}
        for name in ("grade_level", "teaching_style"):
            if key is not None and getattr(key, name) is not None:
                info[name] = getattr(key, name).value
        if self.feedback is not None:
            info["feedback_token"] = secrets.token_urlsafe(16)
        return Chat(gen, route, info, [dict(m) for m in messages], key, owner=who.name, student=who.role == "student")

    def complete(self, chat: Chat, text: str) -> list[Flag]:
        """The finished reply's pedagogy flags; remembers the reply, so that whoever received it can rate it."""
        chat.flags = reply_flags(text, chat.messages, self.engine.metadata(chat.route.adapter, chat.key), self.judges)
        if self.feedback is None or not text.strip() or chat.generation.finish_reason not in ("stop", "length"):
            return chat.flags
        # Not the generation: token ids are large.
        served = Served(chat.info, chat.messages, chat.key, text, chat.flags, chat.owner)
        with self._lock:
            self._served[chat.generation.id] = served
            self._served_chars += served.chars
            while self._served_chars > self.remember_chars and len(self._served) > 1:
                self._served_chars -= self._served.popitem(last=False)[1].chars
        if chat.student and self.received is not None:
            key = chat.key or Metadata()
            self.received.add(ReceivedReply(chat.generation.id, chat.owner, time.time(), chat.info, chat.messages,
                                            text, chat.flags, key.answer, key.solution))
        return chat.flags

    def _store(self) -> FeedbackStore:
        if self.feedback is None:
            raise FeedbackDisabled("feedback is off on this server")
        return self.feedback

    def rate(self, completion_id: str, token: str, *, rating: int | None, comment: str | None = None,
             correction: str | None = None, who: Caller = LOCAL) -> int:
        """Store ``who``'s rating / comment / better reply of a reply this server produced.

        The conversation, the reply, its flags, the key and the metadata are the server's own
        record, never the client's; ``token`` (sent with the reply) proves the rater received it.
        Each teacher has their own row: rating again changes only one's own. A teacher rates only
        their own conversations (a reviewer or the API key's holder any); a student none.
        """
        self._not_student(who)
        self._store()
        with self._lock:
            served = self._served.get(completion_id)
        if served is None:
            raise UnknownReply(f"no reply {completion_id!r} was served here recently; only recent replies of "
                               "this server can be rated")
        info = served.info
        if not hmac.compare_digest(info["feedback_token"].encode(), token.encode()):
            raise NotYours("this feedback_token is not the one sent with that reply")
        key = served.key or Metadata()
        return self._record(ReceivedReply(completion_id, served.owner, 0.0, info, served.messages, served.reply,
                                          served.flags, key.answer, key.solution), who, rating, comment, correction)

    def _record(self, reply: ReceivedReply, who: Caller, rating: int | None, comment: str | None,
                correction: str | None) -> int:
        """``who``'s feedback on ``reply`` stored under their name, once it is theirs to rate."""
        if who.owner not in (None, reply.owner):
            raise NotYourConversation("that reply is another teacher's conversation; only its teacher or a "
                                      "reviewer rates it")
        info = reply.info
        return self._store().record(FeedbackItem(
            completion_id=reply.completion_id, model=info["model"], messages=reply.messages, reply=reply.reply,
            adapter=info["adapter"], subject=info["subject"], grade_level=info["grade_level"],
            teaching_style=info["teaching_style"], rating=rating, comment=comment, correction=correction,
            answer=reply.answer, solution=reply.solution, teacher=who.name, flags=reply.flags, owner=reply.owner))

    def received_replies(self, who: Caller = LOCAL) -> list[dict[str, Any]]:
        """The replies students received, newest first, for the review page: a teacher's own class's (everyone's
        for a reviewer and the API key's holder), each with the caller's own feedback on it (``mine``, or None)."""
        self._not_student(who)
        store = self._store()
        mine = {i.completion_id: {"id": i.id, "rating": i.rating, "comment": i.comment, "correction": i.correction,
                                  "status": i.status, "reviewed_by": i.reviewed_by}
                for i in store.items(owner=who.owner) if i.teacher == who.name}
        return [{**r.to_dict(), "mine": mine.get(r.completion_id)}
                for r in (self.received.replies(who.owner) if self.received else [])]

    def rate_received(self, completion_id: str, who: Caller, *, rating: int | None, comment: str | None = None,
                      correction: str | None = None) -> int:
        """Store ``who``'s rating / comment / better reply of a reply one of their students received (any student's
        for a reviewer and the API key's holder): no feedback token, the teacher never held the reply's."""
        self._not_student(who)
        self._store()
        reply = self.received.get(completion_id) if self.received else None
        if reply is None:
            raise UnknownReply(f"no reply {completion_id!r} that a student received is kept here")
        return self._record(reply, who, rating, comment, correction)

    def feedback_items(self, status: str | None = None, who: Caller = LOCAL) -> list[dict[str, Any]]:
        """Collected feedback for the review view, oldest first (only ``status`` when given): a teacher's
        own conversations, or everyone's for a reviewer and the API key's holder."""
        self._not_student(who)
        return [item.to_dict() for item in self._store().items(status, owner=who.owner)]

    def review(self, row: int, who: Caller, status: str, correction: str | None = None) -> dict[str, Any]:
        """Approve / reject / reopen a feedback row; ``correction`` edits the better reply that will be trained on.
        A teacher reviews only rows of their own conversations: another's is as unknown as a missing one."""
        self._not_student(who)
        try:
            return self._store().review(row, status, who.name, correction, owner=who.owner).to_dict()
        except KeyError:
            raise UnknownFeedback(f"no feedback item {row}") from None

    @staticmethod
    def _not_student(who: Caller) -> None:
        if who.role == "student":
            raise StudentsOnlyChat("a student's token opens the chat only; feedback and its review need a "
                                   "teacher's token")

    # ----- adapters at run time (the API key's holder only) ------------------------------------
    def add_adapter(self, path: str, name: str | None = None, who: Caller = LOCAL) -> dict[str, Any]:
        """Serve the adapter (a run or adapter folder on this machine) beside the others, without a restart.

        Replies in flight are not touched; ``auto`` routing includes it once this returns. Only
        safetensors weights are loaded here (a pickle could run code). Returns its model object.
        """
        self._admin(who)
        with self._admin_lock:
            try:
                spec = self.engine.add_adapter(path, name)
            except EduloraError as err:
                raise BadAdapter(str(err)) from None
            self._reroute()
        return self.model(spec.name)

    def remove_adapter(self, name: str, who: Caller = LOCAL) -> dict[str, Any]:
        """Stop serving adapter ``name``: new requests for it are refused at once (this returns then), the
        replies already accepted for it are completed, then its weights are freed in the background."""
        self._admin(who)
        with self._admin_lock:
            if name not in self.engine.adapters:
                raise UnknownModel(f"no adapter {name!r} is served here")
            if name == self.router.fallback:
                raise AdapterConflict(f"{name!r} is the fallback adapter of 'auto' routing; it cannot be removed")
            self.engine.remove_adapter(name, wait=False)
            self._reroute()
        return {"id": name, "object": "model", "deleted": True}

    def _admin(self, who: Caller) -> None:
        if who.role != "admin":
            raise NotAdmin("changing the served adapters needs the server's API key, not a teacher's token")

    def _reroute(self) -> None:
        """``auto`` routing over the adapters served now (the old router answers until the new one is ready)."""
        old = self.router
        router = Router(list(self.engine.adapters.values()), old.threshold, old.fallback, old.use_embeddings)
        router.prepare()
        self.router = router

    def health(self) -> dict[str, Any]:
        stats = self.engine.stats
        return {"status": "ok", "model": self.engine.base_id, "backend": self.engine.backend, "adapters": list(self.engine.adapters),
                "queued": self.engine.pending, "batches": stats.batches, "mixed_batches": stats.mixed_batches,
                "largest_batch": stats.largest_batch, "cancelled": stats.cancelled, "auth": self.locked,
                "feedback": self.feedback is not None}
