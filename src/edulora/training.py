"""Train a LoRA tutor: data → model → Trainer → adapter, in that order, top to bottom.

``train()`` is the whole recipe; each step is a short function. The Trainer is Hugging Face's,
with two changes that matter for speed and correctness: rows are packed (no padding compute),
and the loss is a token-weighted sum over tutor text only, so gradient accumulation gives the
same result however examples fall into batches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from .config import RunConfig, config_from_dict, dump_config
from .data.formats import load_records
from .data.io import atomic_write_text, write_records
from .data.schema import Dialogue, Record
from .data.split import fingerprint, split_records
from .errors import OUT_OF_SPACE, EduloraError
from .formatting import EncodedExample, collate_examples, encode_record, resolve_template
from .losses import token_loss_sum
from .modeling import AdapterInfo, attach_lora, choose_dtype, device, load_base_model, save_adapter

CONFIG_FILE = "config.yaml"


@dataclass
class DataSplit:
    train: list[Record]
    eval: list[Record]
    info: dict = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    model: object = None  # the trained PeftModel, kept in memory for callers such as the demo
    tokenizer: object = None
    template: str = "chat"


# ---------------------------------------------------------------- run directory


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a distributed one.

    Read from the launcher's environment (torchrun, accelerate, deepspeed all set RANK) because
    the run directory is prepared before the Trainer initializes torch.distributed.
    """
    return int(os.environ.get("RANK", "0")) == 0


def new_run_dir(config: RunConfig, overwrite: bool = False) -> Path:
    name = config.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.output_dir).expanduser() / name
    if not is_main_process():
        return run_dir  # rank 0 checks and creates it; here it may already hold rank 0's files
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise EduloraError(f"{run_dir}: run directory exists and is not empty; pass --overwrite to replace it "
                               "or --resume to continue it")
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EduloraError(f"{run_dir}: cannot create run directory ({err.strerror})") from None
    if not os.access(run_dir, os.W_OK):
        raise EduloraError(f"{run_dir}: run directory is not writable")
    return run_dir


def resume_config(run_dir: Path) -> RunConfig:
    """The config a run was started with; resuming with other settings would mix two recipes."""
    import yaml

    snapshot = run_dir / CONFIG_FILE
    if not snapshot.exists():
        raise EduloraError(f"{run_dir}: not a run directory (no {CONFIG_FILE}); nothing to resume")
    return config_from_dict(yaml.safe_load(snapshot.read_text(encoding="utf-8")), str(snapshot))


def latest_checkpoint(run_dir: Path) -> str | None:
    """The newest complete checkpoint.

    The Trainer writes trainer_state.json last, so a folder without it was cut off mid-save
    (a crash or kill); resuming from it would fail or load half-written weights.
    """
    folder = run_dir / "checkpoints"
    steps = {}
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            steps[int(step)] = path
    return str(steps[max(steps)]) if steps else None


# ---------------------------------------------------------------- data


def load_data(config: RunConfig) -> DataSplit:
    """Read (any supported format), split, scrub and balance the data; the fingerprints let two
    runs prove they saw the same data."""
    if not config.data.train_file:
        raise EduloraError("config: data.train_file is not set (e.g. --set data.train_file=train.jsonl)")
    records = load_records(config.data.train_file)
    if config.data.eval_file:
        train, held_out = records, load_records(config.data.eval_file)
    else:
        train, held_out = split_records(records, config.data.eval_fraction, config.data.split_seed)
    info: dict = {"train_file": config.data.train_file, "eval_file": config.data.eval_file or None}
    if should_scrub(config.data.scrub_pii, train + held_out):
        from .data.privacy import scrub_records

        train, report = scrub_records(train)
        held_out, eval_report = scrub_records(held_out)
        # Counts only: the original values must never reach a log or a run directory.
        info["pii_scrubbed"] = {"train": report.to_dict()["counts"], "eval": eval_report.to_dict()["counts"]}
    if config.data.balance_floor > 0:
        from .data.balance import balance_records

        before = len(train)
        train = balance_records(train, config.data.balance_floor, config.data.split_seed)
        info["balanced"] = {"floor": config.data.balance_floor, "added_copies": len(train) - before}
    info.update({"train_records": len(train), "eval_records": len(held_out),
                 "train_fingerprint": fingerprint(train), "eval_fingerprint": fingerprint(held_out)})
    return DataSplit(train, held_out, info)


