"""``edulora eval``: compare the base model and adapters on held-out records, write reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import edulora as el

from ..errors import EduloraError
from .options import AllowPickle, Precision

Count = Annotated[int | None, typer.Option(min=1, metavar="N")]
Out = Annotated[str | None, typer.Option(metavar="OUT")]


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    models: Annotated[list[str] | None, typer.Argument(metavar="RUN_OR_ADAPTER...", help="run or adapter directories")] = None,
    data: Annotated[str | None, typer.Option(help="evaluation records (default: the first run's eval.jsonl)")] = None,
    base: Annotated[bool, typer.Option("--base", help="also evaluate the base model (adapters disabled)")] = False,
    base_model: Annotated[str | None, typer.Option(help="base model to attach the adapters to")] = None,
    html: Out = None, json_out: Annotated[str | None, typer.Option("--json", metavar="OUT")] = None, markdown: Out = None,
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", help="evaluate only the first N records")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, metavar="N")] = 200,
    max_length: Annotated[int | None, typer.Option(min=1, metavar="N", help=(
        "token budget per record for the loss (default: the run's data.max_length, else 1024)"))] = None,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap resampling")] = 0,
    resamples: Annotated[int, typer.Option(min=1, help="bootstrap resamples")] = 1000,
    precision: Precision = "auto", allow_pickle: AllowPickle = False,
    judge: Annotated[str | None, typer.Option(metavar="URL", help=(
        "OpenAI-compatible server scoring MRBench's eight dimensions"))] = None,
    judge_model: Annotated[str, typer.Option(metavar="NAME")] = "gpt-4o-mini",
    judge_key: Annotated[str | None, typer.Option(metavar="KEY", help=(
        "API key (default: $EDULORA_JUDGE_KEY or $OPENAI_API_KEY)"))] = None,
    judge_cache: Annotated[str | None, typer.Option(metavar="DIR", help="judgment cache (default: edulora's)")] = None,
    judge_max_tokens: Annotated[int, typer.Option(min=1, metavar="N", help="reply budget of the judge")] = 400,
) -> None:
    """Evaluate adapters (and the base model) on held-out records."""
    from ..evaluation.runner import default_eval_file, load_models, run_dir_of, run_max_length

    models = models or []
    for source in models:
        if not Path(source).expanduser().exists():
            raise EduloraError(f"{source}: no such run or adapter directory")
    path = Path(data).expanduser() if data else default_eval_file(models)
    if not path.is_file():
        raise EduloraError(f"{path}: no such data file")
    records = el.load_records(path)
    scorer = None
    if judge:
        from ..evaluation.judge import Judge

        scorer = Judge(judge, judge_model, judge_key, cache_dir=judge_cache, max_tokens=judge_max_tokens)
    run_dir = run_dir_of(models)
    settings = el.EvalSettings(max_new_tokens=max_new_tokens, limit=limit, seed=seed, bootstrap_resamples=resamples,
                               max_length=max_length or run_max_length(run_dir))
    tutors = load_models(models, base, base_model, precision, allow_pickle)
    result = el.evaluate(tutors, records, settings, judge=scorer, run_dir=run_dir,
                         progress=lambda message: print(message, file=sys.stderr, flush=True))
    written = result.write_reports(html_path=html, json_path=json_out, markdown_path=markdown)
    _print_summary(result)
    for report in written.values():
        print(report)


def _print_summary(result: el.EvalResult) -> None:
    from ..evaluation.results import METRICS

    width = max(len(r.name) for r in result.models)
    print(f"{'model':<{width}}  eval loss  tokens/s  " + "  ".join(m[:10] for m in METRICS))
    for r in result.models:
        loss = f"{r.eval_loss:9.4f}" if r.eval_loss is not None else "        –"
        speed = f"{r.tokens_per_s:8.1f}" if r.tokens_per_s is not None else "       –"
        scores = "  ".join(f"{'–' if r.metrics[m] is None else format(r.metrics[m], '.3f'):>{len(m[:10])}}"
                           for m in METRICS)
        print(f"{r.name:<{width}}  {loss}  {speed}  {scores}")
