"""The training recipe, top to bottom: run directory → data → model → Trainer → adapter → summary.

``train(config)`` starts a run and ``resume(run_dir)`` continues one from its latest complete
checkpoint; both go through ``_run``, whose steps are short functions with the reasons beside them.
"""

from __future__ import annotations

import importlib.util
import os
import random
import resource
import time
from dataclasses import asdict

import torch

from ..config import RunConfig
from ..errors import EduloraError
from ..evaluation.retention import RetentionProbe, retention_records
from ..formatting import PromptFormat
from ..modeling import AdapterInfo, choose_dtype, device, load_base_model, save_adapter
from ..rundir import RunDir, RunSummary, is_main_process
from ..tutor import Tutor
from .callbacks import GracefulStop, out_of_space_is_a_user_error
from .continued import adapter_meta, base_settings, make_trainable, prompt_format, starting_adapter
from .data import Collator, ExampleDataset, answer_replay_with_base, encode, load_data
from .loop import (RunResult, kept_checkpoint, model_card, pedagogy_metrics, pedagogy_probe, train_between_evaluations,
                   trainer_callbacks)
from .memory import MemoryPlan, plan_memory
from .sizing import budget_line, memory_budget, sized
from .trainer import EduloraTrainer, training_arguments


def train(config: RunConfig, overwrite: bool = False) -> RunResult:
    """Train one adapter and write a complete run directory."""
    _check_launcher()  # refused before anything is written
    run_dir = RunDir.create(config.output_dir, config.run_name, overwrite)
    return _run(config, run_dir, checkpoint=None)  # which writes the config once it is complete


def resume(run_dir: str | os.PathLike) -> RunResult:
    """Continue a run from its latest complete checkpoint, with the config it was started with."""
    _check_launcher()
    run = RunDir.open(run_dir)
    checkpoint = run.resume_point()  # NothingToDo for a finished run; metrics past the checkpoint dropped
    if checkpoint is None:
        raise EduloraError(f"{run}: no checkpoint to resume from yet; start the run again with --overwrite")
    if is_main_process():
        print(f"edulora: resuming from {checkpoint.name} of {run}", flush=True)
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
        if "previous" in data.info:  # said at start: how much of what it trains on is not the new records
            p = data.info["previous"]
            print(f"edulora: {p['added']} of {len(data.train)} training examples are drawn from the data "
                  f"{p['adapter']} was trained on (data.previous_fraction={p['fraction']})", flush=True)

    # 2. Model: base in the precision this hardware suits; the prompt format owns every prompt string.
    #    Continuing an adapter (model.adapter): its base and its format (continued.py).
    start = starting_adapter(config)
    settings = base_settings(config, start)
    model, tokenizer, base_path = load_base_model(settings, for_training=True)
    config = sized(config, model, continuing=start is not None)  # the size class's recipe for keys left unset
    if is_main_process():
        run_dir.write_config(config)  # as the run uses it: resuming reads it back
    model.config.use_cache = False  # packed rows stay isolated only without a KV cache
    fmt = prompt_format(config, tokenizer, start)
    if data.replay and config.data.replay_responses == "base":  # before the adapter: the base's own replies
        base = Tutor(model, tokenizer, fmt, AdapterInfo(base_model=settings.name))
        answered = answer_replay_with_base(data, base)
        if is_main_process():
            print(f"edulora: replay trains on the base model's own replies to {answered} general prompt(s)", flush=True)
    train_examples, train_stats = encode(data.train, fmt, config.data.max_length)
    eval_examples, eval_stats = encode(data.eval, fmt, config.data.max_length)
    data.info.update({"template": fmt.template, "answer_key": fmt.answer_key, "train_tokens": train_stats,
                      "eval_tokens": eval_stats, "start_adapter": config.model.adapter or None})
    if is_main_process():
        run_dir.write_data_info(data.info)
    if train_stats["truncated"]:
        print(f"warning: {train_stats['truncated']} training example(s) longer than data.max_length="
              f"{config.data.max_length} were cut from the left (their replies kept)", flush=True)
    model = make_trainable(model, config, start)
    # The family's own module names (Phi-3's fused qkv_proj for q/k/v) and what they cost, said at start.
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora = model.peft_config["default"]
    print(f"edulora: {f'continuing {config.model.adapter}: ' if start else ''}LoRA r={lora.r} on "
          f"{', '.join(sorted(lora.target_modules))}: {trainable:,} trainable parameters "
          f"({100 * trainable / sum(p.numel() for p in model.parameters()):.2f}% of the model)", flush=True)
    dtype = choose_dtype(config.model.precision)
    probe = pedagogy_probe(config, data.eval, fmt)
    memory = _memory_plan(config, model, train_examples, train_stats)
    # The training network seen as a tutor: its adapter on, or off for the base the drift is measured from.
    learner = Tutor(model, tokenizer, fmt, AdapterInfo(base_model=settings.name), run_dir.name, adapter="default")
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
            callbacks=trainer_callbacks(config, run_dir, stop),
            response_only_head=config.training.response_only_head,
            probe=probe,
            select_by=config.training.selection.select_by,
            retention=(retention, learner) if retention else None,
            max_drift=config.training.selection.max_drift,
            memory=memory,
        )

        # 4. Train, measuring the held-out loss (and pedagogy) before and after.
        previous, output, train_seconds, after = train_between_evaluations(trainer, run_dir, stop, checkpoint,
                                                                           config.training.selection.keep_best, "sft")
        selected_step, selection = kept_checkpoint(trainer, config)
        drift = asdict(retention.measure(learner)) if retention else {}

        # 5. Save the adapter with what PEFT cannot hold, then the summary last (its presence means "done").
        pedagogy = {"before": previous.pedagogy.get("before", {}), "after": pedagogy_metrics(after)}
        info = AdapterInfo(base_model=start.info.base_model if start else config.model.name,
                           **adapter_meta(config, start), template=fmt.template,
                           system_prompt=fmt.system_prompt, answer_key=fmt.answer_key,
                           data_fingerprint=data.info["train_fingerprint"], eval_loss=after["eval_loss"],
                           select_by=config.training.selection.select_by, pedagogy=pedagogy)
        # Under FSDP each process holds a shard: gathering is collective, so every rank takes part.
        full_state = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
        if trainer.is_world_process_zero():
            save_adapter(trainer.model, tokenizer, run_dir.adapter_dir, info,
                         model_card(config, info, previous.eval_loss_before, after["eval_loss"], selection, drift, lora),
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
            dtype=str(dtype).removeprefix("torch."), base_model=info.base_model, base_model_path=base_path,
            template=fmt.template, trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
            resumed_from=checkpoint, select_by=config.training.selection.select_by, selected_step=selected_step,
            selection=selection, pedagogy=pedagogy, retention=drift,
            memory={**memory.to_dict(), **trainer.micro_batches,
                    "attention": getattr(model.config, "_attn_implementation", None)})
        if trainer.is_world_process_zero():
            run_dir.write_summary(summary)
        tutor = Tutor(trainer.model, tokenizer, fmt, info, name=run_dir.name, source=str(run_dir), adapter="default")
        return RunResult(run_dir, summary, tutor)


