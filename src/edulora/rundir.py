"""A run directory: the one module that knows its files.

```
runs/<name>/
  config.yaml      the exact config (resume uses it)
  data.json        files, record counts, fingerprints, token counts, PII scrub counts
  eval.jsonl       the held-out records
  metrics.jsonl    train/eval loss and pedagogy rates per logging step
  tensorboard/     TensorBoard event files
  checkpoints/     Trainer checkpoints (for resume)
  adapter/         a standard PEFT adapter + edulora.json + README.md model card
  reports/         evaluation reports (report.html / .md / .json)
  summary.json     written last: its status "done" means the run is complete
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import EduloraError, NothingToDo


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a distributed one.

    Read from the launcher's environment (torchrun, accelerate, deepspeed all set RANK) because
    the run directory is prepared before the Trainer initializes torch.distributed.
    """
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class RunSummary:
    """What ``summary.json`` holds: the outcome of a run, written last."""

    status: str = "training"
    #: ``sft``, ``dpo`` or ``orpo`` (``training.method``); for ``dpo``/``orpo`` the eval loss is that method's
    #: loss on held-out pairs.
    method: str = "sft"
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    #: Relative drop of the held-out loss, (before − after) / before.
    eval_loss_drop: float | None = None
    train_loss: float | None = None
    optimizer_steps: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    #: Real (unpadded) training tokens per second of training time, evaluations excluded.
    train_tokens_per_s: float | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    device: str = ""
    dtype: str = ""
    base_model: str = ""
    base_model_path: str = ""
    template: str = ""
    trainable_parameters: int = 0
    resumed_from: str | None = None
    #: What chose the kept checkpoint (``training.selection.select_by``), which step won, and why.
    select_by: str = "eval_loss"
    selected_step: int | None = None
    selection: str = ""
    #: Pedagogy rates of the kept checkpoint on the fixed held-out sample (leak, incorrect answer, question).
    pedagogy: dict[str, Any] = field(default_factory=dict)
    #: The memory estimate for the largest micro-batch and whether activations were recomputed to fit.
    memory: dict[str, Any] = field(default_factory=dict)
    #: DPO/ORPO: held-out reward accuracy (chosen scored above rejected), margin, chosen and rejected rewards;
    #: ORPO also its chosen cross-entropy (nll_loss), log_odds_ratio and log_odds_chosen.
    preference: dict[str, float] = field(default_factory=dict)
    #: Drift of the kept adapter from its base on general prompts (``evaluation.results.Retention`` as a dict).
    retention: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def headline(self) -> str:
        """One line: the held-out loss before and after, speed and time."""
        drift = f"; drift from base {self.retention['drift']:.4f}" if self.retention else ""
        return (f"eval loss {self.eval_loss_before:.4f} -> {self.eval_loss_after:.4f}{drift}; "
                f"{self.train_tokens_per_s or 0:.0f} tokens/s; {self.wall_s:.0f} s")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSummary:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class RunDir(os.PathLike):
    """A run directory; path-like, so ``run_dir / "adapter"`` and ``open(run_dir.summary_file)`` work."""

    CONFIG = "config.yaml"
    DATA = "data.json"
    EVAL = "eval.jsonl"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINTS = "checkpoints"
    ADAPTER = "adapter"
    TENSORBOARD = "tensorboard"
    REPORTS = "reports"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    # ----- path-like ---------------------------------------------------------------------------
    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (RunDir, Path, str)) and Path(os.fspath(other)) == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ----- opening and creating ----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run directory (one with its config snapshot)."""
        run = cls(path)
        if not run.config_file.is_file():
            raise EduloraError(f"{run.path}: not a run directory (no {cls.CONFIG})")
        return run

    @classmethod
    def create(cls, output_dir: str | os.PathLike, name: str = "", overwrite: bool = False) -> RunDir:
        """A new, empty run directory ``output_dir/name`` (``name`` defaults to the date and time).

        A directory that holds only a config snapshot is a run that never started training (its
        data failed validation, say): it is reused, so fixing the data and retrying just works.
        """
        run = cls(Path(output_dir).expanduser() / (name or datetime.now().strftime("%Y%m%d-%H%M%S")))
        if not is_main_process():
            return run  # rank 0 checks and creates it; here it may already hold rank 0's files
        if run.path.exists() and not run.path.is_dir():
            raise EduloraError(f"{run.path}: exists and is not a directory")
        if run.path.is_dir() and not run.never_started():
            if not overwrite:
                raise EduloraError(f"{run.path}: run directory exists and is not empty; pass --overwrite to replace "
                                   "it or --resume to continue it")
            shutil.rmtree(run.path)
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise EduloraError(f"{run.path}: cannot create run directory ({err.strerror})") from None
        if not os.access(run.path, os.W_OK):
            raise EduloraError(f"{run.path}: run directory is not writable")
        for stale in (run.config_file, run.data_file, run.eval_file):
            stale.unlink(missing_ok=True)
        return run

    def never_started(self) -> bool:
        """True for an empty folder or one a run left before its first training step."""
        return {p.name for p in self.path.iterdir()} <= {self.CONFIG, self.DATA, self.EVAL}

    @staticmethod
    def find_adapter(path: str | os.PathLike) -> Path:
        """The adapter folder of a run directory, or ``path`` itself when it is an adapter folder."""
        folder = Path(path).expanduser()
        if (folder / RunDir.ADAPTER / "adapter_config.json").exists():
            return folder / RunDir.ADAPTER
        if (folder / "adapter_config.json").exists():
            return folder
        raise EduloraError(f"{path}: not a run directory or adapter directory (no adapter_config.json)")

    @staticmethod
    def of_adapter(adapter_folder: str | os.PathLike) -> RunDir | None:
        """The run an adapter folder sits in, when it does (its held-out records help routing and evaluation)."""
        folder = Path(adapter_folder)
        parent = folder.parent
        if folder.name == RunDir.ADAPTER and (parent / RunDir.CONFIG).is_file():
            return RunDir(parent)
        return None

    # ----- files --------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def data_file(self) -> Path:
        return self.path / self.DATA

    @property
    def eval_file(self) -> Path:
        return self.path / self.EVAL

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary_file(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def adapter_dir(self) -> Path:
        return self.path / self.ADAPTER

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def reports_dir(self) -> Path:
        return self.path / self.REPORTS

    # ----- reading and writing --------------------------------------------------------------------
    def read_config(self):
        """The config the run was started with; resuming with other settings would mix two recipes."""
        import yaml

        from .config import config_from_dict

        if not self.config_file.is_file():
            raise EduloraError(f"{self.path}: not a run directory (no {self.CONFIG}); nothing to resume")
        return config_from_dict(yaml.safe_load(self.config_file.read_text(encoding="utf-8")), str(self.config_file))

    def write_config(self, config) -> None:
        from .config import dump_config
        from .data.io import atomic_write_text

        atomic_write_text(self.config_file, dump_config(config))

    def read_summary(self) -> RunSummary | None:
        if not self.summary_file.is_file():
            return None
        return RunSummary.from_dict(json.loads(self.summary_file.read_text(encoding="utf-8")))

    def write_summary(self, summary: RunSummary) -> None:
        from .data.io import atomic_write_text

        atomic_write_text(self.summary_file, json.dumps(summary.to_dict(), indent=2) + "\n")

    def write_data_info(self, info: dict[str, Any]) -> None:
        from .data.io import atomic_write_text

        atomic_write_text(self.data_file, json.dumps(info, indent=2) + "\n")

    def read_data_info(self) -> dict[str, Any]:
        return json.loads(self.data_file.read_text(encoding="utf-8")) if self.data_file.is_file() else {}

    def eval_records(self) -> list:
        """The held-out records this run was evaluated on."""
        from .data.formats import load_records

        if not self.eval_file.is_file():
            raise EduloraError(f"{self.path}: no {self.EVAL}; pass the evaluation data explicitly")
        return load_records(self.eval_file)

    def write_eval_records(self, records) -> None:
        from .data.io import write_records

        write_records(self.eval_file, records)

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of metrics.jsonl (step, loss, eval_loss, pedagogy rates …); a torn last line is skipped."""
        rows: list[dict[str, Any]] = []
        if not self.metrics_file.is_file():
            return rows
        for line in self.metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a run killed mid-write leaves a partial last line
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def resume_point(self) -> Path | None:
        """The checkpoint a resume continues from (None: none yet), with metrics.jsonl cut back to it.

        A finished run raises ``NothingToDo``: resuming it would evaluate again and rewrite its adapter.
        Rows logged after the checkpoint's step go: the resumed run logs those steps again, with other
        losses, and two rows for one step would make the run's curves and comparisons wrong.
        """
        summary = self.read_summary()
        if summary is not None and summary.status == "done":
            raise NothingToDo(f"{self.path} finished training already; its adapter is {self.adapter_dir}")
        checkpoint = self.latest_checkpoint()
        if checkpoint is not None and is_main_process():
            self.drop_metrics_after(int(checkpoint.name.removeprefix("checkpoint-")))
        return checkpoint

    def drop_metrics_after(self, step: int) -> None:
        """Keep only the metrics rows up to ``step`` (a torn last line goes too); atomic, like every rewrite."""
        from .data.io import write_jsonl

        if self.metrics_file.is_file():
            write_jsonl(self.metrics_file, [row for row in self.read_metrics() if row.get("step", 0) <= step])

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint.

        The Trainer writes trainer_state.json last, so a folder without it was cut off mid-save
        (a crash or kill); resuming from it would fail or load half-written weights.
        """
        steps = {}
        folder = self.checkpoints_dir
        for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
            step = path.name.removeprefix("checkpoint-")
            if step.isdigit() and (path / "trainer_state.json").is_file():
                steps[int(step)] = path
        return steps[max(steps)] if steps else None
