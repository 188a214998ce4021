"""``edulora calibrate`` and ``edulora judges train``: parse, call ``edulora.evaluation``, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .options import Overwrite

app, judges = typer.Typer(), typer.Typer(help="The learned judges of MRBench's dimensions.", no_args_is_help=True)
app.add_typer(judges, name="judges")
Mrbench = typer.Argument(..., metavar="MRBENCH.json", help="MRBench V2 file", show_default=False)
Dialogues = typer.Option(None, "--dialogues", metavar="START:END", help="only these dialogues, by position (e.g. 61:)")


@app.command()
def calibrate(path: Path = Mrbench, dialogues: str | None = Dialogues,
              split: str | None = typer.Option(None, help="only dialogues whose 'Split' field is this (train, val, test)"),
              unseen: bool = typer.Option(False, "--unseen", help="only dialogues the judges were not trained on"),
              predictions: Path | None = typer.Option(None, metavar="OUT.jsonl", help="write every response's verdicts"),
              weights: Path | None = typer.Option(None, "--judges", help="judge weights (default: the shipped ones)"),
              rules_only: bool = typer.Option(False, "--rules-only", help="skip the learned judges"),
              json_out: str | None = typer.Option(None, "--json", metavar="FILE", help="also write it as JSON ('-': print JSON only)"),
              overwrite: Overwrite = False) -> None:
    """Agreement of the rules, learned and combined judges with MRBench's human labels."""
    from ..evaluation.calibrate import calibrate_file, to_text

    result = calibrate_file(path, dialogues, split, unseen, predictions, weights, not rules_only, None if json_out == "-" else json_out,
                            overwrite)
    print(json.dumps(result, indent=2) if json_out == "-" else to_text(result))


@judges.command("train")
def train(path: Path = Mrbench, out: Path | None = typer.Option(None, metavar="DIR", help="default: the shipped ones"),
          dialogues: str | None = Dialogues) -> None:
    """Rebuild the judge weights and MODEL_CARD.md from an MRBench file (same file, same bytes)."""
    from ..evaluation.calibrate import parse_span
    from ..evaluation.judges.card import score_table
    from ..evaluation.judges.train import train_judges

    report = train_judges(path, out, dialogues=parse_span(dialogues) if dialogues else None,
                          progress=lambda text: print(text, file=sys.stderr, flush=True))
    print(score_table(report))
