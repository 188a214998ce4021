"""``edulora eval``: compare the base model and adapters on held-out records, write reports."""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import typer

import edulora as el

from ..errors import EduloraError
from .options import AllowPickle, Precision

Turns = typing.Literal["last", "open"]


app = typer.Typer()


@app.command("eval")
def evaluate(models: list[str] | None = typer.Argument(None, metavar="RUN_OR_ADAPTER...", show_default=False),
             data: str | None = typer.Option(None, help="evaluation records (default: the first run's eval.jsonl)"),
             base: bool = typer.Option(False, "--base", help="also evaluate the base model (adapters disabled)"),
             base_model: str | None = typer.Option(None, help="base model to attach the adapters to"),
             html: str | None = None, json_out: str | None = typer.Option(None, "--json"), markdown: str | None = None,
             limit: int | None = typer.Option(None, min=1, help="evaluate only the first N records"),
             turns: Turns = typer.Option("last", help="last tutor turn, or every turn before the student "
                                                      "reached the key (open)"),
             max_new_tokens: int = typer.Option(200, min=1),
             max_length: int | None = typer.Option(None, min=1, help="default: the run's data.max_length"),
             seed: int = 0, resamples: int = typer.Option(1000, min=1, help="bootstrap resamples"),
             precision: Precision = "auto", allow_pickle: AllowPickle = False,
             judge: str | None = typer.Option(None, metavar="URL", help="OpenAI-compatible judge server"),
             judge_model: str = "gpt-4o-mini",
             judge_key: str | None = typer.Option(None, help="default: $EDULORA_JUDGE_KEY or $OPENAI_API_KEY"),
             judge_cache: str | None = None, judge_max_tokens: int = typer.Option(400, min=1)) -> None:
    """Evaluate adapters (and the base model) on held-out records."""
    from ..evaluation.judge import Judge
    from ..evaluation.runner import default_eval_file, load_models, run_dir_of, run_max_length

    models = models or []
    for source in models:
        if not Path(source).expanduser().exists():
            raise EduloraError(f"{source}: no such run or adapter directory")
    path = Path(data).expanduser() if data else default_eval_file(models)
    if not path.is_file():
        raise EduloraError(f"{path}: no such data file")
    records = el.load_records(path)
    scorer = Judge(judge, judge_model, judge_key, cache_dir=judge_cache, max_tokens=judge_max_tokens) if judge else None
    run_dir = run_dir_of(models)
    settings = el.EvalSettings(max_new_tokens=max_new_tokens, limit=limit, turns=turns, seed=seed,
                               bootstrap_resamples=resamples,
                               max_length=max_length or run_max_length(run_dir))
    result = el.evaluate(load_models(models, base, base_model, precision, allow_pickle), records, settings,
                         judge=scorer, run_dir=run_dir, progress=lambda text: print(text, file=sys.stderr, flush=True))
    written = result.write_reports(html_path=html, json_path=json_out, markdown_path=markdown)
    _print_summary(result)
    for report in written.values():
        print(report)


def _print_summary(result: el.EvalResult) -> None:
    from ..evaluation.results import METRICS

    width = max(len(r.name) for r in result.models)
    print(f"{'model':<{width}}  eval loss  tokens/s  " + "  ".join(m[:10] for m in METRICS))
    for r in result.models:
        cells = [_cell(r.eval_loss, 9, ".4f"), _cell(r.tokens_per_s, 8, ".1f")]
        print(f"{r.name:<{width}}  " + "  ".join(cells + [_cell(r.metrics[m], len(m[:10]), ".3f") for m in METRICS]))


def _cell(value: float | None, width: int, spec: str) -> str:
    return f"{'–' if value is None else format(value, spec):>{width}}"
