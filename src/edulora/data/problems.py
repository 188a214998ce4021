"""``DataProblems``: the error for an input with bad records, from any reader that checks a whole file.

A module of its own so the record pipelines (``pipelines.py``) and the pair reader (``pairs.py``),
which call each other, both raise it without either importing the other for it.
"""

from __future__ import annotations

import os

from ..errors import EduloraError
from .io import Problem


class DataProblems(EduloraError):
    """The input has bad records, so nothing was written; ``problems`` holds each as FILE:LINE: message."""

    def __init__(self, path: str | os.PathLike, problems: list[Problem]):
        self.path, self.problems = str(path), problems
        lines = [str(p) for p in problems] + [f"{path}: {len(problems)} problem(s); nothing written"]
        super().__init__("\n".join(lines))