def _memory_plan(config: RunConfig, model, examples, stats: dict) -> MemoryPlan:
    """Recompute activations for the micro-batches that would not fit the memory budget."""
    t = config.training
    share = stats["trainable_tokens"] / max(stats["tokens"], 1) if t.response_only_head else 1.0
    budget, source = memory_budget(t.memory, device())
    plan = plan_memory(model, [len(e.input_ids) for e in examples], t.batch_size, config.data.pad_to_multiple_of,
                       share, budget, t.memory.gradient_checkpointing, len(config.lora.target_modules))
    if budget_line(budget, source) and is_main_process():
        print(budget_line(budget, source), flush=True)
    if plan.gradient_checkpointing and is_main_process():
        which = "for long micro-batches" if plan.per_micro_batch() else "on"
        print(f"edulora: activation checkpointing {which} ({plan.reason})", flush=True)
    return plan


def _retention_probe(config: RunConfig, fmt: PromptFormat) -> RetentionProbe | None:
    """General prompts (a fixed, seeded sample) whose drift from the base is logged at each evaluation."""
    t = config.training
    if t.selection.retention_sample <= 0:
        return None
    records = retention_records(config.data.retention_file)
    chosen = sorted(random.Random(config.data.split_seed).sample(range(len(records)), min(t.selection.retention_sample,
                                                                                          len(records))))
    return RetentionProbe([records[i] for i in chosen], fmt, t.selection.retention_max_new_tokens,
                          source=config.data.retention_file or "edulora retention.jsonl")


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
        if importlib.util.find_spec("deepspeed") is None:
            raise EduloraError("the DeepSpeed config needs the deepspeed package: pip install deepspeed")
