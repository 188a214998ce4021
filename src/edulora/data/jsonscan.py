"""Streaming readers for JSON data files: JSONL or one top-level JSON array, never held whole.

A JSON array is cut into its elements by a small scanner that counts brackets outside strings;
each element is then parsed by ``json.loads`` on its own, so a file larger than memory can be
read, and every element knows the line it starts on (for ``FILE:LINE`` messages).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .io import MAX_LINE_BYTES, Problem, iter_json_lines, open_data_file, parse_json

#: Bytes read per step when streaming a JSON array.
_CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------- files and bytes


def encoding_problem(head: bytes) -> str | None:
    """A message when the first bytes show an encoding other than UTF-8, else None.

    UTF-16/32 files decode as garbage line by line, so they are refused once, up front,
    with a message that tells the user what to do.
    """
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if head.startswith(bom):
            return f"file is {name} encoded; save it as UTF-8"
    if b"\x00" in head[:4096]:
        return "file contains NUL bytes (UTF-16 or binary?); save it as UTF-8 text"
    return None


def read_head(path: str | Path) -> bytes:
    """The first 4 KiB of a file, without a UTF-8 byte-order mark (for format and encoding checks)."""
    with open_data_file(path) as handle:
        head = handle.read(4096)
    return head[3:] if head.startswith(codecs.BOM_UTF8) else head


def looks_like_json(path: str | Path) -> bool:
    """Whether a file the importers read as CSV or JSON holds JSON (lines or an array): its name says so
    (.json, .jsonl, .ndjson against .csv, .tsv), else its first character does (``{`` or ``[``)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return False
    return suffix in (".json", ".jsonl", ".ndjson") or read_head(path).lstrip()[:1] in (b"{", b"[")


def is_json_array(head: bytes) -> bool:
    """True when the file is one JSON array, False when it holds JSON lines (or anything else)."""
    return head.lstrip().startswith(b"[")


# --------------------------------------------------------------------------- JSON arrays


_OUTSIDE = re.compile(r'["{}\[\]]')
_INSIDE = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[,\]\s]")


class _ArrayScanner:
    """Cuts a streamed JSON array into element texts, tracking the line each starts on.

    Only brackets outside strings are counted, so the scanner never needs a JSON parser
    of its own; each element is then parsed by ``json.loads`` on its own.
    """

    def __init__(self, path: str | Path):
        self.name = str(path)
        self.handle = open_data_file(path)
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.line = 1  # line number of buf[0]
        self.pos = 0
        self.eof = False
        self.first = True
        self.keep = 0  # buf[keep:] must survive a refill (the element being read)
        # Lines are counted forward from a mark, so finding an element's line stays O(its length).
        self.mark_pos = 0
        self.mark_line = 1

    def close(self) -> None:
        self.handle.close()

    def line_at(self, index: int) -> int:
        if index < self.mark_pos:
            self.mark_pos, self.mark_line = 0, self.line
        self.mark_line += self.buf.count("\n", self.mark_pos, index)
        self.mark_pos = index
        return self.mark_line

    def refill(self) -> bool:
        """Read more text; False at the end of the file."""
        if self.eof:
            return False
        raw = self.handle.read(_CHUNK_BYTES)
        if self.first and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        self.first = False
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            bad = self.line_at(len(self.buf)) + raw[: max(err.start, 0)].count(b"\n")
            raise _ArrayAbort(Problem(self.name, bad, "not valid UTF-8; save the file as UTF-8")) from None
        if not raw:
            self.eof = True
        keep = min(self.keep, self.pos)
        self.line += self.buf.count("\n", 0, keep)
        self.buf = self.buf[keep:] + text
        self.pos -= keep
        self.keep -= keep
        self.mark_pos -= keep
        if self.mark_pos < 0:
            self.mark_pos, self.mark_line = 0, self.line
        return bool(raw)

    def next_char(self) -> str | None:
        """The next non-blank character (not consumed), or None at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos].isspace():
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            self.keep = self.pos
            if not self.refill():
                return None

    def read_element(self) -> str | None:
        """The text of the element starting at ``pos``, or None if the file ends inside it."""
        start = self.keep = self.pos
        depth, in_string, escape = 0, False, False
        first = self.buf[self.pos]
        if first in "{[":
            depth, self.pos = 1, self.pos + 1
        elif first == '"':
            in_string, self.pos = True, self.pos + 1
        while True:
            if self.pos - self.keep > MAX_LINE_BYTES:
                raise _ArrayAbort(Problem(self.name, self.line_at(self.keep),
                                          f"array element is over {MAX_LINE_BYTES:,} characters long "
                                          "(a missing bracket or quote?); stopped reading"))
            if self.pos >= len(self.buf):
                offset = self.pos - self.keep
                if not self.refill():
                    return None
                start = self.keep
                self.pos = self.keep + offset
                continue
            if escape:
                self.pos += 1
                escape = False
                continue
            if in_string:
                m = _INSIDE.search(self.buf, self.pos)
                if m is None:
                    self.pos = len(self.buf)
                elif m.group() == "\\":
                    self.pos, escape = m.end(), True
                else:
                    self.pos, in_string = m.end(), False
                    if depth == 0:
                        return self.buf[start:self.pos]
                continue
            if depth == 0:  # a number or literal ends at the next separator
                m = _SCALAR_END.search(self.buf, self.pos)
                if m is None:
                    self.pos = len(self.buf)
                    continue
                self.pos = m.start()
                return self.buf[start:self.pos]
            m = _OUTSIDE.search(self.buf, self.pos)
            if m is None:
                self.pos = len(self.buf)
                continue
            self.pos = m.end()
            char = m.group()
            if char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return self.buf[start:self.pos]


def iter_json_array(path: str | Path) -> Iterator[tuple[int, Any | Problem]]:
    """Yield ``(line, element)`` for each element of a top-level JSON array, streaming.

    A broken element is reported at its own line and the elements after it are still read;
    a file that ends before the closing ']' is reported as truncated.
    """
    scanner = _ArrayScanner(path)
    name = scanner.name
    try:
        char = scanner.next_char()
        if char is None:
            yield 1, Problem(name, 1, "file holds no records")
            return
        if char != "[":
            here = scanner.line_at(scanner.pos)
            yield here, Problem(name, here, "expected a JSON array starting with '['")
            return
        scanner.pos += 1
        expect_element = True
        while True:
            char = scanner.next_char()
            here = scanner.line_at(scanner.pos) if char is not None else scanner.line_at(len(scanner.buf))
            if char is None:
                yield here, Problem(name, here, "JSON array is not closed with ']' (file truncated?)")
                return
            if char == "]":
                scanner.pos += 1
                break
            if char == ",":
                scanner.pos += 1
                if expect_element:
                    yield here, Problem(name, here, "invalid JSON: unexpected ',' in array")
                expect_element = True
                continue
            if not expect_element:
                yield here, Problem(name, here, "invalid JSON: expected ',' or ']' after array element")
            text = scanner.read_element()
            if text is None:
                yield here, Problem(name, here, "JSON array ends inside this element "
                                                "(file truncated, or a bracket or quote missing?)")
                return
            yield _parse_element(name, here, text)
            expect_element = False
        char = scanner.next_char()
        if char is not None:
            here = scanner.line_at(scanner.pos)
            yield here, Problem(name, here, "unexpected content after the end of the JSON array")
    except _ArrayAbort as abort:
        yield abort.problem.line, abort.problem
    finally:
        scanner.close()


class _ArrayAbort(Exception):
    """Reading cannot go on (bad encoding, runaway element); carries the one problem to report."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def _parse_element(name: str, line: int, text: str) -> tuple[int, Any | Problem]:
    return line, parse_json(name, line, text)


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, Any | Problem]]:
    """JSONL or JSON array, whichever the file holds; refuses non-UTF-8 encodings up front."""
    head = read_head(path)
    problem = encoding_problem(head)
    if problem:
        yield 1, Problem(str(path), 1, problem)
        return
    if is_json_array(head):
        yield from iter_json_array(path)
        return
    first = True
    for line, obj in iter_json_lines(path):
        if first and isinstance(obj, Problem) and obj.message.startswith("invalid JSON") and _looks_pretty(path, line):
            obj = Problem(obj.path, obj.line, obj.message + "; records must be one per line (JSONL) or one JSON array")
        first = False
        yield line, obj


def _looks_pretty(path: str | Path, line: int) -> bool:
    """True when the failing first line is a lone '{': a pretty-printed object, not JSONL."""
    with open_data_file(path) as handle:  # a pipe was read into a copy: reopen that
        for number, raw in enumerate(handle, start=1):
            if number == line:
                return raw.strip().lstrip(codecs.BOM_UTF8) == b"{"
    return False


__all__ = ["encoding_problem", "is_json_array", "iter_json_array", "iter_json_objects", "looks_like_json", "read_head"]
