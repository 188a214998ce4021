"""``edulora data …``: check, convert, scrub, split and inspect datasets through ``edulora.data``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .. import data
from ..data.formats import parse_column_map
from .options import ColumnMap, ExcludeTelling, InputFormat, MaxNewTokens, Overwrite

app = typer.Typer(help="check, convert and inspect datasets")
In = Annotated[str, typer.Argument(metavar="IN", help="data file to read", show_default=False)]


def _reading(from_format: str | None, column_map: list[str] | None, exclude_telling: bool) -> dict[str, Any]:
    """The input options all data commands share, as ``edulora.data`` takes them."""
    return {"from_format": from_format, "column_map": parse_column_map(column_map or []) or None, "exclude_telling": exclude_telling}


@app.command()
def validate(file: In, from_format: InputFormat = None, column_map: ColumnMap = None,
             exclude_telling: ExcludeTelling = False) -> int:
    """Check a dataset; every problem is printed as FILE:LINE: message."""
    result = data.validate(file, **_reading(from_format, column_map, exclude_telling))
    for problem in result.problems:
        print(problem, file=sys.stderr)
    print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 2


@app.command()
def convert(src: In, out: str = typer.Option(..., metavar="OUT", help="edulora JSONL to write"), from_format: InputFormat = None,
            column_map: ColumnMap = None, exclude_telling: ExcludeTelling = False, overwrite: Overwrite = False,
            metadata: str | None = typer.Option(None, metavar="FILE", help="transcripts: metadata per conversation id"),
            scrub: bool = typer.Option(True, help="transcripts: replace personal information")) -> None:
    """Convert Alpaca, ShareGPT, OpenAI chat, CSV, MathDial, per-message transcripts… (see --from) to edulora JSONL."""
    count = data.convert(src, out, overwrite=overwrite, metadata_file=metadata, scrub=scrub, **_reading(from_format, column_map, exclude_telling))
    print(f"wrote {count} records to {out}")


@app.command()
def report(file: In, eval_file: str | None = typer.Option(None, "--eval", help="eval set to check for leakage"),
           html: str | None = typer.Option(None, help="also write an HTML page with charts"),
           json_out: str | None = typer.Option(None, "--json", help="also write it as JSON ('-': print JSON only)"),
           tokenizer: str | None = typer.Option(None, help="tokenizer.json, folder or HF id (default: estimate)"),
           max_length: int | None = typer.Option(None, min=1, help="list records longer than this many tokens"),
           thin: int | None = typer.Option(None, min=1, help="cells with fewer records are thin (default: auto)"),
           near_threshold: float = typer.Option(0.8, min=0.0, max=1.0, help="Jaccard of near-duplicates"),
           readability_tolerance: float = typer.Option(2.0, help="grades off the level's band to flag"),
           from_format: InputFormat = None, column_map: ColumnMap = None,
           exclude_telling: ExcludeTelling = False, overwrite: Overwrite = False) -> None:
    """Coverage, misconceptions, lengths, duplicates, leakage and readability."""
    from ..data.report_render import render_json, render_text
    only_json = json_out == "-"
    result = data.report(file, eval_path=eval_file, tokenizer=tokenizer, max_length=max_length, thin=thin,
                         near_threshold=near_threshold, readability_tolerance=readability_tolerance, html_out=html,
                         json_out=None if only_json else json_out, overwrite=overwrite,
                         **_reading(from_format, column_map, exclude_telling))
    sys.stdout.write(render_json(result) if only_json else render_text(result))
    for written in [path for path in (None if only_json else json_out, html) if path]:  # stdout stays JSON with '-'
        print(f"wrote {written}", file=sys.stderr if only_json else sys.stdout)


@app.command()
def scrub(src: In, out: str | None = typer.Option(None, metavar="OUT", help="JSONL to write (unless --in-place)"),
          roster: str | None = typer.Option(None, help="names to remove, one per line"),
          in_place: bool = typer.Option(False, "--in-place", help="write IN itself (no --out needed)"),
          report_json: str | None = typer.Option(None, help="write counts per type and line as JSON"),
          from_format: InputFormat = None, column_map: ColumnMap = None,
          exclude_telling: ExcludeTelling = False, overwrite: Overwrite = False) -> None:
    """Replace names, schools, e-mails, phones, addresses, IDs, birth dates, handles and URLs by placeholders."""
    result = data.scrub_file(src, out, roster=roster, in_place=in_place, report_json=report_json, overwrite=overwrite,
                             **_reading(from_format, column_map, exclude_telling))
    print(*result.summary_lines(), f"wrote {result.records} records to {out or src}", sep="\n")


@app.command()
def split(file: In, train_out: str = typer.Option(...), eval_out: str = typer.Option(...),
          eval_fraction: float = typer.Option(0.1, min=0.0, max=1.0, help="share of records for eval"), seed: int = 0,
          near_threshold: float = typer.Option(0.8, min=0.0, max=1.0, help="near-duplicates stay together; 0: off"),
          group_by: str = typer.Option(None, help="metadata field whose records stay on one side, e.g. qid"),
          from_format: InputFormat = None, column_map: ColumnMap = None,
          exclude_telling: ExcludeTelling = False, overwrite: Overwrite = False) -> None:
    """Deterministic stratified train/eval split without leakage."""
    stats = data.split_file(file, train_out=train_out, eval_out=eval_out, eval_fraction=eval_fraction, seed=seed,
                            near_threshold=near_threshold, group_by=group_by, overwrite=overwrite,
                            **_reading(from_format, column_map, exclude_telling))
    print("\n".join(stats.summary_lines(train_out, eval_out, group_by)))


@app.command()
def pairs(run: Annotated[str, typer.Argument(metavar="RUN", help="run directory")], out: str = typer.Option(..., metavar="OUT", help="pairs JSONL to write"),
          data_file: str | None = typer.Option(None, "--data", help="training records (default: the run's)"),
          samples: int = typer.Option(4, min=2), temperature: float = typer.Option(0.8, min=0.01), seed: int = 0,
          max_new_tokens: MaxNewTokens = 200, limit: int | None = typer.Option(None, min=1), overwrite: Overwrite = False) -> None:
    """Mine preference pairs from a run's own mistakes (never from its held-out records)."""
    from ..evaluation.mining import mine_run_pairs
    print(mine_run_pairs(run, data_file, out, samples=samples, seed=seed, temperature=temperature,
                         max_new_tokens=max_new_tokens, limit=limit, overwrite=overwrite).summary() + f"\nwrote {out}")
