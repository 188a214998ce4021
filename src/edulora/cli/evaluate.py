"""``edulora eval``: compare the base model and adapters on held-out records, write reports."""

from __future__ import annotations

import sys
import typing

import typer

import edulora as el

from .options import AllowPickle, Backend, Base, MaxNewTokens, Overwrite, Precision

Turns = typing.Literal["auto", "last", "open"]
app = typer.Typer()


@app.command("eval")
def evaluate(models: list[str] | None = typer.Argument(None, metavar="RUN...", help="run or adapter directories", show_default=False),
             data: str | None = typer.Option(None, help="evaluation records (default: the first run's eval.jsonl)"),
             with_base: bool = typer.Option(False, "--with-base", help="also evaluate the base model"), base: Base = None,
             html: str | None = None, json_out: str | None = typer.Option(None, "--json"), markdown: str | None = None,
             limit: int | None = typer.Option(None, min=1, help="evaluate only the first N records"),
             turns: Turns = typer.Option("auto", help="last tutor turn, each before the key (open), auto: open if multi-turn"),
             max_new_tokens: MaxNewTokens = 200, seed: int = 0, retention_data: str | None = None,
             max_length: int = typer.Option(0, min=0, help="0: the run's data.max_length"),
             resamples: int = typer.Option(1000, min=1, help="bootstrap resamples"),
             retention_prompts: int | None = typer.Option(None, min=0, help="general prompts for the drift (0: skip)"),
             precision: Precision = "auto", allow_pickle: AllowPickle = False, backend: Backend = "auto",
             judge_model: str = "gpt-4o-mini", judge: str | None = typer.Option(None, metavar="URL", help="OpenAI-style API"),
             judge_key: str | None = typer.Option(None, help="default: $EDULORA_JUDGE_KEY or $OPENAI_API_KEY"),
             judge_cache: str | None = None, judge_max_tokens: int = typer.Option(400, min=1),
             blind_sheet: str | None = typer.Option(None, help="also write a blinded CSV of two models' replies to rate"),
             ratings: str | None = typer.Option(None, help="a filled --blind-sheet: add its human preference"),
             overwrite: Overwrite = False) -> None:
    """Evaluate adapters (and the base model) on held-out records."""
    from ..evaluation.judge import Judge
    from ..evaluation.report import to_text
    from ..evaluation.runner import evaluate_sources

    scorer = Judge(judge, judge_model, judge_key, cache_dir=judge_cache, max_tokens=judge_max_tokens) if judge else None
    settings = el.EvalSettings(max_new_tokens=max_new_tokens, limit=limit, turns=turns, seed=seed,
                               bootstrap_resamples=resamples, max_length=max_length, retention_file=retention_data,
                               retention=retention_prompts != 0, retention_limit=retention_prompts, backend=backend)
    result = evaluate_sources(models or [], data, settings, include_base=with_base, base_model=base,
                              precision=precision, allow_pickle=allow_pickle, judge=scorer, ratings=ratings,
                              reports={"--html": html, "--json": json_out, "--markdown": markdown}, blind_sheet=blind_sheet, overwrite=overwrite,
                              progress=lambda text: print(text, file=sys.stderr, flush=True))
    written = result.write_reports(html_path=html, json_path=json_out, markdown_path=markdown)
    print("\n".join(map(str, [to_text(result), *written.values()])))