def should_scrub(setting: str, records: list[Record]) -> bool:
    """``auto`` scrubs dialogue data (real student turns), not authored single-turn examples."""
    if setting == "auto":
        return any(isinstance(r, Dialogue) for r in records)
    return setting == "true"


def encode(records: list[Record], tokenizer, template: str, config: RunConfig) -> tuple[list[EncodedExample], dict]:
    encoded = [encode_record(r, tokenizer, template, config.data.max_length, config.data.system_prompt) for r in records]
    stats = {"examples": len(encoded), "tokens": sum(len(e.input_ids) for e in encoded),
             "trainable_tokens": sum(e.trainable_tokens for e in encoded),
             "truncated": sum(e.truncated for e in encoded)}
    if encoded and stats["trainable_tokens"] == 0:
        raise EduloraError("every label is masked: no tutor text is left to learn from (is max_length too small?)")
    return encoded, stats


class ExampleDataset(torch.utils.data.Dataset):
    """Encoded examples as dicts, the shape the Trainer's length-grouped sampler reads."""

    def __init__(self, examples: list[EncodedExample]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}


def make_collator(pad_token_id: int, packing: bool, pad_to_multiple_of: int = 1):
    def collate(items: list[dict]) -> dict:
        return collate_examples([EncodedExample(i["input_ids"], i["labels"]) for i in items], pad_token_id, packing,
                                pad_to_multiple_of)

    return collate


# ---------------------------------------------------------------- trainer


def _trainer_class():
    from transformers import Trainer

    class EduloraTrainer(Trainer):
        """HF Trainer with a token-weighted, tutor-text-only loss and an exact token-weighted eval loss."""

        def __init__(self, *args, response_only_head: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.response_only_head = response_only_head
            # Makes the Trainer count labelled tokens over all accumulated micro-batches (num_items_in_batch),
            # so each token weighs the same however examples were batched.
            self.model_accepts_loss_kwargs = True
            self.tokens_trained = 0
            self.eval_seconds = 0.0  # kept out of the training tokens/s
            self.last_eval: tuple[int, float] | None = None  # (global step, held-out loss)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss_sum, count = token_loss_sum(model, inputs, self.response_only_head)
            if model.training:
                self.tokens_trained += int(inputs["real_tokens"])
            denominator = num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1)
            loss = loss_sum / denominator
            if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count was global
            return (loss, None) if return_outputs else loss

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            began = time.perf_counter()
            loss = mean_token_loss(self.model, self.get_eval_dataloader(eval_dataset), self.response_only_head,
                                   self.accelerator)
            self.eval_seconds += time.perf_counter() - began
            if eval_dataset is None:
                self.last_eval = (self.state.global_step, loss)
            metrics = {f"{metric_key_prefix}_loss": loss, f"{metric_key_prefix}_perplexity": math.exp(min(loss, 50))}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return EduloraTrainer


@torch.no_grad()
def mean_token_loss(model, batches, response_only_head: bool = True, accelerator=None) -> float:
    """Cross-entropy per tutor token over a whole data set (not a mean of batch means)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=next(model.parameters()).device)
    for batch in batches:
        batch = {k: v.to(total.device) for k, v in batch.items() if torch.is_tensor(v)}
        loss_sum, count = token_loss_sum(model, batch, response_only_head)
        total += torch.stack([loss_sum.double(), count.double()])
    if accelerator is not None and accelerator.num_processes > 1:
        total = accelerator.reduce(total, reduction="sum")
    model.train(was_training)
    return float(total[0] / total[1].clamp(min=1))


def _metrics_logger(path: Path):
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        """Appends every logged dict to metrics.jsonl (main process only)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    return MetricsLog()


