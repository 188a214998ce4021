"""edulora: LoRA fine-tuning for educational tutors, on a laptop CPU or a GPU.

The public API, in the order a notebook uses it::

    import edulora as el
    config = el.load_config("configs/mathematics.yaml", ["data.train_file=algebra.jsonl"])
    run = el.train(config)                      # -> el.RunResult(run_dir, summary, tutor)
    tutor = el.Tutor.load("runs/algebra")       # base + adapter + prompt format + metadata
    print(tutor.ask("Why is 3/4 + 1/8 = 7/8?", teaching_style="socratic").text)
    result = el.evaluate([tutor], el.load_records("eval.jsonl"), include_base=True)
    result.write_reports("reports/")
    print(el.measure_retention(tutor).reading)  # drift from the base on general prompts, in words

Names are imported on first use, so ``import edulora`` (and the CLI's start-up) stays fast: the
heavy libraries load only when a model is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS = {
    "RunConfig": "edulora.config",
    "load_config": "edulora.config",
    "config_help": "edulora.configref",
    "EduloraError": "edulora.errors",
    "Example": "edulora.data.schema",
    "Dialogue": "edulora.data.schema",
    "Turn": "edulora.data.schema",
    "Metadata": "edulora.data.schema",
    "GradeLevel": "edulora.data.schema",
    "TeachingStyle": "edulora.data.schema",
    "load_records": "edulora.data.formats",
    "PromptFormat": "edulora.formatting",
    "Sampling": "edulora.generation",
    "Reply": "edulora.generation",
    "RunDir": "edulora.rundir",
    "RunSummary": "edulora.rundir",
    "Tutor": "edulora.tutor",
    "train": "edulora.training.recipe",
    "resume": "edulora.training.recipe",
    "RunResult": "edulora.training.loop",
    "evaluate": "edulora.evaluation.runner",
    "EvalSettings": "edulora.evaluation.runner",
    "EvalResult": "edulora.evaluation.results",
    "mine_pairs": "edulora.evaluation.mining",
    "PreferencePair": "edulora.data.pairs",
    "load_pairs": "edulora.data.pairs",
    "Retention": "edulora.evaluation.results",
    "measure_retention": "edulora.evaluation.retention",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edulora' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .config import RunConfig, load_config
    from .configref import config_help
    from .data.formats import load_records
    from .data.schema import Dialogue, Example, GradeLevel, Metadata, TeachingStyle, Turn
    from .errors import EduloraError
    from .data.pairs import PreferencePair, load_pairs
    from .evaluation.mining import mine_pairs
    from .evaluation.results import EvalResult, Retention
    from .evaluation.retention import measure_retention
    from .evaluation.runner import EvalSettings, evaluate
    from .formatting import PromptFormat
    from .generation import Reply, Sampling
    from .rundir import RunDir, RunSummary
    from .training.loop import RunResult
    from .training.recipe import resume, train
    from .tutor import Tutor
