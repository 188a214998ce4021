"""``edulora data …`` commands: thin wrappers over ``edulora.data``.

Every input file may be in any supported format (see ``edulora.data.formats``); the format
is detected unless ``--from`` names it. Output files are written atomically, and nothing
is written when the input has problems.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from .data.formats import (
    FORMATS,
    iter_format_records,
    load_records_with_lines,
    parse_column_map,
    same_file,
    validate_any,
    write_record_line,
)
from .data.io import Problem, atomic_text_writer, atomic_write_text
from .data.schema import Record
from .errors import EduloraError


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="fmt", metavar="FORMAT",
                   help=f"input format ({', '.join(FORMATS)}); detected from the file when omitted")
    p.add_argument("--map", dest="column_map", metavar="FIELD=COLUMN", action="append", default=[],
                   help="CSV only: read FIELD (instruction, context, response, subject, grade_level, "
                        "teaching_style, metadata.KEY) from COLUMN; repeatable")


def add_commands(data: argparse._SubParsersAction) -> None:
    p = data.add_parser("validate", help="check a dataset; every problem is printed as FILE:LINE: message")
    p.add_argument("file")
    _add_input_options(p)
    p.set_defaults(func=cmd_validate)

    p = data.add_parser("convert", help="convert Alpaca, ShareGPT, OpenAI chat or CSV data to edulora JSONL")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    _add_input_options(p)
    p.set_defaults(func=cmd_convert)

    p = data.add_parser("report", help="coverage, misconceptions, lengths, duplicates, leakage and readability")
    p.add_argument("file")
    p.add_argument("--eval", dest="eval_file", metavar="FILE", help="eval set to check for leakage from FILE")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page with charts")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON ('-' prints it instead of the tables)")
    p.add_argument("--tokenizer", metavar="PATH_OR_ID",
                   help="count tokens with this tokenizer (a tokenizer.json, a tokenizer directory, or a cached "
                        "Hugging Face id); default: a labelled estimate")
    p.add_argument("--max-length", type=int, metavar="N", help="list records longer than N tokens")
    p.add_argument("--thin", type=int, metavar="N",
                   help="call cells with fewer than N records thin (default: half the median cell, at least 2)")
    p.add_argument("--near-threshold", type=float, default=0.8, metavar="J",
                   help="word-shingle Jaccard at which two records are near-duplicates (0.8)")
    p.add_argument("--readability-tolerance", type=float, default=2.0, metavar="GRADES",
                   help="flag replies more than this many grades outside their level's band (2)")
    _add_input_options(p)
    p.set_defaults(func=cmd_report)

    p = data.add_parser("scrub", help="replace emails, phones, URLs, addresses, student IDs and names by placeholders")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT", nargs="?", help="output JSONL (required unless --in-place)")
    p.add_argument("--roster", metavar="FILE", help="names to remove, one per line")
    p.add_argument("--in-place", action="store_true", help="allow OUT to be IN (or omit OUT)")
    p.add_argument("--report-json", metavar="FILE", help="write counts per type and per line as JSON")
    _add_input_options(p)
    p.set_defaults(func=cmd_scrub)

    p = data.add_parser("split", help="deterministic stratified train/eval split without leakage")
    p.add_argument("file")
    p.add_argument("--eval-fraction", type=float, default=0.1, metavar="F", help="share of records for eval (0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-out", required=True, metavar="FILE")
    p.add_argument("--eval-out", required=True, metavar="FILE")
    p.add_argument("--near-threshold", type=float, default=0.8, metavar="J",
                   help="keep records at least this similar on one side (0.8); 0 disables near-duplicate grouping")
    _add_input_options(p)
    p.set_defaults(func=cmd_split)


def _column_map(args: argparse.Namespace) -> dict[str, str] | None:
    return parse_column_map(args.column_map) or None


def cmd_validate(args: argparse.Namespace) -> int:
    result = validate_any(args.file, args.fmt, _column_map(args))
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if result.ok:
        print(f"{args.file}: {result.records} records, no problems")
        return 0
    print(f"{args.file}: {result.records} valid records, {len(result.problems)} problem(s)", file=sys.stderr)
    return 2


class _Problems(Exception):
    """Raised inside an atomic write so the half-written output is discarded."""


def _stream_valid(args: argparse.Namespace, path: str, problems: list[Problem]) -> Iterator[tuple[int, Record]]:
    for line, item in iter_format_records(path, args.fmt, _column_map(args)):
        if isinstance(item, Problem):
            problems.append(item)
        else:
            yield line, item


def _refuse_same(a: str, b: str, what: str) -> None:
    if same_file(a, b):
        raise EduloraError(f"{what}: {b} is the input file; choose another output")


def _print_problems(problems: list[Problem], path: str) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{path}: {len(problems)} problem(s); nothing written", file=sys.stderr)
    return 2


def cmd_convert(args: argparse.Namespace) -> int:
    _refuse_same(args.input, args.output, "convert")
    problems: list[Problem] = []
    count = 0
    try:
        with atomic_text_writer(args.output) as handle:
            for _, record in _stream_valid(args, args.input, problems):
                if not problems:  # past the first problem only collect the rest
                    write_record_line(handle, record)
                count += 1
            if problems or count == 0:
                raise _Problems
    except _Problems:
        if not problems:
            problems.append(Problem(args.input, 1, "file holds no records"))
        return _print_problems(problems, args.input)
    print(f"wrote {count} records to {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .data.quality import build_report, load_token_counter
    from .data.report_render import render_html, render_json, render_text

    if args.max_length is not None and args.max_length <= 0:
        raise EduloraError("--max-length must be a positive number of tokens")
    if not 0.0 < args.near_threshold <= 1.0:
        raise EduloraError("--near-threshold must be in (0, 1]")
    if args.thin is not None and args.thin < 1:
        raise EduloraError("--thin must be at least 1")
    column_map = _column_map(args)
    records, lines = load_records_with_lines(args.file, args.fmt, column_map)
    eval_records = eval_lines = None
    if args.eval_file:
        eval_records, eval_lines = load_records_with_lines(args.eval_file, args.fmt, column_map)
    counter = load_token_counter(args.tokenizer)
    report = build_report(
        records, lines, path=args.file, eval_records=eval_records, eval_lines=eval_lines,
        eval_path=args.eval_file or "", counter=counter, max_length=args.max_length, thin_below=args.thin,
        near_threshold=args.near_threshold, readability_tolerance=args.readability_tolerance,
    )
    if args.json == "-":
        sys.stdout.write(render_json(report))
    else:
        sys.stdout.write(render_text(report))
        if args.json:
            atomic_write_text(args.json, render_json(report))
            print(f"wrote {args.json}")
    if args.html:
        atomic_write_text(args.html, render_html(report))
        print(f"wrote {args.html}", file=sys.stderr if args.json == "-" else sys.stdout)
    return 0


def cmd_scrub(args: argparse.Namespace) -> int:
    from .data.privacy import ScrubReport, Scrubber, load_roster

    output = args.output or (args.input if args.in_place else None)
    if output is None:
        raise EduloraError("scrub: give an OUT file, or --in-place to overwrite IN")
    if same_file(args.input, output) and not args.in_place:
        raise EduloraError(f"scrub: OUT is the input file {args.input}; pass --in-place to overwrite it")
    scrubber = Scrubber(load_roster(args.roster) if args.roster else None)
    report = ScrubReport()
    problems: list[Problem] = []
    try:
        # The output is only swapped in at the end, so reading IN while writing OUT is safe.
        with atomic_text_writer(output) as handle:
            for line, record in _stream_valid(args, args.input, problems):
                clean, counts = scrubber.scrub_record(record)
                report.add(line, counts)
                if not problems:
                    write_record_line(handle, clean)
            if problems or report.records == 0:
                raise _Problems
    except _Problems:
        if not problems:
            problems.append(Problem(args.input, 1, "file holds no records"))
        return _print_problems(problems, args.input)
    for text in report.summary_lines():
        print(text)
    if args.report_json:
        atomic_write_text(args.report_json, json.dumps(report.to_dict(), indent=2) + "\n")
    print(f"wrote {report.records} records to {output}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from .data.split import split_with_stats

    if not 0.0 <= args.eval_fraction < 1.0:
        raise EduloraError("--eval-fraction must be at least 0 and less than 1")
    if not 0.0 <= args.near_threshold <= 1.0:
        raise EduloraError("--near-threshold must be in [0, 1]")
    for out in (args.train_out, args.eval_out):
        _refuse_same(args.file, out, "split")
    if Path(args.train_out).resolve() == Path(args.eval_out).resolve():
        raise EduloraError("split: --train-out and --eval-out must be different files")
    records, _ = load_records_with_lines(args.file, args.fmt, _column_map(args))
    near = args.near_threshold or None
    train, held_out, stats = split_with_stats(records, args.eval_fraction, args.seed, near_threshold=near)
    atomic_write_text(args.train_out, "".join(_jsonl(r) for r in train))
    atomic_write_text(args.eval_out, "".join(_jsonl(r) for r in held_out))
    print(f"train: {stats.train} records -> {args.train_out}")
    print(f"eval: {stats.eval} records -> {args.eval_out}")
    if stats.duplicates_dropped:
        print(f"dropped {stats.duplicates_dropped} exact duplicate record(s)")
    if stats.grouped_records:
        print(f"{stats.grouped_records} records sharing a question or near-duplicate text were kept on one side")
    return 0


def _jsonl(record: Record) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False) + "\n"

