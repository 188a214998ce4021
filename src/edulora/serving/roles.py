"""Who may do what on the server: the API key's holder, teachers, reviewers and students.

* ``admin``: the API key's holder (``api-key``), or anyone on a loopback server without keys
  (``local``): everything, changing the served adapters included.
* ``reviewer``: a teacher given ``--teacher NAME=TOKEN:reviewer``: reads, rates and reviews every
  teacher's feedback (the colleague who decides what becomes training data).
* ``teacher``: ``--teacher NAME=TOKEN``: chats, and rates, reads and reviews only their own
  conversations: those asked with their token or by their students. Another teacher's rated
  conversation holds that teacher's students' words, so it is not theirs to read.
* ``student``: ``--student TEACHER=TOKEN`` (one token per student, or one for a class): chats and
  lists the models, nothing else; the conversations are their teacher's to rate and review.

A reviewer's role is written after the token because a teacher's name is what their ratings
are stored under, and ``:reviewer`` there would become part of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import EduloraError
from ..namevalue import split_name_value

#: Who is asking when the API key is used, and on a server that needs no key at all.
API_KEY_IDENTITY, LOCAL_IDENTITY = "api-key", "local"
REVIEWER_SUFFIX = ":reviewer"

Role = Literal["admin", "reviewer", "teacher", "student"]


@dataclass(frozen=True)
class Caller:
    """Who sends a request: ``name`` rates and reviews (a student's is their teacher's, so that what a
    student asks is their teacher's conversation), ``role`` says what they may do."""

    name: str
    role: Role

    @property
    def sees_everything(self) -> bool:
        """Whether every teacher's feedback is this caller's to read and review."""
        return self.role in ("admin", "reviewer")

    @property
    def owner(self) -> str | None:
        """Whose conversations this caller may read (None: everyone's)."""
        return None if self.sees_everything else self.name


LOCAL = Caller(LOCAL_IDENTITY, "admin")
API_KEY = Caller(API_KEY_IDENTITY, "admin")


@dataclass(frozen=True)
class Roles:
    """Teachers' tokens, which of them review, and students' tokens, as ``TutorService`` takes them."""

    #: {name: token}
    teachers: dict[str, str] = field(default_factory=dict)
    reviewers: frozenset[str] = frozenset()
    #: {token: their teacher's name}
    students: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, teachers: Sequence[str], students: Sequence[str] = (), api_key: str | None = None) -> Roles:
        """``--teacher NAME=TOKEN[:reviewer]`` and ``--student TEACHER=TOKEN`` items; every token must be
        unique (a token names one person) and at least 12 characters long."""
        tokens: dict[str, str] = {}
        reviewers: set[str] = set()
        for value in teachers:
            name, token = split_name_value(value, "--teacher", "NAME=TOKEN", secret=True)
            if token.endswith(REVIEWER_SUFFIX):
                token = token.removesuffix(REVIEWER_SUFFIX)
                reviewers.add(name)
            if name in tokens or name in (API_KEY_IDENTITY, LOCAL_IDENTITY):
                raise EduloraError(f"--teacher {name!r}: the name is taken")
            _check_token("--teacher", name, token, [*tokens.values(), api_key])
            tokens[name] = token
        classes: dict[str, str] = {}
        for value in students:
            teacher, token = split_name_value(value, "--student", "TEACHER=TOKEN", secret=True)
            if teacher not in tokens:
                raise EduloraError(f"--student {teacher!r}: no --teacher of that name; a student's token names "
                                   "the teacher whose conversations it starts")
            _check_token("--student", teacher, token, [*tokens.values(), *classes, api_key])
            classes[token] = teacher
        return cls(tokens, frozenset(reviewers), classes)


def _check_token(option: str, name: str, token: str, taken: list[str | None]) -> None:
    if len(token) < 12 or token in taken:
        raise EduloraError(f"{option} {name!r}: the token must be unique and at least 12 characters long")


__all__ = ["API_KEY", "API_KEY_IDENTITY", "Caller", "LOCAL", "LOCAL_IDENTITY", "Roles"]
