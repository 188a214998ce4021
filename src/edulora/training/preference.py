"""Preference tuning (``training.method=dpo`` or ``orpo``): TRL's DPOTrainer or ORPOTrainer on chosen/rejected pairs.

The same run as SFT, top to bottom — run directory, data, model, Trainer, adapter, summary — with
what differs kept here: pairs instead of records, a reference model, and the DPO loss (ORPO, which
needs no reference, swaps in its trainer from ``training.orpo``; everything else is shared). Pairs go
through ``PromptFormat`` (persona + teacher's key, the template the SFT adapter was trained
with), so the tutor is tuned on exactly the prompts it is asked in.

The reference model: when ``model.adapter`` names a trained adapter, it is loaded trainable and
TRL's DPOTrainer copies it into a frozen adapter named ``ref``, which scores the reference (TRL's
documented way to re-train an existing adapter). Without one, a new LoRA adapter is trained on the
base model, and its initial copy (B = 0: the base model's outputs) is the reference. ORPO trains
the same policy (a new adapter, or ``model.adapter`` continued) and keeps no ``ref``.
"""

from __future__ import annotations

import dataclasses
import resource
import time
import warnings
from collections import Counter

import torch
from trl import DPOConfig, DPOTrainer

from ..config import RunConfig
from ..data.pairs import PreferencePair, load_pairs, split_pairs
from ..data.split import fingerprint
from ..errors import EduloraError
from ..formatting import PromptFormat
from ..modeling import AdapterInfo, choose_dtype, device, load_base_model, quiet_checkpointing_alias, save_adapter
from ..rundir import RunDir, RunSummary, is_main_process
from ..tutor import Tutor
from .callbacks import GracefulStop, out_of_space_is_a_user_error
from .continued import adapter_meta, base_settings, make_trainable, prompt_format, starting_adapter
from .data import should_scrub
from .loop import (RunResult, kept_checkpoint, model_card, pedagogy_metrics, pedagogy_probe, train_between_evaluations,
                   trainer_callbacks)
from .memory import MemoryPlan, plan_memory
from .sizing import budget_line, memory_budget
from .trainer import PreferenceReporting, training_arguments

#: TRL's name for the frozen copy of the starting adapter (dropped before the adapter is saved).
REFERENCE = "ref"
#: DPO's own held-out measures, reported in the summary beside the loss.
PREFERENCE_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")
#: Tokens left beside prompt + reply for the BOS and EOS TRL adds when the texts lack them.
SPECIAL_TOKENS = 2


class PreferenceTrainer(PreferenceReporting, DPOTrainer):
    """TRL's DPOTrainer plus what an edulora run reports (see ``PreferenceReporting``)."""


