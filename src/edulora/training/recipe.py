"""The training recipe, top to bottom: run directory → data → model → Trainer → adapter → summary.

``train(config)`` starts a run and ``resume(run_dir)`` continues one from its latest complete
checkpoint; both go through ``_run``, whose steps are short functions with the reasons beside them.
"""

from __future__ import annotations

import os
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import EduloraError
from ..evaluation.retention import RetentionProbe, retention_records
from ..formatting import PromptFormat
from ..modeling import AdapterInfo, attach_lora, choose_dtype, device, load_base_model, save_adapter
from ..rundir import RunDir, RunSummary, is_main_process
from ..tutor import Tutor
from .callbacks import GracefulStop, MetricsLog, ReleaseMemory, out_of_space_is_a_user_error
from .data import Collator, ExampleDataset, answer_replay_with_base, encode, load_data
from .memory import MemoryPlan, plan_memory
from .pedagogy import PedagogyProbe
from .trainer import EduloraTrainer, training_arguments


@dataclass
class RunResult:
    run_dir: RunDir
    summary: RunSummary
    #: The trained tutor, still in memory (the demo and notebooks ask it questions right away).
    tutor: Tutor


def train(config: RunConfig, overwrite: bool = False) -> RunResult:
    """Train one adapter and write a complete run directory."""
    _check_launcher()  # refused before anything is written
    run_dir = RunDir.create(config.output_dir, config.run_name, overwrite)
    if is_main_process():
        run_dir.write_config(config)
    return _run(config, run_dir, checkpoint=None)


def resume(run_dir: str | os.PathLike) -> RunResult:
    """Continue a run from its latest complete checkpoint, with the config it was started with."""
    _check_launcher()
    run = RunDir.open(run_dir)
    checkpoint = run.latest_checkpoint()
    if checkpoint is None:
        raise EduloraError(f"{run}: no checkpoint to resume from yet; start the run again with --overwrite")
    return _run(run.read_config(), run, checkpoint=str(checkpoint))


