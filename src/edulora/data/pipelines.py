"""Whole-file dataset pipelines: validate, convert, scrub, split and report, as typed calls.

``edulora data …`` only prints what these return. Input may be in any supported format (``from_format``
names it, else it is detected; ``column_map`` maps CSV columns to fields, ``exclude_telling`` keeps
MathDial's "telling" turns out of the training targets). Outputs are written
atomically, only when the whole input is clean, and only to a regular file in an existing folder:
an output that is a device, a FIFO or a folder is refused, because replacing ``/dev/null`` with a
file (as root) breaks the machine, and a mistyped folder should not silently appear.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EduloraError
from .formats import iter_format_records, load_records_with_lines, same_file, validate_any, write_record_line
from .importers.transcripts import TranscriptOptions
from .io import Problem, ValidationResult, atomic_text_writer, atomic_write_text
from .outputs import check_output_file, check_outputs
from .problems import DataProblems
from .schema import Record

if TYPE_CHECKING:  # the modules behind them load only when their pipeline runs
    from .privacy import ScrubReport
    from .quality import DatasetReport
    from .split import SplitStats

PathLike = str | os.PathLike
ColumnMap = Mapping[str, str] | None


def _reading(from_format: str | None, column_map: ColumnMap, exclude_telling: bool) -> dict[str, Any]:
    """How ``edulora.data.formats`` is told to read an input."""
    return {"format": from_format, "column_map": column_map, "exclude_telling": exclude_telling}


def validate(path: PathLike, from_format: str | None = None, column_map: ColumnMap = None, *,
             exclude_telling: bool = False) -> ValidationResult:
    """Check every record of a file (streamed); ``.ok`` is False when it has problems or no records.

    A file of preference pairs (``edulora.data.pairs``: objects with ``chosen`` and ``rejected``) is
    checked as pairs."""
    from .pairs import is_pair_file, validate_pairs

    if from_format in (None, "pairs") and not column_map and (from_format == "pairs" or is_pair_file(path)):
        return validate_pairs(path)
    return validate_any(path, **_reading(from_format, column_map, exclude_telling))


def _write_clean(src: PathLike, out: PathLike, reading: dict[str, Any],
                 transform: Callable[[int, Record], Record] | None = None) -> int:
    """Stream ``src``'s records (through ``transform(line, record)``) into ``out``; returns their number.

    Raises ``DataProblems``, leaving ``out`` untouched, when any record is bad or there are none.
    """
    problems: list[Problem] = []
    count = 0
    # The output is only swapped in at the end, so reading IN while writing --out is safe.
    with atomic_text_writer(out) as handle:
        for line, item in iter_format_records(src, **reading):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            count += 1
            record = transform(line, item) if transform else item
            if not problems:  # past the first problem only collect the rest
                write_record_line(handle, record)
        if not problems and count == 0:
            problems.append(Problem(str(src), 1, "file holds no records"))
        if problems:
            raise DataProblems(src, problems)  # raised inside the writer: the half-written output is discarded
    return count


def convert(src: PathLike, out: PathLike, *, from_format: str | None = None, column_map: ColumnMap = None,
            exclude_telling: bool = False, overwrite: bool = False, metadata_file: PathLike | None = None,
            scrub: bool = True) -> int:
    """Write ``src`` (any supported format) as edulora JSONL to ``out``; returns the number of records.

    An existing ``out`` is replaced only with ``overwrite`` (see ``edulora.data.outputs``). Transcripts
    (``edulora.data.importers.transcripts``) may take ``metadata_file``, metadata per conversation id,
    and are scrubbed of personal information unless ``scrub`` is False."""
    check_outputs({"IN": src, "--metadata": metadata_file}, {"--out": out}, overwrite=overwrite)
    reading = _reading(from_format, column_map, exclude_telling)
    if metadata_file is not None or not scrub:  # transcripts' own options: any other format refuses them
        reading["transcripts"] = TranscriptOptions(metadata_file=metadata_file, scrub=scrub)
    return _write_clean(src, out, reading)


def scrub_file(src: PathLike, out: PathLike | None = None, *, roster: PathLike | None = None,
               in_place: bool = False, report_json: PathLike | None = None, from_format: str | None = None,
               column_map: ColumnMap = None, exclude_telling: bool = False, overwrite: bool = False) -> ScrubReport:
    """Replace e-mails, phones, URLs, addresses, student IDs and names by placeholders, ``src`` → ``out``.

    ``in_place`` allows ``out`` to be ``src`` (or omitted). ``report_json`` gets the counts per type and
    per line (never the values). Other existing outputs are replaced only with ``overwrite``.
    """
    from .privacy import ScrubReport, Scrubber, load_roster

    target = out or (src if in_place else None)
    if target is None:
        raise EduloraError("scrub: give --out FILE, or --in-place to overwrite IN")
    if same_file(src, target) and not in_place:
        raise EduloraError(f"scrub: --out is the input file {src}; pass --in-place to overwrite it")
    check_outputs({"IN": src, "--roster": roster}, {"--out": target, "--report-json": report_json},
                  overwrite=overwrite, in_place=("--out", "IN") if in_place else None)
    scrubber = Scrubber(load_roster(roster) if roster else None)
    report = ScrubReport()

    def scrub(line: int, record: Record) -> Record:
        clean, counts = scrubber.scrub_record(record)
        report.add(line, counts)
        return clean

    _write_clean(src, target, _reading(from_format, column_map, exclude_telling), scrub)
    if report_json:
        atomic_write_text(report_json, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def split_file(src: PathLike, *, train_out: PathLike, eval_out: PathLike, eval_fraction: float = 0.1, seed: int = 0,
               near_threshold: float = 0.8, from_format: str | None = None, column_map: ColumnMap = None,
               exclude_telling: bool = False, group_by: str | None = None, overwrite: bool = False) -> SplitStats:
    """Deterministic stratified train/eval split without leakage (see ``edulora.data.split``).

    ``near_threshold`` 0 groups records by prompt only (no near-duplicate grouping); ``group_by`` keeps
    records with the same metadata value (e.g. ``qid``) on one side.
    """
    from .split import split_with_stats

    if not 0.0 <= eval_fraction < 1.0:
        raise EduloraError("--eval-fraction must be at least 0 and less than 1")
    if not 0.0 <= near_threshold <= 1.0:
        raise EduloraError("--near-threshold must be in [0, 1]")
    check_outputs({"IN": src}, {"--train-out": train_out, "--eval-out": eval_out}, overwrite=overwrite)
    records, _ = load_records_with_lines(src, **_reading(from_format, column_map, exclude_telling))
    train, held_out, stats = split_with_stats(records, eval_fraction, seed, near_threshold=near_threshold or None,
                                              group_by=group_by)
    for path, part in ((train_out, train), (eval_out, held_out)):
        atomic_write_text(path, "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in part))
    return stats


def report(path: PathLike, *, eval_path: PathLike | None = None, tokenizer: str | None = None,
           max_length: int | None = None, thin: int | None = None, near_threshold: float = 0.8,
           readability_tolerance: float = 2.0, html_out: PathLike | None = None, json_out: PathLike | None = None,
           from_format: str | None = None, column_map: ColumnMap = None,
           exclude_telling: bool = False, overwrite: bool = False) -> DatasetReport:
    """Coverage, misconceptions, lengths, duplicates, readability (and leakage into ``eval_path``).

    ``tokenizer`` (a tokenizer.json, a folder or a cached Hugging Face id) counts exact tokens instead of
    an estimate; ``max_length`` lists longer records; ``thin`` marks coverage cells with fewer records.
    ``html_out`` / ``json_out`` also write the report as a self-contained page / as JSON (replacing
    an existing file only with ``overwrite``).
    """
    from .quality import build_report, load_token_counter
    from .report_render import render_html, render_json

    if max_length is not None and max_length <= 0:
        raise EduloraError("--max-length must be a positive number of tokens")
    if not 0.0 < near_threshold <= 1.0:
        raise EduloraError("--near-threshold must be in (0, 1]")
    if thin is not None and thin < 1:
        raise EduloraError("--thin must be at least 1")
    local_tokenizer = tokenizer if tokenizer and Path(tokenizer).exists() else None
    check_outputs({"FILE": path, "--eval": eval_path, "--tokenizer": local_tokenizer},
                  {"--json": json_out, "--html": html_out}, overwrite=overwrite)
    reading = _reading(from_format, column_map, exclude_telling)
    records, lines = load_records_with_lines(path, **reading)
    eval_records = eval_lines = None
    if eval_path:
        eval_records, eval_lines = load_records_with_lines(eval_path, **reading)
    result = build_report(
        records, lines, path=str(path), eval_records=eval_records, eval_lines=eval_lines,
        eval_path=str(eval_path or ""), counter=load_token_counter(tokenizer), max_length=max_length,
        thin_below=thin, near_threshold=near_threshold, readability_tolerance=readability_tolerance,
    )
    if json_out is not None:
        atomic_write_text(json_out, render_json(result))
    if html_out is not None:
        atomic_write_text(html_out, render_html(result))
    return result


__all__ = ["DataProblems", "check_output_file", "convert", "report", "scrub_file", "split_file", "validate"]
