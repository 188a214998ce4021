"""Reading and writing datasets, with every problem reported as ``FILE:LINE: message``.

Files are streamed line by line so that validating a file larger than memory stays cheap.
UTF-8 with or without a byte-order mark and CRLF line ends are accepted; other encodings
are refused with the line where decoding failed.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import re
import shutil
import stat
import sys
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

    def summary(self) -> str:
        """The verdict in one line (``edulora data validate`` prints the problems above it)."""
        if self.ok:
            return f"{self.path}: {self.records} records, no problems"
        return f"{self.path}: {self.records} valid records, {len(self.problems)} problem(s)"


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


#: Pipes read so far (by device and inode) and the private copy each was read into, removed at exit.
_PIPE_COPIES: dict[tuple[int, int], str] = {}


def open_data_file(path: str | Path) -> IO[bytes]:
    """Open a dataset for reading bytes; a missing, unreadable, folder or device path is a user error.

    A pipe (``/dev/stdin``, ``<(…)``, a FIFO) is read once, into a private temp file that every
    later opening reads: detecting the format reads a file before reading it, and a pipe gives
    its data to the first reader only (a second one would see nothing, or wait forever).
    """
    try:
        kind = os.stat(path)
        if stat.S_ISDIR(kind.st_mode):
            raise IsADirectoryError
        if stat.S_ISFIFO(kind.st_mode):
            return open(_pipe_copy(path, (kind.st_dev, kind.st_ino)), "rb")
        if not stat.S_ISREG(kind.st_mode):
            raise EduloraError(f"{path}: is a device, not a data file; save the data to a file or pipe it in")
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


def _pipe_copy(path: str | Path, key: tuple[int, int]) -> str:
    """The private copy of the pipe ``path`` (made on first use; streamed, so memory stays flat)."""
    if key not in _PIPE_COPIES:
        fd, copy = tempfile.mkstemp(prefix="edulora-pipe-", suffix=".tmp")  # 0600: it may hold students' data
        if not _PIPE_COPIES:
            atexit.register(_remove_pipe_copies)
        _PIPE_COPIES[key] = copy
        with os.fdopen(fd, "wb") as out, open(path, "rb") as pipe:
            shutil.copyfileobj(pipe, out)
    return _PIPE_COPIES[key]


def _remove_pipe_copies() -> None:
    for copy in _PIPE_COPIES.values():
        Path(copy).unlink(missing_ok=True)


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


class RepeatedKey(ValueError):
    """One JSON object holds a key twice; ``json`` would silently keep only the last value."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # rare: only then look for which key it was
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(key)
            seen.add(key)
    return obj


def parse_json(name: str, line: int, text: str) -> Any | Problem:
    """``text`` parsed, or the ``Problem`` with it (invalid JSON, too deep, a lone surrogate) at ``line``."""
    try:
        obj = json.loads(text, object_pairs_hook=_without_repeats)
    except json.JSONDecodeError as err:
        return Problem(name, line + err.lineno - 1, f"invalid JSON: {err.msg} (column {err.colno})")
    except RecursionError:
        return Problem(name, line, "invalid JSON: nested too deeply")
    except RepeatedKey as err:
        return Problem(name, line, f"key {err.key!r} appears twice in one object; keep one")
    except ValueError:  # Python refuses to turn a huge integer into an int (CVE-2020-10735)
        return Problem(name, line, f"a number has more than {sys.get_int_max_str_digits():,} digits")
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
    # Through a symbolic link to the file it names: replacing the link by a regular file would cut
    # whatever else reads through it off from the new content.
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _take_over_mode(fd, path)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _take_over_mode(fd: int, path: Path) -> None:
    """Give the temp file ``fd`` the mode (and, where allowed, owner) of the file it replaces.

    mkstemp makes it private (0600); a new file gets the mode a plain open() would, a replaced
    one keeps its own, so that a shared or private dataset stays as shared or private as it was.
    """
    try:
        old = os.stat(path)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    with contextlib.suppress(OSError):  # only root (or the owner, for the group) may give a file away
        os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_text_writer(path) as handle:
        handle.write(text)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    write_jsonl(path, (r.to_dict() for r in records))