def _run(config: RunConfig, run_dir: RunDir, checkpoint: str | None) -> RunResult:
    if config.training.method in ("dpo", "orpo"):  # preference pairs instead of records: same run, own module
        from .preference import run_preference

        return run_preference(config, run_dir, checkpoint)
    started = time.perf_counter()
    # 1. Data: validated records, split, fingerprinted; the held-out part is kept with the run.
    data = load_data(config)
    if not data.eval:
        raise EduloraError("no evaluation records: set data.eval_file or a positive data.eval_fraction")
    if is_main_process():
        run_dir.write_eval_records(data.eval)

    # 2. Model: base in the precision this hardware suits; the prompt format owns every prompt string.
    model, tokenizer, base_path = load_base_model(config.model, for_training=True)
    model.config.use_cache = False  # packed rows stay isolated only without a KV cache
    fmt = PromptFormat.create(tokenizer, config.data.template, config.data.system_prompt,
                              answer_key=config.data.answer_key == "auto")
    if data.replay and config.data.replay_responses == "base":  # before the adapter: the base's own replies
        base = Tutor(model, tokenizer, fmt, AdapterInfo(base_model=config.model.name))
        answered = answer_replay_with_base(data, base)
        if is_main_process():
            print(f"edulora: replay trains on the base model's own replies to {answered} general prompt(s)", flush=True)
    train_examples, train_stats = encode(data.train, fmt, config.data.max_length)
    eval_examples, eval_stats = encode(data.eval, fmt, config.data.max_length)
    data.info.update({"template": fmt.template, "answer_key": fmt.answer_key, "train_tokens": train_stats,
                      "eval_tokens": eval_stats})
    if is_main_process():
        run_dir.write_data_info(data.info)
    if train_stats["truncated"]:
        print(f"warning: {train_stats['truncated']} training example(s) longer than data.max_length="
              f"{config.data.max_length} were cut from the left (their replies kept)", flush=True)
    torch.manual_seed(config.training.seed)  # before attach_lora: the LoRA init is part of the recipe
    model = attach_lora(model, config.lora)
    dtype = choose_dtype(config.model.precision)
    probe = _pedagogy_probe(config, data.eval, fmt)
    memory = _memory_plan(config, model, train_examples, train_stats)
    # The training network seen as a tutor: its adapter on, or off for the base the drift is measured from.
    learner = Tutor(model, tokenizer, fmt, AdapterInfo(base_model=config.model.name), run_dir.name, adapter="default")
    retention = _retention_probe(config, fmt)

    with out_of_space_is_a_user_error(run_dir):
        # 3. Trainer: the guide's arguments, our loss and evaluation, metrics.jsonl + TensorBoard.
        stop = GracefulStop()
        trainer = EduloraTrainer(
            model=model,
            args=training_arguments(config, run_dir, dtype, gradient_checkpointing=memory.gradient_checkpointing
                                    and not memory.per_micro_batch()),
            train_dataset=ExampleDataset(train_examples),
            eval_dataset=ExampleDataset(eval_examples),
            data_collator=Collator(tokenizer.pad_token_id, config.data.packing, config.data.pad_to_multiple_of),
            callbacks=_callbacks(config, run_dir, stop),
            response_only_head=config.training.response_only_head,
            probe=probe,
            select_by=config.training.select_by,
            retention=(retention, learner) if retention else None,
            max_drift=config.training.max_drift,
            memory=memory,
        )

        # 4. Train, measuring the held-out loss (and pedagogy) before and after.
        previous, output, train_seconds, after = _train_between_evaluations(trainer, run_dir, stop, checkpoint,
                                                                            config.training.keep_best, "sft")
        selected_step, selection = _selection(trainer, config)
        drift = asdict(retention.measure(learner)) if retention else {}

        # 5. Save the adapter with what PEFT cannot hold, then the summary last (its presence means "done").
        pedagogy = {"before": previous.pedagogy.get("before", {}), "after": _rates(after)}
        info = AdapterInfo(base_model=config.model.name, subject=config.adapter.subject,
                           grade_level=config.adapter.grade_level, teaching_style=config.adapter.teaching_style,
                           description=config.adapter.description, template=fmt.template,
                           system_prompt=fmt.system_prompt, answer_key=fmt.answer_key,
                           data_fingerprint=data.info["train_fingerprint"], eval_loss=after["eval_loss"],
                           select_by=config.training.select_by, pedagogy=pedagogy)
        # Under FSDP each process holds a shard: gathering is collective, so every rank takes part.
        full_state = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
        if trainer.is_world_process_zero():
            save_adapter(trainer.model, tokenizer, run_dir.adapter_dir, info,
                         model_card(config, info, previous.eval_loss_before, after["eval_loss"], selection, drift),
                         state_dict=full_state)
        before_loss = previous.eval_loss_before
        summary = RunSummary(
            status="done", eval_loss_before=before_loss, eval_loss_after=after["eval_loss"],
            eval_loss_drop=(before_loss - after["eval_loss"]) / before_loss if before_loss else None,
            train_loss=output.training_loss, optimizer_steps=trainer.state.global_step,
            train_examples=len(data.train), eval_examples=len(data.eval),
            train_tokens_per_s=trainer.tokens_trained / train_seconds if train_seconds > 0 else None,
            train_seconds=train_seconds, eval_seconds=trainer.eval_seconds, wall_s=time.perf_counter() - started,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, device=device().type,
            dtype=str(dtype).removeprefix("torch."), base_model=config.model.name, base_model_path=base_path,
            template=fmt.template, trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
            resumed_from=checkpoint, select_by=config.training.select_by, selected_step=selected_step,
            selection=selection, pedagogy=pedagogy, retention=drift,
            memory={**memory.to_dict(), **trainer.micro_batches,
                    "attention": getattr(model.config, "_attn_implementation", None)})
        if trainer.is_world_process_zero():
            run_dir.write_summary(summary)
        tutor = Tutor(trainer.model, tokenizer, fmt, info, name=run_dir.name, source=str(run_dir), adapter="default")
        return RunResult(run_dir, summary, tutor)