def _graceful_stop():
    """On SIGINT / SIGTERM, finish the current optimizer step, save a checkpoint and stop.

    The HF Trainer saves nothing on Ctrl-C or on a scheduler's SIGTERM (preemption), losing up to
    ``save_steps`` of work. A second signal aborts at once.
    """
    import contextlib
    import threading

    from transformers import TrainerCallback

    class GracefulStop(TrainerCallback):
        def __init__(self):
            self.requested: int | None = None

        def _handle(self, signum, frame):
            if self.requested is not None:
                raise KeyboardInterrupt
            self.requested = signum
            print(f"edulora: {signal.Signals(signum).name}: saving a checkpoint after this step "
                  "(send it again to abort)", file=sys.stderr, flush=True)

        @contextlib.contextmanager
        def installed(self):
            """Handlers only while training, restored even when training fails (signals need the main thread)."""
            if threading.current_thread() is not threading.main_thread():
                yield self
                return
            previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield self
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def on_step_end(self, args, state, control, **kwargs):
            if args.world_size > 1 and torch.distributed.is_initialized():
                # A signal may reach only some processes; stopping alone would hang the others' next all-reduce.
                flag = torch.tensor([float(self.requested is not None)], device=args.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                if flag.item() and self.requested is None:
                    self.requested = signal.SIGTERM
            if self.requested is not None:
                control.should_save = True
                control.should_training_stop = True

    return GracefulStop()


def _release_freed_memory():
    """Hand freed heap memory back to the OS after each evaluation.

    Evaluation allocates batches of other shapes than training, and glibc keeps the freed blocks
    in fragmented arenas, so a CPU run's resident memory creeps up. ``malloc_trim`` returns them.
    Not after every optimizer step: the next step then page-faults all its activations back in,
    which cost 15% of the training speed (see docs/benchmarks.md). None where the C library has no
    ``malloc_trim`` (macOS, musl) or on GPUs, whose memory it is not.
    """
    import ctypes
    import ctypes.util

    from transformers import TrainerCallback

    if device().type != "cpu":
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None

    class ReleaseMemory(TrainerCallback):
        def on_evaluate(self, args, state, control, **kwargs):
            trim(0)

    return ReleaseMemory()


def training_arguments(config: RunConfig, run_dir: Path, dtype: torch.dtype):
    """The guide's arguments, mapped to today's transformers API."""
    from transformers import TrainingArguments

    t = config.training
    on_cuda = device().type == "cuda"
    tensorboard = _has_tensorboard()
    if tensorboard:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")  # transformers 5 has no logging_dir
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is read as a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=t.keep_best,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        neftune_noise_alpha=t.neftune_noise_alpha or None,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        # Weights are already loaded in the chosen dtype; autocast is needed only for CUDA fp16/bf16.
        bf16=on_cuda and dtype == torch.bfloat16,
        fp16=on_cuda and dtype == torch.float16,
        use_cpu=not on_cuda,
        report_to=["tensorboard"] if tensorboard else [],
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        seed=t.seed,
        data_seed=t.seed,
        save_only_model=False,
        disable_tqdm=False,
    )


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


# ---------------------------------------------------------------- the recipe


