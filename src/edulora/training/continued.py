"""Training an adapter further (``model.adapter``): what SFT (``recipe.py``) and DPO / ORPO (``preference.py``) share.

A continued adapter keeps what made it: its base model, its prompt format (template, persona, key
switch) and its LoRA shape; the config's ``model.name`` counts only when it names another copy of
that base, and ``lora.*`` does not apply. SFT on new records (a week of teachers' approved
corrections) also draws ``data.previous_fraction`` of its examples from the data the adapter was
trained on, so a few dozen corrections do not make it forget the rest (``previous_records``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import DEFAULT_MODEL, ModelConfig, RunConfig
from ..data.formats import load_records
from ..data.schema import Record
from ..errors import EduloraError
from ..formatting import PromptFormat
from ..modeling import AdapterInfo, adapter_dir, adapter_weights, attach_lora, quiet_checkpointing_alias, read_adapter_info
from ..rundir import RunDir


@dataclass
class StartingAdapter:
    """The trained adapter a run continues: where it is, and what its ``edulora.json`` says."""

    folder: Path
    info: AdapterInfo


def starting_adapter(config: RunConfig) -> StartingAdapter | None:
    """``model.adapter``'s folder and metadata, its weights checked before PEFT reads them; None without one."""
    if not config.model.adapter:
        return None
    folder = adapter_dir(config.model.adapter)
    adapter_weights(folder)  # safetensors only, a regular file
    return StartingAdapter(folder, read_adapter_info(folder))


def base_settings(config: RunConfig, start: StartingAdapter | None) -> ModelConfig:
    """The model settings to load: the starting adapter's base unless ``model.name`` names one explicitly."""
    if start is None or config.model.name != DEFAULT_MODEL:
        return config.model
    return config.model.model_copy(update={"name": start.info.base_model})


def make_trainable(model, config: RunConfig, start: StartingAdapter | None):
    """``model`` (the base) with a trainable adapter: ``start`` loaded trainable, or a new LoRA adapter (seeded)."""
    if start is None:
        torch.manual_seed(config.training.seed)  # the LoRA init is part of the recipe
        return attach_lora(model, config.lora)
    from peft import PeftModel

    try:
        # Named "default", as a new adapter is: DPO's trainer copies it into its frozen reference.
        with quiet_checkpointing_alias():
            return PeftModel.from_pretrained(model, str(start.folder), adapter_name="default", is_trainable=True)
    except (RuntimeError, ValueError) as err:
        # PEFT's words for the adapter's modules missing from this model or shaped otherwise; anything else
        # (out of memory, a damaged file) is not about the base and keeps its own message.
        if not any(words in str(err) for words in ("size mismatch", "not found in the base model")):
            raise
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        first = next((line for line in lines if "size mismatch" in line or "not found" in line), lines[0])[:240]
        raise EduloraError(f"model.adapter={config.model.adapter} was trained on {start.info.base_model}, which "
                           f"model.name={config.model.name} is not a copy of ({first})") from None


def prompt_format(config: RunConfig, tokenizer, start: StartingAdapter | None) -> PromptFormat:
    """The starting adapter's format (its template, persona and key switches), else the config's."""
    if start is not None:
        i = start.info
        return PromptFormat.create(tokenizer, i.template or "auto", i.system_prompt, i.answer_key)
    return PromptFormat.create(tokenizer, config.data.template, config.data.system_prompt,
                               answer_key=config.data.answer_key == "auto")


def adapter_meta(config: RunConfig, start: StartingAdapter | None) -> dict[str, str]:
    """Subject, grade level, style, description: the config's, else the starting adapter's."""
    names = ("subject", "grade_level", "teaching_style", "description")
    return {n: getattr(config.adapter, n) or (getattr(start.info, n) if start else "") for n in names}


def previous_records(config: RunConfig, scrub: bool) -> tuple[list[Record], dict]:
    """The data ``model.adapter`` was trained on, for SFT to mix in (``data.previous_fraction``).

    ``data.previous_file`` when set; else what the adapter's run recorded reading: its
    ``data.train_file`` and, when that run itself continued an adapter, the earlier data it mixed in,
    so a chain of weekly runs keeps the original data in view. The run's held-out records
    (``eval.jsonl``) are left out: comparing the new adapter with the old on them stays fair.
    ``scrub``: personal details are replaced as in the new run's own records (held-out files are written
    scrubbed, so a record is matched against them as read and as scrubbed).
    Returns the records and what the run's ``data.json`` says about them.
    """
    d = config.data
    folder = adapter_dir(config.model.adapter)
    run = RunDir.of_adapter(folder)
    if d.previous_file:
        files = [d.previous_file]
    elif run is None:
        raise EduloraError(f"model.adapter={config.model.adapter}: an adapter outside a run directory records no "
                           "training data; set data.previous_file (the data it was trained on) or "
                           "data.previous_fraction=0")
    else:
        recorded = run.read_data_info()
        files = [recorded.get("train_file") or "", *recorded.get("previous", {}).get("files", [])]
        gone = next((f for f in files if not f or not Path(f).is_file()), None)
        if gone is not None:
            raise EduloraError(f"{gone or 'data.train_file'}: the data model.adapter={config.model.adapter} was "
                               f"trained on (recorded in {run.data_file}) is gone; set data.previous_file to a "
                               "copy, or data.previous_fraction=0 to train on the new records alone")
    records = [r for f in files for r in load_records(f)]
    cleaned = records
    if scrub:
        from ..data.privacy import scrub_records

        cleaned, _ = scrub_records(records)
    held_out = {_key(r) for r in run.eval_records()} if run is not None and run.eval_file.is_file() else set()
    kept = [c for r, c in zip(records, cleaned) if _key(r) not in held_out and _key(c) not in held_out]
    if not kept:
        raise EduloraError(f"{', '.join(files)}: no records left to mix in (data.previous_fraction) once the "
                           "adapter's held-out records are set aside")
    info = {"adapter": config.model.adapter, "files": [str(Path(f).resolve()) for f in files],
            "records": len(kept), "held_out_left_out": len(records) - len(kept)}
    return kept, info


def _key(record: Record) -> str:
    return json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False)