def _train_between_evaluations(trainer, run_dir: RunDir, stop: GracefulStop, checkpoint: str | None,
                               keep_best: bool, method: str):
    """Evaluate before (once per run: a resumed run keeps its first measurement), train, evaluate
    after; shared by SFT, DPO and ORPO. Returns the summary holding the "before" numbers, the Trainer's
    output, training seconds without evaluations, and the final held-out metrics."""
    previous = run_dir.read_summary() or RunSummary()
    if previous.eval_loss_before is None:
        before = trainer.evaluate()
        previous = RunSummary(eval_loss_before=before["eval_loss"], pedagogy={"before": _rates(before)},
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


def _pedagogy_probe(config: RunConfig, held_out, fmt: PromptFormat) -> PedagogyProbe | None:
    """Replies scored at each evaluation (a fixed, seeded sample, so evaluations compare like with like)."""
    t = config.training
    if t.pedagogy_sample <= 0:
        return None
    return PedagogyProbe(held_out, fmt, t.pedagogy_sample, t.pedagogy_max_new_tokens, config.data.split_seed,
                         t.select_by, t.select_tolerance)


def _memory_plan(config: RunConfig, model, examples, stats: dict) -> MemoryPlan:
    """Recompute activations for the micro-batches that would not fit the memory budget."""
    t = config.training
    share = stats["trainable_tokens"] / max(stats["tokens"], 1) if t.response_only_head else 1.0
    plan = plan_memory(model, [len(e.input_ids) for e in examples], t.batch_size, config.data.pad_to_multiple_of,
                       share, t.memory_budget_gb, t.gradient_checkpointing, len(config.lora.target_modules))
    if plan.gradient_checkpointing and is_main_process():
        which = "for long micro-batches" if plan.per_micro_batch() else "on"
        print(f"edulora: activation checkpointing {which} ({plan.reason})", flush=True)
    return plan


def _retention_probe(config: RunConfig, fmt: PromptFormat) -> RetentionProbe | None:
    """General prompts (a fixed, seeded sample) whose drift from the base is logged at each evaluation."""
    t = config.training
    if t.retention_sample <= 0:
        return None
    records = retention_records(config.data.retention_file)
    chosen = sorted(random.Random(config.data.split_seed).sample(range(len(records)), min(t.retention_sample,
                                                                                          len(records))))
    return RetentionProbe([records[i] for i in chosen], fmt, t.retention_max_new_tokens,
                          source=config.data.retention_file or "edulora retention.jsonl")


def _callbacks(config: RunConfig, run_dir: RunDir, stop: GracefulStop) -> list:
    from transformers import EarlyStoppingCallback

    callbacks = [MetricsLog(run_dir), stop, ReleaseMemory.if_useful()]
    if config.training.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    return [c for c in callbacks if c is not None]


def _rates(metrics: dict[str, float]) -> dict[str, float]:
    """The pedagogy measures among an evaluation's metrics, without the ``eval_`` prefix."""
    names = ("leak_rate", "incorrect_answer_rate", "question_rate", "style_adherence")
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


def _selection(trainer: EduloraTrainer, config: RunConfig) -> tuple[int | None, str]:
    """Which checkpoint was kept, and why, in words for the summary and the model card."""
    best = trainer.state.best_model_checkpoint
    if not config.training.keep_best or not best:
        return trainer.state.global_step, "the last step's weights (training.keep_best is off)"
    step = int(Path(best).name.removeprefix("checkpoint-"))
    evaluations = sum(1 for row in trainer.state.log_history if "eval_loss" in row)
    t = config.training
    measure = t.select_by.replace("_", " ")
    better = "highest" if t.select_by == "style_adherence" else "lowest"
    bound = f", among those within training.max_drift={t.max_drift}" if t.max_drift else ""
    if t.select_by == "eval_loss":
        return step, f"checkpoint-{step}: lowest eval loss of {evaluations} evaluations{bound}"
    if not t.select_tolerance:
        return step, f"checkpoint-{step}: {better} {measure} of {evaluations} evaluations{bound}; ties broken by eval loss"
    replies = f"{t.select_tolerance} repl{'y' if t.select_tolerance == 1 else 'ies'}"
    return step, (f"checkpoint-{step}: lowest eval loss among the evaluations whose {measure} was within {replies} "
                  f"of the {better} (training.select_tolerance), of {evaluations} evaluations{bound}")


def _check_launcher() -> None:
    """FSDP and DeepSpeed come from ``accelerate launch --config_file``; Accelerate builds them only
    for GPUs (and DeepSpeed needs its package), so say that before a traceback from every rank."""
    sharded = [name for name, var in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
               if os.environ.get(var, "").lower() in ("1", "true", "yes")]
    if not sharded:
        return
    if not torch.cuda.is_available():
        raise EduloraError(f"{sharded[0]} runs on GPUs only (Accelerate has no CPU backend for it); on CPUs launch "
                           "with configs/accelerate/ddp.yaml, which trains the same adapter")
    if sharded[0] == "DeepSpeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise EduloraError("the DeepSpeed config needs the deepspeed package: pip install deepspeed")


def model_card(config: RunConfig, info: AdapterInfo, eval_before: float, eval_after: float, selection: str,
               drift: dict | None = None) -> str:
    lora, t = config.lora, config.training
    rows = [("Base model", info.base_model), ("Subject", info.subject or "any"),
            ("Grade level", info.grade_level or "any"), ("Teaching style", info.teaching_style or "any"),
            ("Prompt template", info.template), ("Teacher's key in the prompt", "yes" if info.answer_key else "no"),
            ("Data fingerprint (SHA-256)", info.data_fingerprint),
            ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, targets={', '.join(lora.target_modules)}"),
            ("Training", f"epochs={t.epochs}, batch={t.batch_size}x{t.grad_accum}, lr={t.learning_rate}, "
                         f"scheduler={t.lr_scheduler}"),
            ("Eval loss (base → tuned)", f"{eval_before:.4f} → {eval_after:.4f}"),
            ("Checkpoint kept", f"{selection} (training.select_by={t.select_by})")]
    after = (info.pedagogy or {}).get("after") or {}
    before = (info.pedagogy or {}).get("before") or {}
    for name in ("leak_rate", "incorrect_answer_rate", "question_rate", "style_adherence"):
        if name in after:
            was = f"{before[name]:.3f} → " if name in before else ""
            rows.append((f"{name.replace('_', ' ').capitalize()} (base → tuned, {t.pedagogy_sample} held-out)",
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
