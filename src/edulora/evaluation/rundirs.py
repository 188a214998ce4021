"""Where ``edulora eval`` finds what a run left: its held-out records, training log and truncation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import EduloraError
from ..rundir import RunDir


def read_training_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl rows (a torn last line, from a run still writing, is skipped)."""
    return RunDir(run_dir).read_metrics()


def _run_dirs(sources: Sequence[str | Path]) -> Iterator[RunDir]:
    """The run directories among the inputs (a run, or an adapter folder inside one)."""
    for source in sources:
        path = Path(source).expanduser()
        for candidate in (path, path.parent) if path.name == RunDir.ADAPTER else (path,):
            if RunDir(candidate).config_file.is_file() or RunDir(candidate).metrics_file.is_file():
                yield RunDir(candidate)


def default_eval_file(sources: Sequence[str | Path]) -> Path:
    """The held-out split a run wrote (eval.jsonl of the first run directory given)."""
    for run in _run_dirs(sources):
        if run.eval_file.is_file():
            return run.eval_file
    raise EduloraError("no --data given and no run directory with held-out records among the inputs")


def run_dir_of(sources: Sequence[str | Path]) -> Path | None:
    """The first input that is a run directory with a training log, for the loss curves."""
    return next((run.path for run in _run_dirs(sources) if run.metrics_file.is_file()), None)


def run_max_length(run_dir: Path | None, default: int = 1024) -> int:
    """The run's ``data.max_length``, so loss is measured on the same truncation as in training."""
    if run_dir is None or not RunDir(run_dir).config_file.is_file():
        return default
    try:
        return RunDir(run_dir).read_config().data.max_length
    except EduloraError:
        return default
