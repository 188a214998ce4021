"""``edulora serve``, ``edulora chat`` and ``edulora feedback export``: parse, call ``edulora.serving``, print."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


Base = Annotated[Optional[str], typer.Option(help="base model (default: the one the adapters were trained on)")]
PrecisionOpt = Annotated[Precision, typer.Option(help="weight precision (auto: fp32 on a CPU, bf16/fp16 on a GPU)")]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="allow loading .bin (pickle) adapter weights")]
Positive = dict(min=1, show_default=True)


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``chat`` and ``feedback export`` to the edulora CLI."""
    app.command(help="Serve tutors: OpenAI-compatible API + teacher page. One base model in memory with every "
                     "adapter beside it; 'model' in a request picks the adapter, \"auto\" routes by subject.")(serve)
    app.command(help="Chat with a tutor in the terminal (/adapter NAME switches, /reset, /quit).")(chat)
    feedback = typer.Typer(help="Teachers' feedback collected by 'edulora serve'.", no_args_is_help=True)
    feedback.command("export", help="Write SFT records (and preference pairs) from rated/corrected replies.")(
        feedback_export)
    app.add_typer(feedback, name="feedback")


def serve(
    adapter: Annotated[list[str], typer.Option(metavar="NAME=RUN", help="adapter to serve, as NAME=RUN_DIR "
                                               "(repeatable; the name defaults to its subject)")] = [],  # noqa: B006
    base: Base = None, precision: PrecisionOpt = Precision.auto, allow_pickle: AllowPickle = False,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0 picks a free one)")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(envvar="EDULORA_API_KEY", show_envvar=True,
                                                   help="require 'Authorization: Bearer KEY'; needed off "
                                                        "loopback")] = None,
    feedback_db: Annotated[Optional[Path], typer.Option(metavar="PATH", help="SQLite file for teachers' "
                                                        "ratings (default: ~/.cache/edulora/feedback.sqlite3)")] = None,
    no_feedback: Annotated[bool, typer.Option("--no-feedback", help="do not store feedback")] = False,
    max_batch: Annotated[int, typer.Option(help="requests decoded together", **Positive)] = 8,
    max_queue: Annotated[int, typer.Option(help="waiting requests before 429", **Positive)] = 64,
    max_tokens: Annotated[int, typer.Option(help="reply length when a request sets none", **Positive)] = 256,
    route_threshold: Annotated[float, typer.Option(help="similarity under which 'auto' uses the fallback")] = 0.2,
    fallback_adapter: Annotated[Optional[str], typer.Option(help="adapter for questions no adapter fits "
                                                            "(default: the base model)")] = None,
) -> None:
    from ..serving.server import serve as run

    run(adapter, base=base, host=host, port=port, api_key=api_key, feedback=not no_feedback,
        feedback_db=feedback_db, precision=precision.value, allow_pickle=allow_pickle, max_batch=max_batch,
        max_queue=max_queue, max_tokens=max_tokens, route_threshold=route_threshold,
        fallback_adapter=fallback_adapter, log=lambda line: print(line, flush=True))
    print("Stopped.", flush=True)


def chat(
    adapter: Annotated[list[str], typer.Option(metavar="NAME=RUN", help="adapter to chat with, as RUN_DIR or "
                                               "NAME=RUN_DIR (repeatable; switch with /adapter)")] = [],  # noqa: B006
    base: Base = None, precision: PrecisionOpt = Precision.auto, allow_pickle: AllowPickle = False,
    max_tokens: Annotated[int, typer.Option(help="longest reply in tokens", **Positive)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 is deterministic")] = 0.0,
    answer: Annotated[Optional[str], typer.Option(help="teacher's key: the final answer (never stated)")] = None,
    solution: Annotated[Optional[str], typer.Option(help="teacher's key: a worked solution")] = None,
) -> None:
    from ..serving.chat import chat as run

    run(adapter, base=base, precision=precision.value, allow_pickle=allow_pickle, max_tokens=max_tokens,
        temperature=temperature, answer=answer, solution=solution)


def feedback_export(
    out: Annotated[Path, typer.Argument(metavar="OUT.jsonl", help="SFT records in edulora's data schema")],
    db: Annotated[Optional[Path], typer.Option(help="feedback database (default: "
                                               "~/.cache/edulora/feedback.sqlite3)")] = None,
    pairs: Annotated[Optional[Path], typer.Option(metavar="PAIRS.jsonl", help="also write preference pairs "
                                                  "(prompt, chosen, rejected)")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="keep students' names, e-mails, phone numbers… as written "
                                      "(for a teacher's own review; never train on it)")] = False,
) -> None:
    from ..serving.feedback import export_feedback

    counts = export_feedback(db, out, pairs, raw=raw)
    print(f"{counts.rows} feedback rows -> {counts.sft} SFT records in {out}"
          + (f", {counts.pairs} preference pairs in {pairs}" if pairs else "")
          + ("; students' text kept as written (--raw)" if raw else f"; {counts.replaced} personal details replaced"))

