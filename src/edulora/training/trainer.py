"""Hugging Face's Trainer with our loss, our evaluation, and the guide's arguments on today's API."""

from __future__ import annotations

import importlib.util
import math
import os
import time
from typing import TYPE_CHECKING

import torch
from transformers import Trainer, TrainingArguments

from ..config import RunConfig
from ..losses import mean_token_loss, token_loss_sum
from ..modeling import device
from ..rundir import RunDir
from .memory import MemoryPlan
from .pedagogy import PedagogyProbe, badness, measured, selection_score, within_band

if TYPE_CHECKING:
    from ..evaluation.retention import RetentionProbe
    from ..tutor import Tutor

#: The Trainer's name for the metric that chooses checkpoints when it is not the loss alone.
SELECT_METRIC = "select"
#: Selection-score penalty of a checkpoint past ``training.selection.max_drift`` (scores are rates and losses, far below).
OUT_OF_BOUND = 1e3


class EduloraTrainer(Trainer):
    """HF Trainer with a token-weighted, tutor-text-only loss, an exact token-weighted eval loss, and
    (optionally) pedagogy rates of replies generated at each evaluation."""

    def __init__(self, *args, response_only_head: bool = True, probe: PedagogyProbe | None = None,
                 select_by: str = "eval_loss", retention: tuple[RetentionProbe, Tutor] | None = None,
                 max_drift: float = 0.0, memory: MemoryPlan | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_only_head = response_only_head
        self.probe = probe
        self.select_by = select_by
        #: The drift probe and the training model seen as a tutor (its adapter on or off), and the bound.
        self.retention = retention
        self.max_drift = max_drift
        #: Checkpointing switched per micro-batch by its size (``MemoryPlan.per_micro_batch``), else None.
        self.memory = memory if memory is not None and memory.per_micro_batch() else None
        self._checkpointing = False
        #: Micro-batches trained, and how many of them recomputed their activations (kept in the summary).
        self.micro_batches = {"micro_batches": 0, "checkpointed_micro_batches": 0}
        # Makes the Trainer count labelled tokens over all accumulated micro-batches (num_items_in_batch),
        # so each token weighs the same however examples were batched.
        self.model_accepts_loss_kwargs = True
        self.tokens_trained = 0
        self.eval_seconds = 0.0  # kept out of the training tokens/s
        #: (global step, metrics) of the latest evaluation of the held-out set.
        self.last_eval: tuple[int, dict[str, float]] | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.memory is not None:
            self._checkpoint(model, self.memory.checkpoints(inputs["input_ids"].numel()))
        self.micro_batches["micro_batches"] += 1
        self.micro_batches["checkpointed_micro_batches"] += int(self._checkpointing or self.args.activation_checkpointing)
        return super().training_step(model, inputs, num_items_in_batch)

    def _checkpoint(self, model, on: bool) -> None:
        """Recompute this micro-batch's activations or not, through the model's own switch."""
        if on == self._checkpointing:
            return
        network = self.accelerator.unwrap_model(model)
        if on:
            network.activation_checkpointing_enable({"use_reentrant": False})
            # Enabling also hooks the embeddings to require gradients, which non-reentrant checkpointing
            # does not need; removing the hook at once keeps switching back and forth from stacking hooks.
            network.disable_input_require_grads()
        else:
            network.activation_checkpointing_disable()
        self._checkpointing = on

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
        metrics = {f"{metric_key_prefix}_loss": loss, f"{metric_key_prefix}_perplexity": math.exp(min(loss, 50))}
        score = loss
        rates, drift = {}, None
        if self.probe is not None and eval_dataset is None:
            rates = self.probe.measure(self.model)
            metrics.update({f"{metric_key_prefix}_{name}": value for name, value in rates.items()})
        if self.retention is not None and eval_dataset is None:
            drift = self.retention[0].drift(self.retention[1])
            metrics[f"{metric_key_prefix}_drift"] = drift
        if rates and self.select_by != "eval_loss":
            score = pedagogy_score(self.state, self.probe.tolerance, self.select_by, rates, loss, drift,
                                   self.max_drift)
        if drift is not None:
            score = bounded_score(score, drift, self.max_drift)
            if past_bound(drift, self.max_drift) and self.is_world_process_zero():
                print(f"warning: step {self.state.global_step}: drift from the base {drift:.4f} exceeds "
                      f"training.selection.max_drift={self.max_drift}", flush=True)
        if eval_dataset is None and (self.select_by != "eval_loss" or self.max_drift):
            metrics[f"{metric_key_prefix}_{SELECT_METRIC}"] = score
        self.eval_seconds += time.perf_counter() - began
        if eval_dataset is None:
            self.last_eval = (self.state.global_step, metrics)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class PreferenceReporting:
    """What an edulora run reports, added to a TRL preference trainer (DPO's or ORPO's, listed before it
    in the bases): trained tokens, evaluation time, and the pedagogy rates of held-out replies at each
    evaluation (and checkpoint choice by them). TRL computes the loss and its own held-out metrics."""

    #: Attention masks in a preference batch: DPO's concatenated rows, or ORPO's chosen and rejected rows.
    MASKS = ("attention_mask", "chosen_attention_mask", "rejected_attention_mask")

    def __init__(self, *args, probe: PedagogyProbe | None = None, select_by: str = "eval_loss", **kwargs):
        super().__init__(*args, **kwargs)
        self.probe, self.select_by = probe, select_by
        self.tokens_trained = 0
        self.eval_seconds = 0.0
        self.last_eval: tuple[int, dict[str, float]] | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:  # real tokens: padding is masked out
            self.tokens_trained += sum(int(inputs[k].sum()) for k in self.MASKS if k in inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        began = time.perf_counter()
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.probe is not None and eval_dataset is None:
            rates = {f"{metric_key_prefix}_{k}": v for k, v in self.probe.measure(self.model).items()}
            if self.select_by != "eval_loss":
                plain = {k.removeprefix(f"{metric_key_prefix}_"): v for k, v in rates.items()}
                rates[f"{metric_key_prefix}_{SELECT_METRIC}"] = pedagogy_score(
                    self.state, self.probe.tolerance, self.select_by, plain, metrics[f"{metric_key_prefix}_loss"])
            metrics.update(rates)
            self.log(rates)
            if self.select_by != "eval_loss":  # early stopping reads the selection metric from this event
                self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self.eval_seconds += time.perf_counter() - began
        if eval_dataset is None:
            self.last_eval = (self.state.global_step, metrics)
        return metrics


def pedagogy_score(state, tolerance: float, select_by: str, rates: dict[str, float], loss: float,
                   drift: float | None = None, max_drift: float = 0.0) -> float:
    """This evaluation's selection score (``pedagogy.selection_score``, ``tolerance`` as a rate) against the
    evaluations before it in ``state.log_history`` (a resumed run's included); those past ``max_drift`` do
    not set the best.

    The Trainer keeps a checkpoint while no later score is lower. When this evaluation lowers the best
    measure so far, a kept checkpoint that is now further than the tolerance from it no longer qualifies,
    so its score is forgotten (``state.best_metric``, which the Trainer and early stopping compare with)
    and this evaluation, within the band by definition, replaces it.
    """
    key = f"eval_{select_by}"
    seen = {row["step"]: badness(select_by, row[key]) for row in state.log_history
            if key in row and not past_bound(row.get("eval_drift", 0.0), max_drift)}
    current = badness(select_by, measured(select_by, rates))
    counted = drift is None or not past_bound(drift, max_drift)
    best = min([*seen.values(), *([current] if counted else [])], default=math.inf)
    kept = seen.get(state.best_global_step)
    if kept is not None and not within_band(kept, best, tolerance):
        state.best_metric = None
    return selection_score(current, loss, best, tolerance)


def past_bound(drift: float, bound: float) -> bool:
    """Whether a drift from the base exceeds ``training.selection.max_drift`` (0: no bound)."""
    return bool(bound) and drift > bound


def bounded_score(score: float, drift: float, bound: float) -> float:
    """A checkpoint's selection score (lower wins) under ``training.selection.max_drift``: unchanged within the
    bound; past it, ``OUT_OF_BOUND + drift``, so any checkpoint within the bound wins over every one
    past it, and when all are past it the least drifting one is kept, whatever its other measures."""
    return OUT_OF_BOUND + drift if past_bound(drift, bound) else score


def planned_optimizer_steps(config: RunConfig, train_examples: int, processes: int = 1) -> int:
    """The optimizer steps training ``train_examples`` records will take, counted as the Trainer counts them:
    ``training.max_steps`` when set, else epochs × batches per epoch / ``grad_accum`` (each rounded up), so a
    schedule (e.g. how often to evaluate) can be fixed before training starts."""
    t = config.training
    if t.max_steps > 0:
        return t.max_steps
    batches = math.ceil(train_examples / (t.batch_size * processes))
    return math.ceil(t.epochs * max(math.ceil(batches / t.grad_accum), 1))


def training_arguments(config: RunConfig, run_dir: RunDir, dtype: torch.dtype, arguments=TrainingArguments,
                       gradient_checkpointing: bool = False, **changes) -> TrainingArguments:
    """The guide's arguments, mapped to today's transformers API; ``arguments`` may be a subclass
    (TRL's ``DPOConfig``) and ``changes`` its own settings or overrides, so every method shares one recipe."""
    t = config.training
    on_cuda = device().type == "cuda"
    tensorboard = has_tensorboard()
    if tensorboard:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir.tensorboard_dir)  # transformers 5 has no logging_dir
    settings = dict(
        output_dir=str(run_dir.checkpoints_dir),
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
        load_best_model_at_end=t.selection.keep_best,
        metric_for_best_model=("eval_loss" if t.selection.select_by == "eval_loss" and not t.selection.max_drift
                               else f"eval_{SELECT_METRIC}"),
        greater_is_better=False,
        neftune_noise_alpha=t.neftune_noise_alpha or None,
        # Non-reentrant checkpointing needs no gradient on the (frozen) inputs and keeps dropout's RNG.
        activation_checkpointing=gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
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
    return arguments(**{**settings, **changes})


def has_tensorboard() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None
