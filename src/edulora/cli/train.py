"""``edulora train``, ``edulora demo`` and ``edulora generate``."""

from __future__ import annotations

import typer

import edulora as el

from ..errors import EduloraError
from .options import AllowPickle, Backend, Base, MaxNewTokens, Precision

app = typer.Typer()


@app.command()
def demo(output_dir: str = typer.Option("runs", help="where the run directory is created"), backend: Backend = "auto",
         quiet: bool = typer.Option(False, "--quiet", help="no progress bars (hidden off a terminal anyway)")) -> None:
    """Train a tutor on the packaged model and sample data, show before/after (--backend auto: replies in one
    PyTorch batch where training ran in bf16 on a CPU, else llama.cpp)."""
    from ..demo import run_demo
    print(run_demo(output_dir, backend, quiet).run_dir)


@app.command(epilog=el.config_help())  # every key, its type, default and doc, from the models
def train(config: str | None = typer.Argument(None, help="YAML config (see configs/)"),
          overrides: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE", help="e.g. lora.r=8"),
          resume: str | None = typer.Option(None, metavar="RUN_DIR", help="continue a run from its last checkpoint"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty run directory")) -> None:
    """Train a LoRA adapter from a YAML config."""
    if resume and (config or overrides):
        raise EduloraError("--resume continues a run with its saved config; drop CONFIG and --set")
    if not resume and not config and not overrides:
        raise EduloraError("give a config file (e.g. configs/default.yaml) or --set values")
    result = el.resume(resume) if resume else el.train(el.load_config(config, overrides), overwrite=overwrite)
    print(f"{result.summary.headline()}\n{result.run_dir}")


@app.command()
def generate(question: str, adapter: str | None = typer.Option(None, metavar="RUN", help="run or adapter directory (default: none)"),
             base: Base = None, precision: Precision = "auto",
             context: str | None = typer.Option(None, help="extra context, e.g. what the student tried"),
             subject: str | None = None, grade_level: str | None = None, teaching_style: str | None = None,
             answer: str | None = typer.Option(None, help="teacher's key: the answer to lead to, not tell"),
             solution: str | None = typer.Option(None, help="teacher's key: a worked solution"),
             max_new_tokens: MaxNewTokens = 200, temperature: float = typer.Option(0.0, min=0.0),
             allow_pickle: AllowPickle = False) -> None:
    """Print a tutor reply to a question."""
    tutor = el.Tutor.load(adapter, base=base, precision=precision, allow_pickle=allow_pickle)
    print(tutor.ask(question, context=context, subject=subject, grade_level=grade_level, teaching_style=teaching_style,
                    answer=answer, solution=solution,
                    sampling=el.Sampling(max_new_tokens=max_new_tokens, temperature=temperature)).text)
