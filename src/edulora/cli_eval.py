"""``edulora eval``: compare the base model and adapters on held-out records, write reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EduloraError


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", help="evaluate adapters (and the base model) on held-out records")
    p.add_argument("models", nargs="*", metavar="RUN_OR_ADAPTER", help="run directories or adapter directories")
    p.add_argument("--data", help="evaluation records (default: the first run's eval.jsonl)")
    p.add_argument("--base", action="store_true", help="also evaluate the base model (adapters disabled)")
    p.add_argument("--base-model", help="base model to attach the adapters to (default: the one they were trained on)")
    p.add_argument("--html", metavar="OUT", help="write a self-contained HTML report")
    p.add_argument("--json", metavar="OUT", help="write every figure as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write a Markdown report")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N records")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="N")
    p.add_argument("--max-length", type=int, metavar="N",
                   help="token budget per record for the loss (default: the run's data.max_length, else 1024)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--allow-pickle", action="store_true", help="allow loading .bin (pickle) adapter weights")
    p.add_argument("--judge", metavar="URL", help="OpenAI-compatible server scoring MRBench's eight dimensions")
    p.add_argument("--judge-model", default="gpt-4o-mini", metavar="NAME")
    p.add_argument("--judge-key", metavar="KEY", help="API key (default: $EDULORA_JUDGE_KEY or $OPENAI_API_KEY)")
    p.add_argument("--judge-cache", metavar="DIR", help="where judgments are cached (default: the edulora cache)")
    p.add_argument("--judge-max-tokens", type=int, default=400, metavar="N",
                   help="reply budget of the judge's eight-label answer (default 400)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from .data.formats import load_records
    from .evaluation.report import write_reports
    from .evaluation.runner import (
        EvalSettings,
        default_eval_file,
        evaluate,
        load_models,
        run_dir_of,
        run_max_length,
    )

    for value, flag in ((args.limit, "--limit"), (args.max_new_tokens, "--max-new-tokens"),
                        (args.max_length, "--max-length"), (args.resamples, "--resamples"),
                        (args.judge_max_tokens, "--judge-max-tokens")):
        if value is not None and value < 1:
            raise EduloraError(f"{flag} must be at least 1")
    for source in args.models:
        if not Path(source).expanduser().exists():
            raise EduloraError(f"{source}: no such run or adapter directory")
    data = Path(args.data).expanduser() if args.data else default_eval_file(args.models)
    if not data.is_file():
        raise EduloraError(f"{data}: no such data file")
    records = load_records(data)
    judge = None
    if args.judge:
        from .evaluation.judge import Judge

        judge = Judge(args.judge, args.judge_model, args.judge_key, cache_dir=args.judge_cache,
                      max_tokens=args.judge_max_tokens)
    run_dir = run_dir_of(args.models)
    settings = EvalSettings(max_new_tokens=args.max_new_tokens, limit=args.limit,
                            max_length=args.max_length or run_max_length(run_dir),
                            bootstrap_resamples=args.resamples, seed=args.seed)
    models = load_models(args.models, args.base, args.base_model, args.precision, args.allow_pickle)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = evaluate(models, records, settings, judge=judge, run_dir=run_dir, progress=progress)
    written = write_reports(result, html_path=args.html, json_path=args.json, markdown_path=args.markdown)
    _print_summary(result)
    for path in written.values():
        print(path)
    return 0


def _print_summary(result) -> None:
    from .evaluation.results import METRICS

    width = max(len(r.name) for r in result.models)
    print(f"{'model':<{width}}  eval loss  tokens/s  " + "  ".join(m[:10] for m in METRICS))
    for r in result.models:
        loss = f"{r.eval_loss:9.4f}" if r.eval_loss is not None else "        –"
        speed = f"{r.tokens_per_s:8.1f}" if r.tokens_per_s is not None else "       –"
        scores = "  ".join(f"{'–' if r.metrics[m] is None else format(r.metrics[m], '.3f'):>{len(m[:10])}}"
                           for m in METRICS)
        print(f"{r.name:<{width}}  {loss}  {speed}  {scores}")