def run_preference(config: RunConfig, run_dir: RunDir, checkpoint: str | None) -> RunResult:
    """One DPO or ORPO run into ``run_dir`` (resumed from ``checkpoint`` when given); see ``training.recipe._run``."""
    from datasets import Dataset

    started = time.perf_counter()
    if is_main_process() and checkpoint is None:
        run_dir.write_config(config)  # complete as given: nothing here is sized from the model (a resume reads it)
    t = config.training
    orpo = _orpo() if t.method == "orpo" else None  # a TRL without ORPO is a config error before any work
    # 1. Data: pairs, split by conversation; the held-out conversations (with their chosen reply) are
    #    kept as the run's eval.jsonl, so `edulora eval RUN` and the pedagogy probe use them.
    train_pairs, held_out, info = load_pair_data(config)
    if is_main_process():
        run_dir.write_eval_records([p.as_record() for p in held_out])

    # 2. Model: the starting adapter (DPO: also frozen as the reference), or a new adapter.
    model, tokenizer, base_path, start = _policy(config)
    fmt = prompt_format(config, tokenizer, start)
    train_rows, eval_rows = _rows(train_pairs, fmt), _rows(held_out, fmt)
    train_rows, eval_rows = (keep_prompt_ends(r, tokenizer, config.data.max_length) for r in (train_rows, eval_rows))
    info.update({"method": t.method, "template": fmt.template, "answer_key": fmt.answer_key,
                 "start_adapter": config.model.adapter or None})
    if is_main_process():
        run_dir.write_data_info(info)
    dtype = choose_dtype(config.model.precision)
    probe = pedagogy_probe(config, [p.as_record() for p in held_out], fmt)
    memory = pair_memory_plan(config, model, tokenizer, train_rows)

    with out_of_space_is_a_user_error(run_dir):
        # 3. Trainer: the SFT run's arguments plus the method's own; TRL tokenizes the rendered texts.
        stop = GracefulStop()
        if orpo:
            trainer_class, args = orpo.OddsRatioTrainer, training_arguments(
                config, run_dir, dtype, orpo.ORPOConfig, memory.gradient_checkpointing, train_sampling_strategy="random",
                **orpo.orpo_arguments(config), **micro_batch_arguments(config, memory))
        else:
            trainer_class, args = PreferenceTrainer, training_arguments(
                config, run_dir, dtype, DPOConfig, memory.gradient_checkpointing, beta=t.preference.beta, loss_type=[t.preference.loss_type],
                max_length=config.data.max_length,
                # keep_prompt_ends already cut prompts to fit; TRL's keep_start can only cut the end of a reply
                # longer than half of max_length.
                truncation_mode="keep_start",
                train_sampling_strategy="random", remove_unused_columns=True,
                pad_to_multiple_of=config.data.pad_to_multiple_of, precompute_ref_log_probs=False,
                dataset_num_proc=None, **micro_batch_arguments(config, memory))
        trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_dict(train_rows),
                                eval_dataset=Dataset.from_dict(eval_rows), processing_class=tokenizer,
                                callbacks=trainer_callbacks(config, run_dir, stop), probe=probe, select_by=t.selection.select_by)

        # 4. Train, measuring the held-out DPO or ORPO loss (and pedagogy) before and after.
        with quiet_checkpointing_alias():  # TRL's DPO reference pass reads the deprecated alias on every step
            previous, output, train_seconds, after = train_between_evaluations(trainer, run_dir, stop, checkpoint,
                                                                               t.selection.keep_best, t.method)
        selected_step, selection = kept_checkpoint(trainer, config)

        # 5. The adapter alone (DPO's frozen reference is dropped), then the summary last.
        policy = trainer.model
        if REFERENCE in getattr(policy, "peft_config", {}):
            policy.delete_adapter(REFERENCE)
        pedagogy = {"before": previous.pedagogy.get("before", {}), "after": pedagogy_metrics(after)}
        names = PREFERENCE_METRICS + (orpo.ORPO_METRICS if orpo else ())
        preference = {name: after[f"eval_{name}"] for name in names if f"eval_{name}" in after}
        adapter = AdapterInfo(base_model=start.info.base_model if start else config.model.name,
                              **adapter_meta(config, start),
                              template=fmt.template, system_prompt=fmt.system_prompt, answer_key=fmt.answer_key,
                              data_fingerprint=info["train_fingerprint"], eval_loss=after["eval_loss"],
                              select_by=t.selection.select_by, pedagogy=pedagogy)
        if trainer.is_world_process_zero():
            card = model_card(config, adapter, previous.eval_loss_before, after["eval_loss"], selection,
                              peft_lora=policy.peft_config["default"])
            rows = orpo.orpo_card_rows(config) if orpo else _dpo_card_rows(config)
            save_adapter(policy, tokenizer, run_dir.adapter_dir, adapter, card + _card_section(rows, preference))
        before_loss = previous.eval_loss_before
        summary = RunSummary(
            status="done", method=t.method, eval_loss_before=before_loss, eval_loss_after=after["eval_loss"],
            eval_loss_drop=(before_loss - after["eval_loss"]) / before_loss if before_loss else None,
            train_loss=output.training_loss, optimizer_steps=trainer.state.global_step,
            train_examples=len(train_pairs), eval_examples=len(held_out),
            train_tokens_per_s=trainer.tokens_trained / train_seconds if train_seconds > 0 else None,
            train_seconds=train_seconds, eval_seconds=trainer.eval_seconds, wall_s=time.perf_counter() - started,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, device=device().type,
            dtype=str(dtype).removeprefix("torch."), base_model=adapter.base_model, base_model_path=base_path,
            template=fmt.template, trainable_parameters=sum(p.numel() for p in policy.parameters() if p.requires_grad),
            resumed_from=checkpoint, select_by=t.selection.select_by, selected_step=selected_step, selection=selection,
            pedagogy=pedagogy, preference=preference, memory=memory.to_dict())
        if trainer.is_world_process_zero():
            run_dir.write_summary(summary)
        tutor = Tutor(policy, tokenizer, fmt, adapter, name=run_dir.name, source=str(run_dir), adapter="default")
        return RunResult(run_dir, summary, tutor)


