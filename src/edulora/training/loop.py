"""The run steps SFT (``recipe.py``) and DPO / ORPO (``preference.py``) share, in one place both import.

Evaluating before and after training, the probe and callbacks the Trainer gets, which checkpoint was
kept and the model card: the two recipes differ in their data, model and loss, not in these.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..formatting import PromptFormat
from ..modeling import AdapterInfo
from ..rundir import RunDir, RunSummary
from ..tutor import Tutor
from .callbacks import GracefulStop, MetricsLog, ReleaseMemory
from .pedagogy import HIGHER_IS_BETTER, JUDGED, PedagogyProbe
from .trainer import EduloraTrainer


@dataclass
class RunResult:
    run_dir: RunDir
    summary: RunSummary
    #: The trained tutor, still in memory (the demo and notebooks ask it questions right away).
    tutor: Tutor


def train_between_evaluations(trainer, run_dir: RunDir, stop: GracefulStop, checkpoint: str | None,
                               keep_best: bool, method: str):
    """Evaluate before (once per run: a resumed run keeps its first measurement), train, evaluate
    after; shared by SFT, DPO and ORPO. Returns the summary holding the "before" numbers, the Trainer's
    output, training seconds without evaluations, and the final held-out metrics."""
    previous = run_dir.read_summary() or RunSummary()
    if previous.eval_loss_before is None:
        before = trainer.evaluate()
        previous = RunSummary(eval_loss_before=before["eval_loss"], pedagogy={"before": pedagogy_metrics(before)},
                              method=method)
        if trainer.is_world_process_zero():
            run_dir.write_summary(previous)
    train_started, eval_seconds = time.perf_counter(), trainer.eval_seconds
    with stop.installed():
        output = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - train_started - (trainer.eval_seconds - eval_seconds)
    if stop.requested is not None:
        print(f"edulora: checkpoint saved at step {trainer.state.global_step}; continue with: "
              f"edulora train --resume {run_dir}", file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    return previous, output, train_seconds, _final_evaluation(trainer, keep_best)


def pedagogy_probe(config: RunConfig, held_out, fmt: PromptFormat) -> PedagogyProbe | None:
    """Replies scored at each evaluation (a fixed, seeded sample, so evaluations compare like with like)."""
    t = config.training
    if t.selection.pedagogy_sample <= 0:
        return None
    return PedagogyProbe(held_out, fmt, t.selection.pedagogy_sample, t.selection.pedagogy_max_new_tokens, config.data.split_seed,
                         t.selection.select_by, t.selection.select_tolerance)


def trainer_callbacks(config: RunConfig, run_dir: RunDir, stop: GracefulStop) -> list:
    from transformers import EarlyStoppingCallback

    callbacks = [MetricsLog(run_dir), stop, ReleaseMemory.if_useful()]
    if config.training.selection.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.selection.early_stopping_patience))
    return [c for c in callbacks if c is not None]


def pedagogy_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The pedagogy measures among an evaluation's metrics, without the ``eval_`` prefix."""
    names = ("leak_rate", "incorrect_answer_rate", "question_rate", "style_adherence", *JUDGED)
    return {name: metrics[f"eval_{name}"] for name in names if f"eval_{name}" in metrics}


def _final_evaluation(trainer: EduloraTrainer, keep_best: bool) -> dict[str, float]:
    """Held-out metrics of the model training ended with, reusing the Trainer's end-of-training evaluation.

    The Trainer evaluates after the last step; evaluating again would cost a full pass over the
    held-out set. With ``keep_best`` the model is the best checkpoint's, which is the last step's
    only when that checkpoint won; otherwise the loaded model is evaluated afresh.
    """
    step = trainer.state.global_step
    best = trainer.state.best_model_checkpoint
    if (trainer.last_eval is not None and trainer.last_eval[0] == step
            and (not keep_best or (best and Path(best).name == f"checkpoint-{step}"))):
        return trainer.last_eval[1]
    return trainer.evaluate()


