"""``edulora data …``: check, convert, scrub, split and inspect datasets through ``edulora.data``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import data
from ..data.formats import parse_column_map
from .options import ColumnMap, InputFormat

app = typer.Typer(help="check, convert and inspect datasets")
Out = Annotated[str, typer.Argument(metavar="OUT", help="edulora JSONL to write")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")


def _map(pairs: list[str] | None) -> dict[str, str] | None:
    return parse_column_map(pairs or []) or None


@app.command()
def validate(file: str, fmt: InputFormat = None, column_map: ColumnMap = None) -> int:
    """Check a dataset; every problem is printed as FILE:LINE: message."""
    result = data.validate(file, fmt, _map(column_map))
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if result.ok:
        print(f"{file}: {result.records} records, no problems")
        return 0
    print(f"{file}: {result.records} valid records, {len(result.problems)} problem(s)", file=sys.stderr)
    return 2


@app.command()
def convert(src: Annotated[str, typer.Argument(metavar="IN")], out: Out, fmt: InputFormat = None,
            column_map: ColumnMap = None) -> None:
    """Convert Alpaca, ShareGPT, OpenAI chat, CSV (any --from format) to edulora JSONL."""
    count = data.convert(src, out, fmt=fmt, column_map=_map(column_map))
    print(f"wrote {count} records to {out}")


@app.command()
def report(
    file: str,
    eval_file: Annotated[str | None, typer.Option("--eval", metavar="FILE", help="eval set to check for leakage")] = None,
    html: Annotated[str | None, typer.Option(metavar="OUT", help="also write an HTML page with charts")] = None,
    json_out: Annotated[str | None, typer.Option(
        "--json", metavar="OUT", help="also write the report as JSON ('-' prints it instead of the tables)")] = None,
    tokenizer: Annotated[str | None, typer.Option(metavar="PATH_OR_ID", help=(
        "count tokens with this tokenizer (tokenizer.json, folder or cached Hugging Face id); default: an estimate"))] = None,
    max_length: Annotated[int | None, typer.Option(min=1, metavar="N", help="list records longer than N tokens")] = None,
    thin: Annotated[int | None, typer.Option(min=1, metavar="N", help=(
        "call cells with fewer than N records thin (default: half the median cell, at least 2)"))] = None,
    near_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, metavar="J", help=(
        "word-shingle Jaccard at which two records are near-duplicates"))] = 0.8,
    readability_tolerance: Annotated[float, typer.Option(
        metavar="GRADES", help="flag replies more than this many grades outside their level's band")] = 2.0,
    fmt: InputFormat = None, column_map: ColumnMap = None,
) -> None:
    """Coverage, misconceptions, lengths, duplicates, leakage and readability."""
    from ..data.report_render import render_json, render_text

    to_stdout = json_out == "-"
    result = data.report(file, eval_path=eval_file, fmt=fmt, column_map=_map(column_map), tokenizer=tokenizer,
                         max_length=max_length, thin=thin, near_threshold=near_threshold,
                         readability_tolerance=readability_tolerance, html_out=html,
                         json_out=None if to_stdout else json_out)
    sys.stdout.write(render_json(result) if to_stdout else render_text(result))
    if json_out and not to_stdout:
        print(f"wrote {json_out}")
    if html:
        print(f"wrote {html}", file=sys.stderr if to_stdout else sys.stdout)


@app.command()
def scrub(
    src: Annotated[str, typer.Argument(metavar="IN")],
    out: Annotated[str | None, typer.Argument(metavar="OUT", help="output JSONL (required unless --in-place)")] = None,
    roster: Annotated[str | None, typer.Option(metavar="FILE", help="names to remove, one per line")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="allow OUT to be IN (or omit OUT)")] = False,
    report_json: Annotated[str | None, typer.Option(metavar="FILE", help="write counts per type and line as JSON")] = None,
    fmt: InputFormat = None, column_map: ColumnMap = None,
) -> None:
    """Replace emails, phones, URLs, addresses, student IDs and names by placeholders."""
    result = data.scrub_file(src, out, roster=roster, in_place=in_place, report_json=report_json, fmt=fmt,
                             column_map=_map(column_map))
    print("\n".join(result.summary_lines()))
    print(f"wrote {result.records} records to {out or src}")


@app.command()
def split(
    file: str,
    train_out: Annotated[str, typer.Option(metavar="FILE")],
    eval_out: Annotated[str, typer.Option(metavar="FILE")],
    eval_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, metavar="F",
                                                 help="share of records for eval")] = 0.1,
    seed: int = 0,
    near_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, metavar="J", help=(
        "keep records at least this similar on one side; 0 disables near-duplicate grouping"))] = 0.8,
    fmt: InputFormat = None, column_map: ColumnMap = None,
) -> None:
    """Deterministic stratified train/eval split without leakage."""
    stats = data.split_file(file, train_out=train_out, eval_out=eval_out, eval_fraction=eval_fraction, seed=seed,
                            near_threshold=near_threshold, fmt=fmt, column_map=_map(column_map))
    print(f"train: {stats.train} records -> {train_out}\neval: {stats.eval} records -> {eval_out}")
    if stats.duplicates_dropped:
        print(f"dropped {stats.duplicates_dropped} exact duplicate record(s)")
    if stats.grouped_records:
        print(f"{stats.grouped_records} records sharing a question or near-duplicate text were kept on one side")