def pair_memory_plan(config: RunConfig, model, tokenizer, rows: dict[str, list[str]]) -> MemoryPlan:
    """How the run stays within ``training.memory.budget_gb``.

    A preference step runs chosen and rejected replies as one batch of twice the rows, each row
    prompt + reply cut to ``data.max_length``; its stored activations are what SFT's estimate counts
    (``training.memory``). The LM head differs: DPO's (TRL's chunked log-probability kernel) scores
    every position in fp32 tiles, ORPO's materialises the whole logits. TRL forwards the concatenated
    batch in one call, so instead of SFT's per-micro-batch switch the plan may make the micro-batch
    smaller (gradient accumulation keeps the pairs per optimizer step): for DPO before recomputing
    activations, since its loss is a mean over pairs and comes out the same; for ORPO only after, since
    its NLL part is a mean over tokens, which smaller micro-batches would weight differently.
    """
    t = config.training

    def counts(texts: list[str]) -> list[int]:  # one batched call: the fast tokenizer splits the work
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    asked = counts(rows["prompt"])
    answered = [n for pair in zip(counts(rows["chosen"]), counts(rows["rejected"])) for n in pair]
    lengths = [min(asked[i // 2] + n, config.data.max_length) for i, n in enumerate(answered)]
    share = sum(min(n, length) for n, length in zip(answered, lengths)) / max(sum(lengths), 1)
    budget, source = memory_budget(t.memory, device())
    if budget_line(budget, source) and is_main_process():
        print(budget_line(budget, source), flush=True)
    plan = plan_memory(model, lengths, t.batch_size, config.data.pad_to_multiple_of, share, budget,
                       t.memory.gradient_checkpointing, len(config.lora.target_modules), per_batch=False,
                       head="full" if t.method == "orpo" else "chunked", rows_per_example=2,
                       split="last" if t.method == "orpo" else "first")
    if (plan.gradient_checkpointing or plan.micro_batch_size) and is_main_process():
        print(f"edulora: memory budget: {plan.reason}", flush=True)
    return plan


def micro_batch_arguments(config: RunConfig, plan: MemoryPlan) -> dict:
    """Trainer arguments for the plan's smaller micro-batch, with the optimizer step unchanged."""
    t = config.training
    if not plan.micro_batch_size:
        return {}
    # Evaluation forwards the same micro-batches (without stored activations, but through the same LM head).
    return {"per_device_train_batch_size": plan.micro_batch_size, "per_device_eval_batch_size": plan.micro_batch_size,
            "gradient_accumulation_steps": t.grad_accum * (t.batch_size // plan.micro_batch_size)}


def load_pair_data(config: RunConfig) -> tuple[list[PreferencePair], list[PreferencePair], dict]:
    """Pairs from ``data.train_file`` (and ``data.eval_file``, else a split by conversation), scrubbed."""
    d = config.data
    if not d.train_file:
        raise EduloraError("config: data.train_file is not set (e.g. --set data.train_file=pairs.jsonl)")
    pairs = load_pairs(d.train_file)
    train, held_out = (pairs, load_pairs(d.eval_file)) if d.eval_file else split_pairs(pairs, d.eval_fraction,
                                                                                        d.split_seed)
    if not held_out:
        raise EduloraError("no held-out pairs: set data.eval_file or a positive data.eval_fraction")
    info: dict = {"train_file": d.train_file, "eval_file": d.eval_file or None}
    if should_scrub(d.scrub_pii):
        train, counts = scrub_pairs(train)
        held_out, eval_counts = scrub_pairs(held_out)
        info["pii_scrubbed"] = {"train": counts, "eval": eval_counts}  # counts only, never the values
    info.update({"train_pairs": len(train), "eval_pairs": len(held_out), "train_fingerprint": fingerprint(train),
                 "eval_fingerprint": fingerprint(held_out)})
    return train, held_out, info


def scrub_pairs(pairs: list[PreferencePair]) -> tuple[list[PreferencePair], dict[str, int]]:
    """Students' personal details replaced in every turn and both replies; counts per kind."""
    from ..data.privacy import Scrubber, intro_names

    scrubber, counts, out = Scrubber(), Counter(), []
    for pair in pairs:
        names = [n for m in pair.prompt for n in intro_names(m["content"])]

        def clean(text: str) -> str:
            text, found = scrubber.scrub_text(text, names)
            counts.update(found)
            return text

        out.append(dataclasses.replace(pair, prompt=[{**m, "content": clean(m["content"])} for m in pair.prompt],
                                       chosen=clean(pair.chosen), rejected=clean(pair.rejected)))
    return out, dict(counts)


def _policy(config: RunConfig):
    """(model, tokenizer, base path, starting adapter or None), the model ready for DPO's or ORPO's trainer."""
    start = starting_adapter(config)
    model, tokenizer, path = load_base_model(base_settings(config, start), for_training=True)
    return make_trainable(model, config, start), tokenizer, path, start


def _rows(pairs: list[PreferencePair], fmt: PromptFormat) -> dict[str, list[str]]:
    """Rendered prompts and completions: TRL's standard (non-chat) format, so PromptFormat owns every string."""
    prompts = [fmt.with_persona(p.prompt, p.metadata) for p in pairs]
    return {"prompt": [fmt.render(m) for m in prompts],
            "chosen": [fmt.completion(m, p.chosen) for m, p in zip(prompts, pairs)],
            "rejected": [fmt.completion(m, p.rejected) for m, p in zip(prompts, pairs)]}


def keep_prompt_ends(rows: dict[str, list[str]], tokenizer, max_length: int) -> dict[str, list[str]]:
    """Each rendered prompt cut to its last tokens so that prompt + the longer reply fit ``max_length``.

    TRL's DPO and ORPO tokenizers keep a prompt whole and cut the reply's end instead (DPO's other
    mode, ``keep_end``, is deprecated), and a prompt longer than ``max_length`` leaves no reply to
    score. Here, as in SFT, a long conversation loses its oldest tokens and never the reply (unless
    the reply alone takes over half of ``max_length``: then the prompt keeps half and the reply's end goes).
    The cut is at a token boundary (the fast tokenizer's offsets), so TRL re-tokenizes the same tokens.
    """
    prompts = []
    for prompt, chosen, rejected in zip(rows["prompt"], rows["chosen"], rows["rejected"]):
        reply = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in (chosen, rejected))
        room = max(max_length - reply - SPECIAL_TOKENS, max_length // 2)
        offsets = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        prompts.append(prompt if len(offsets) <= room else prompt[offsets[-room][0]:])
    return {**rows, "prompt": prompts}


def _orpo():
    """``training.orpo`` (TRL's ORPOTrainer), or a one-line config error when the installed TRL lacks it."""
    import trl

    try:
        with warnings.catch_warnings():
            # Importing trl.experimental warns, on every run and in every process, that its API may change.
            # The user chose ORPO by name and docs/preference.md says where it lives; the notice would add
            # nothing but noise. The filter is scoped to this import: nothing global (such as TRL's
            # TRL_EXPERIMENTAL_SILENCE variable, which child processes would inherit) is changed.
            warnings.filterwarnings("ignore", message=".*trl.experimental")
            from . import orpo
    except ImportError as error:
        raise EduloraError(f"config: training.method=orpo needs trl.experimental.orpo, which the installed TRL "
                           f"{trl.__version__} lacks ({error}); use training.method=dpo") from None
    return orpo


def _dpo_card_rows(config: RunConfig) -> list[tuple[str, str]]:
    t = config.training
    return [("Method", f"DPO (TRL), loss={t.preference.loss_type}, beta={t.preference.beta}"),
            ("Started from", config.model.adapter or "a new adapter on the base model (reference: the base)"),
            ("Eval loss above", "the DPO loss on held-out pairs (ln 2 = 0.693 when tuned = reference)")]


def _card_section(rows: list[tuple[str, str]], preference: dict[str, float]) -> str:
    rows = rows + [(f"Held-out {name}", f"{value:.4f}") for name, value in preference.items()]
    return "\n## Preference tuning\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