def train(config: RunConfig | None, resume: str | Path | None = None, overwrite: bool = False) -> RunResult:
    """Train one adapter and write a complete run directory; returns its path and summary."""
    started = time.perf_counter()
    _check_launcher()
    # 1. Where the run lives: a new directory, or the one being resumed (with its own config).
    if resume is not None:
        run_dir = Path(resume).expanduser()
        config = resume_config(run_dir)
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise EduloraError(f"{run_dir}: no checkpoint to resume from yet; start the run again with --overwrite")
    else:
        run_dir, checkpoint = new_run_dir(config, overwrite), None
        if is_main_process():
            atomic_write_text(run_dir / CONFIG_FILE, dump_config(config))

    # 2. Data: validated records, split, fingerprinted.
    data = load_data(config)
    if not data.eval:
        raise EduloraError("no evaluation records: set data.eval_file or a positive data.eval_fraction")
    if is_main_process():
        write_records(run_dir / "eval.jsonl", data.eval)

    # 3. Model: base in the precision this hardware suits, LoRA on top.
    model, tokenizer, base_path = load_base_model(config.model, for_training=True)
    model.config.use_cache = False  # packed rows stay isolated only without a KV cache
    template = resolve_template(config.data.template, tokenizer)
    train_examples, train_stats = encode(data.train, tokenizer, template, config)
    eval_examples, eval_stats = encode(data.eval, tokenizer, template, config)
    data.info.update({"template": template, "train_tokens": train_stats, "eval_tokens": eval_stats})
    if is_main_process():
        atomic_write_text(run_dir / "data.json", json.dumps(data.info, indent=2) + "\n")
    if train_stats["truncated"]:
        print(f"warning: {train_stats['truncated']} training example(s) longer than data.max_length="
              f"{config.data.max_length} were cut from the left (their replies kept)", flush=True)
    torch.manual_seed(config.training.seed)  # before attach_lora: the LoRA init is part of the recipe
    model = attach_lora(model, config.lora)
    dtype = choose_dtype(config.model.precision)

    with _out_of_space_is_a_user_error(run_dir):
        # 4. Trainer: the guide's arguments, our loss, metrics.jsonl + TensorBoard.
        stop = _graceful_stop()
        trainer = _trainer_class()(
            model=model,
            args=training_arguments(config, run_dir, dtype),
            train_dataset=ExampleDataset(train_examples),
            eval_dataset=ExampleDataset(eval_examples),
            data_collator=make_collator(tokenizer.pad_token_id, config.data.packing, config.data.pad_to_multiple_of),
            callbacks=[c for c in (_metrics_logger(run_dir / "metrics.jsonl"), stop, _release_freed_memory()) if c],
            response_only_head=config.training.response_only_head,
        )

        # 5. Train, measuring the held-out loss before and after.
        summary_path = run_dir / "summary.json"
        previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        eval_before = previous.get("eval_loss_before")
        if eval_before is None:
            eval_before = trainer.evaluate()["eval_loss"]
            if trainer.is_world_process_zero():
                atomic_write_text(summary_path, json.dumps({"eval_loss_before": eval_before, "status": "training"}) + "\n")
        train_started, eval_seconds = time.perf_counter(), trainer.eval_seconds
        with stop.installed():
            output = trainer.train(resume_from_checkpoint=checkpoint)
        train_seconds = time.perf_counter() - train_started - (trainer.eval_seconds - eval_seconds)
        if stop.requested is not None:
            print(f"edulora: checkpoint saved at step {trainer.state.global_step}; continue with: "
                  f"edulora train --resume {run_dir}", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        eval_after = _final_eval_loss(trainer, config.training.keep_best)

        # 6. Save the adapter with what PEFT cannot hold, then the summary last (its presence means "done").
        info = AdapterInfo(base_model=config.model.name, subject=config.adapter.subject,
                           grade_level=config.adapter.grade_level, teaching_style=config.adapter.teaching_style,
                           description=config.adapter.description, template=template,
                           system_prompt=config.data.system_prompt, data_fingerprint=data.info["train_fingerprint"],
                           eval_loss=eval_after)
        # Under FSDP each process holds a shard: gathering is collective, so every rank takes part.
        full_state = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
        if trainer.is_world_process_zero():
            save_adapter(trainer.model, tokenizer, run_dir / "adapter", info,
                         model_card(config, info, eval_before, eval_after), state_dict=full_state)
        summary = {
            "status": "done",
            "eval_loss_before": eval_before,
            "eval_loss_after": eval_after,
            "eval_loss_drop": (eval_before - eval_after) / eval_before if eval_before else None,
            "train_loss": output.training_loss,
            "optimizer_steps": trainer.state.global_step,
            "train_examples": len(data.train),
            "eval_examples": len(data.eval),
            "train_tokens_per_s": trainer.tokens_trained / train_seconds if train_seconds > 0 else None,
            "train_seconds": train_seconds,
            "eval_seconds": trainer.eval_seconds,
            "wall_s": time.perf_counter() - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "device": device().type,
            "dtype": str(dtype).removeprefix("torch."),
            "base_model": config.model.name,
            "base_model_path": base_path,
            "template": template,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "resumed_from": checkpoint,
        }
        if trainer.is_world_process_zero():
            atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
        return RunResult(run_dir, summary, trainer.model, tokenizer, template)


def _final_eval_loss(trainer, keep_best: bool) -> float:
    """Held-out loss of the model training ended with, reusing the Trainer's end-of-training evaluation.

    The Trainer evaluates after the last step; evaluating again would cost a full pass over the
    held-out set. With ``keep_best`` the model is the best checkpoint's, which is the last step's
    only when that checkpoint won; otherwise the loaded model is evaluated afresh.
    """
    step = trainer.state.global_step
    best = trainer.state.best_model_checkpoint
    if (trainer.last_eval is not None and trainer.last_eval[0] == step
            and (not keep_best or (best and Path(best).name == f"checkpoint-{step}"))):
        return trainer.last_eval[1]
    return trainer.evaluate()["eval_loss"]


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


@contextlib.contextmanager
def _out_of_space_is_a_user_error(run_dir: Path):
    """A full disk mid-run is the user's to fix, not a crash: say so, and how to continue.

    Checkpoints are complete only once their trainer_state.json exists, so the one being written
    when space ran out is skipped by ``--resume``; nothing earlier is lost.
    """
    try:
        yield
    except (OSError, RuntimeError) as err:
        if not _is_out_of_space(err, run_dir):
            raise
        where = getattr(err, "filename", None) or run_dir
        raise EduloraError(f"{where}: no space left on device; free some space, then continue with: "
                           f"edulora train --resume {run_dir}") from None


def _is_out_of_space(err: BaseException, run_dir: Path) -> bool:
    if isinstance(err, OSError) and err.errno in OUT_OF_SPACE:
        return True
    text = str(err)
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return True
    # torch.save reports only "file write failed"; a nearly empty disk tells what happened.
    if "write failed" in text:
        try:
            return shutil.disk_usage(run_dir).free < 64 * 2**20
        except OSError:
            return False
    return False


def model_card(config: RunConfig, info: AdapterInfo, eval_before: float, eval_after: float) -> str:
    lora, t = config.lora, config.training
    rows = [("Base model", info.base_model), ("Subject", info.subject or "any"),
            ("Grade level", info.grade_level or "any"), ("Teaching style", info.teaching_style or "any"),
            ("Prompt template", info.template), ("Data fingerprint (SHA-256)", info.data_fingerprint),
            ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, targets={', '.join(lora.target_modules)}"),
            ("Training", f"epochs={t.epochs}, batch={t.batch_size}x{t.grad_accum}, lr={t.learning_rate}, "
                         f"scheduler={t.lr_scheduler}"),
            ("Eval loss (base → tuned)", f"{eval_before:.4f} → {eval_after:.4f}")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (f"# edulora tutor adapter\n\n{info.description or 'A LoRA adapter trained with edulora.'}\n\n"
            f"| | |\n|---|---|\n{table}\n\n"
            "Load it with PEFT:\n\n```python\nfrom peft import PeftModel\n"
            "model = PeftModel.from_pretrained(base_model, 'path/to/adapter')\n```\n\n"
            "or with edulora: `edulora generate --adapter path/to/adapter \"your question\"`.\n")
