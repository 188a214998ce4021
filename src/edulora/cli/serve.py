"""``edulora serve``, ``edulora chat`` and ``edulora feedback export``: parse, call ``edulora.serving``, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from .options import AllowPickle, Backend, Base, MaxNewTokens, Overwrite, Precision

Adapters = Annotated[list[str] | None, typer.Option("--adapter", metavar="NAME=RUN", help=(
    "adapter as NAME=RUN_DIR or RUN_DIR (repeatable; the name defaults to its subject)"))]

app, feedback = typer.Typer(), typer.Typer(help="Teachers' feedback collected by 'edulora serve'.", no_args_is_help=True)
app.add_typer(feedback, name="feedback")


@app.command()
def serve(adapter: Adapters = None, base: Base = None, precision: Precision = "auto", allow_pickle: AllowPickle = False,
          host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 8000,
          allow_origins: list[str] | None = typer.Option(None, "--allow-origin", help="allowed web origin (repeatable)"),
          api_key: Annotated[str | None, typer.Option(envvar="EDULORA_API_KEY", help="required off loopback")] = None,
          teachers: list[str] | None = typer.Option(None, "--teacher", metavar="NAME=TOKEN[:reviewer]", envvar="EDULORA_TEACHERS", help="a teacher's key (repeatable)"),
          students: list[str] | None = typer.Option(None, "--student", metavar="TEACHER=TOKEN", envvar="EDULORA_STUDENTS", help="a student's chat-only key"),
          feedback_db: Path | None = typer.Option(None, metavar="PATH", help="default ~/.cache/edulora/feedback.sqlite3"),
          feedback: Annotated[bool, typer.Option(" /--no-feedback", show_default=False, help="do not store feedback")] = True,
          max_batch: Annotated[int | None, typer.Option(min=1, help="requests decoded together [8, llama.cpp 32]")] = None,
          max_queue: Annotated[int, typer.Option(min=1, help="waiting requests before 429")] = 64,
          max_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="reply length when a request sets none")] = 256,
          max_request_tokens: Annotated[int, typer.Option(min=1, help="prompt + reply; longer is a 400")] = 4096,
          max_batch_tokens: Annotated[int, typer.Option(min=1, help="rows x (prompt + reply) per batch")] = 8192,
          route_threshold: Annotated[float, typer.Option(help="similarity under which 'auto' falls back")] = 0.2,
          fallback_adapter: Annotated[str | None, typer.Option(help="for questions no adapter fits")] = None,
          backend: Annotated[Literal["auto", "transformers", "llamacpp", "vllm"],
                             typer.Option(help="auto: llamacpp on CPU if able; vllm: a vLLM server decodes")] = "auto",
          gguf: Annotated[Path | None, typer.Option(metavar="BASE.gguf", help="llama.cpp's base weights file")] = None,
          vllm_url: Annotated[str | None, typer.Option(help="vLLM's API, e.g. http://gpu:8000/v1")] = None,
          vllm_api_key: Annotated[str | None, typer.Option(envvar="EDULORA_VLLM_API_KEY")] = None) -> None:
    """Serve tutors: OpenAI-compatible API + teacher page ('model' picks the adapter, "auto" routes)."""
    from ..serving.server import ServeSettings, serve as run
    run(adapter or [], ServeSettings.parse(**{k: v for k, v in locals().items() if k in ServeSettings.model_fields}))
    print("Stopped.", flush=True)


@app.command()
def chat(adapter: Adapters = None, base: Base = None, precision: Precision = "auto", allow_pickle: AllowPickle = False,
         max_new_tokens: MaxNewTokens = 256, backend: Backend = "auto",
         temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 is deterministic")] = 0.0,
         answer: Annotated[str | None, typer.Option(help="teacher's key: the final answer (never stated)")] = None,
         solution: Annotated[str | None, typer.Option(help="teacher's key: a worked solution")] = None) -> None:
    """Chat with a tutor in the terminal (/adapter NAME switches, /reset, /quit)."""
    from ..serving.terminal import chat as run
    run(adapter or [], base=base, precision=precision, allow_pickle=allow_pickle, max_tokens=max_new_tokens,
        temperature=temperature, answer=answer, solution=solution, backend=backend)


@feedback.command("export")
def feedback_export(out: Path = typer.Option(..., metavar="OUT.jsonl", help="SFT records to write"), overwrite: Overwrite = False,
                    db: Path | None = typer.Option(None, "--feedback-db", "--db", metavar="PATH", help="serve's; default: ~/.cache/edulora/feedback.sqlite3"),
                    pairs: Path | None = typer.Option(None, metavar="PAIRS.jsonl", help="preference pairs"),
                    raw: bool = typer.Option(False, "--raw", help="keep students' names… (never train on it)"),
                    everything: bool = typer.Option(False, "--all", help="all items, not only approved ones")) -> None:
    """Write SFT records (and preference pairs) from approved ratings and corrections, scrubbed of personal details."""
    from ..serving.feedback import export_feedback
    print(export_feedback(db, out, pairs, raw=raw, include_all=everything, overwrite=overwrite).summary(out, pairs, raw))
