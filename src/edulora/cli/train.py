"""``edulora train``, ``edulora demo`` and ``edulora generate``: the training and asking side of the API."""

from __future__ import annotations

from typing import Annotated

import typer

import edulora as el

from ..errors import EduloraError
from .options import AllowPickle, Base, Precision

Text = Annotated[str | None, typer.Option()]


def register(app: typer.Typer) -> None:
    for command in (demo, train, generate):
        app.command()(command)


def demo(output_dir: Annotated[str, typer.Option(help="where the run directory is created")] = "runs") -> None:
    """Train a tutor on the packaged model and sample data, show before/after."""
    from ..demo import run_demo

    print(run_demo(output_dir).run_dir)


def train(
    config: Annotated[str | None, typer.Argument(metavar="CONFIG", help="YAML config (see configs/)")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="override a config value, e.g. --set lora.r=8 (repeatable)")] = None,
    resume: Annotated[str | None, typer.Option(metavar="RUN_DIR", help="continue a run from its latest checkpoint")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing non-empty run directory")] = False,
) -> None:
    """Train a LoRA adapter from a YAML config."""
    if resume:
        if config or overrides:
            raise EduloraError("--resume continues a run with its saved config; drop CONFIG and --set")
        result = el.resume(resume)
    else:
        if not config and not overrides:
            raise EduloraError("give a config file (e.g. configs/default.yaml) or --set values")
        result = el.train(el.load_config(config, overrides), overwrite=overwrite)
    s = result.summary
    print(f"eval loss {s.eval_loss_before:.4f} -> {s.eval_loss_after:.4f}; "
          f"{s.train_tokens_per_s:.0f} tokens/s; {s.wall_s:.0f} s")
    print(result.run_dir)


def generate(
    question: str,
    adapter: Annotated[str | None, typer.Option(metavar="RUN_OR_DIR", help="run or adapter directory (default: none)")] = None,
    base: Base = None, precision: Precision = "auto",
    context: Annotated[str | None, typer.Option(help="extra context, e.g. what the student tried")] = None,
    subject: Text = None, grade_level: Text = None, teaching_style: Text = None,
    answer: Annotated[str | None, typer.Option(help="teacher's key: the answer to guide toward, not to tell")] = None,
    solution: Annotated[str | None, typer.Option(help="teacher's key: a worked solution")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 200,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 is deterministic")] = 0.0,
    allow_pickle: AllowPickle = False,
) -> None:
    """Print a tutor reply to a question."""
    tutor = el.Tutor.load(adapter, base=base, precision=precision, allow_pickle=allow_pickle)
    reply = tutor.ask(question, context=context, subject=subject, grade_level=grade_level,
                      teaching_style=teaching_style, answer=answer, solution=solution,
                      sampling=el.Sampling(max_new_tokens=max_new_tokens, temperature=temperature))
    print(reply.text)