def kept_checkpoint(trainer: EduloraTrainer, config: RunConfig) -> tuple[int | None, str]:
    """Which checkpoint was kept, and why, in words for the summary and the model card."""
    best = trainer.state.best_model_checkpoint
    if not config.training.selection.keep_best or not best:
        return trainer.state.global_step, "the last step's weights (training.selection.keep_best is off)"
    step = int(Path(best).name.removeprefix("checkpoint-"))
    evaluations = sum(1 for row in trainer.state.log_history if "eval_loss" in row)
    t = config.training
    measure = t.selection.select_by.replace("_", " ")
    better = "highest" if HIGHER_IS_BETTER.get(t.selection.select_by) else "lowest"
    bound = f", among those within training.selection.max_drift={t.selection.max_drift}" if t.selection.max_drift else ""
    if t.selection.select_by == "eval_loss":
        return step, f"checkpoint-{step}: lowest eval loss of {evaluations} evaluations{bound}"
    if not t.selection.select_tolerance:
        return step, f"checkpoint-{step}: {better} {measure} of {evaluations} evaluations{bound}; ties broken by eval loss"
    replies = f"{t.selection.select_tolerance} repl{'y' if t.selection.select_tolerance == 1 else 'ies'}"
    return step, (f"checkpoint-{step}: lowest eval loss among the evaluations whose {measure} was within {replies} "
                  f"of the {better} (training.selection.select_tolerance), of {evaluations} evaluations{bound}")


def model_card(config: RunConfig, info: AdapterInfo, eval_before: float, eval_after: float, selection: str,
               drift: dict | None = None, peft_lora=None) -> str:
    """The adapter's README. ``peft_lora``: PEFT's config of the adapter as trained, whose shape the LoRA row
    shows (a continued adapter keeps its own, whatever ``lora.*`` says; targets as the family names them)."""
    lora, t = config.lora, config.training
    shape = (f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, targets={', '.join(lora.target_modules)}"
             if peft_lora is None else f"r={peft_lora.r}, alpha={peft_lora.lora_alpha}, dropout={peft_lora.lora_dropout}, "
             f"targets={', '.join(sorted(peft_lora.target_modules))}")
    rows = [("Base model", info.base_model), ("Subject", info.subject or "any"),
            ("Grade level", info.grade_level or "any"), ("Teaching style", info.teaching_style or "any"),
            ("Prompt template", info.template), ("Teacher's key in the prompt", "yes" if info.answer_key else "no"),
            ("Data fingerprint (SHA-256)", info.data_fingerprint),
            ("LoRA", shape),
            ("Training", f"epochs={t.epochs}, batch={t.batch_size}x{t.grad_accum}, lr={t.learning_rate}, "
                         f"scheduler={t.lr_scheduler}"),
            ("Eval loss (base → tuned)", f"{eval_before:.4f} → {eval_after:.4f}"),
            ("Checkpoint kept", f"{selection} (training.selection.select_by={t.selection.select_by})")]
    if config.model.adapter and t.method == "sft":  # DPO and ORPO say where they started in their own section
        rows.insert(1, ("Continued from", f"{config.model.adapter} (its base, prompt format and LoRA shape; "
                                          f"{config.data.previous_fraction:.0%} of examples from its data)"))
    after = (info.pedagogy or {}).get("after") or {}
    before = (info.pedagogy or {}).get("before") or {}
    for name in ("leak_rate", "incorrect_answer_rate", "question_rate", "style_adherence", *JUDGED):
        if name in after:
            was = f"{before[name]:.3f} → " if name in before else ""
            rows.append((f"{name.replace('_', ' ').capitalize()} (base → tuned, {t.selection.pedagogy_sample} held-out)",
                         f"{was}{after[name]:.3f}"))
    if drift:
        rows.append((f"Drift from the base on {drift['n']} general prompts (KL per token, 95% CI)",
                     f"{drift['drift']:.4f} [{drift['low']:.4f}, {drift['high']:.4f}]: {drift['reading']}"))
        rows.append(("Degenerate replies to those prompts (empty or looping)",
                     f"{drift['degenerate']['value']:.3f} of {drift['degenerate']['n']}"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (f"# edulora tutor adapter\n\n{info.description or 'A LoRA adapter trained with edulora.'}\n\n"
            f"| | |\n|---|---|\n{table}\n\n"
            "Load it with PEFT:\n\n```python\nfrom peft import PeftModel\n"
            "model = PeftModel.from_pretrained(base_model, 'path/to/adapter')\n```\n\n"
            "or with edulora: `edulora.Tutor.load('path/to/adapter')` / "
            "`edulora generate --adapter path/to/adapter \"your question\"`.\n")
