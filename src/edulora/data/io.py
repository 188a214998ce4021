"""Reading and writing datasets, with every problem reported as ``FILE:LINE: message``.

Files are streamed line by line so that validating a file larger than memory stays cheap.
UTF-8 with or without a byte-order mark and CRLF line ends are accepted; other encodings
are refused with the line where decoding failed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import EduloraError
from .schema import Record, RecordError

T = TypeVar("T")

#: One JSONL line above this size is refused before parsing (a JSON parser would hold it all in memory).
MAX_LINE_BYTES = 1_000_000


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class ValidationResult:
    path: str
    records: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems and self.records > 0


@dataclass(frozen=True)
class Skipped:
    """A well-formed item a reader leaves out on purpose (e.g. a Bridge item without a mistake).

    Kept apart from ``Problem``: a skip does not make the file invalid, but it is counted and
    shown, so that nothing is left out silently.
    """

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: skipped: {self.reason}"


class SkipItem(Exception):
    """Raised by an item converter for an item to leave out; carries the reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def convert_items(name: str, items: Iterable[tuple[int, Any]],
                  convert: Callable[[Any], T]) -> Iterator[tuple[int, T | Problem | Skipped]]:
    """Run ``convert`` on each parsed item; its ``RecordError`` messages become ``FILE:LINE`` problems.

    The one loop behind every JSON reader (records in any format, importers, preference pairs), so
    that a bad item reads the same wherever it is found. Parse problems pass through as they are.
    """
    for line, obj in items:
        if isinstance(obj, Problem):
            yield line, obj
            continue
        try:
            yield line, convert(obj)
        except RecordError as err:
            for message in err.messages:
                yield line, Problem(name, line, message)
        except SkipItem as skip:
            yield line, Skipped(name, line, skip.reason)


def count_items(path: str | os.PathLike, items: Iterable[tuple[int, Any]], nothing: str) -> ValidationResult:
    """How many good items a stream holds, and its problems; memory stays flat (nothing is kept).

    A file with neither items nor problems gets one problem, ``nothing`` (at line 1).
    """
    problems: list[Problem] = []
    count = 0
    for _, item in items:
        if isinstance(item, Problem):
            problems.append(item)
        else:
            count += 1
    if count == 0 and not problems:
        problems.append(Problem(str(path), 1, nothing))
    return ValidationResult(str(path), count, problems)


def collect_items(path: str | os.PathLike, items: Iterable[tuple[int, T | Problem]],
                  nothing: str) -> tuple[list[T], list[int], list[Problem]]:
    """The good items of a stream with their lines, and its problems (``nothing`` when there are neither)."""
    values: list[T] = []
    lines: list[int] = []
    problems: list[Problem] = []
    for line, item in items:
        if isinstance(item, Problem):
            problems.append(item)
        else:
            values.append(item)
            lines.append(line)
    if not values and not problems:
        problems.append(Problem(str(path), 1, nothing))
    return values, lines, problems


def open_data_file(path: str | Path) -> IO[bytes]:
    """Open a dataset for reading bytes; a missing, unreadable or folder path is a user error."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise EduloraError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EduloraError(f"{path}: is a directory, expected a data file") from None
    except PermissionError:
        raise EduloraError(f"{path}: permission denied") from None
    except OSError as err:
        if err.errno == errno.ELOOP:  # a link that points (through others) back at itself
            raise EduloraError(f"{path}: symbolic link loop; point the link at a data file") from None
        raise


#: A JSON escape of a UTF-16 surrogate ("\ud800"); only when one occurs is a parsed record checked further.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def lone_surrogate(text: str, obj: Any) -> str | None:
    """A problem message when ``obj`` (parsed from ``text``) holds a lone UTF-16 surrogate, else None.

    ``json.loads`` turns a surrogate pair into one character but keeps half a pair as it is: not
    text, so every UTF-8 writer (convert, scrub, training's tokenizer) would crash on it later.
    """
    if not _SURROGATE_ESCAPE.search(text):
        return None
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        return (f"holds a lone UTF-16 surrogate {err.object[err.start]!r} (half of an emoji or other character); "
                "fix or remove it")
    return None


def parse_json(name: str, line: int, text: str) -> Any | Problem:
    """``text`` parsed, or the ``Problem`` with it (invalid JSON, too deep, a lone surrogate) at ``line``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return Problem(name, line + err.lineno - 1, f"invalid JSON: {err.msg} (column {err.colno})")
    except RecursionError:
        return Problem(name, line, "invalid JSON: nested too deeply")
    problem = lone_surrogate(text, obj)
    return obj if problem is None else Problem(name, line, problem)


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any | Problem]]:
    """Yield ``(line_number, parsed_object)`` per non-blank line, or a ``Problem`` in its place."""
    name = str(path)
    handle = open_data_file(path)
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if len(raw) > MAX_LINE_BYTES:
                yield number, Problem(name, number, f"line is {len(raw):,} bytes long (limit {MAX_LINE_BYTES:,})")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield number, Problem(name, number, f"not valid UTF-8 (byte {err.start + 1}); save the file as UTF-8")
                continue
            text = text.strip()
            if not text:
                continue
            yield number, parse_json(name, number, text)


@contextmanager
def atomic_text_writer(path: str | Path) -> Iterator[IO[str]]:
    """A text handle whose content replaces ``path`` only if the block finishes without error.

    Readers see the old file or the new one, never half of it; it streams, so writing a huge
    converted dataset needs no memory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_text_writer(path) as handle:
        handle.write(text)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    write_jsonl(path, (r.to_dict() for r in records))
