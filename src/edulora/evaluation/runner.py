"""Evaluate tutors on held-out records: loss, speed and educational metrics, base vs adapters.

``evaluate(models, records, settings)`` is the whole procedure and returns an ``EvalResult``;
``edulora.evaluation.report.write_reports`` turns it into JSON, Markdown and HTML. Models are
``ModelUnderTest`` views: several of them may share one loaded network (a ``PeftModel`` holding
several named adapters, with the base reached through ``disable_adapter``), so comparing N
adapters costs one base load, not N.

Loss is measured exactly as training measures it (``encode_record`` → ``collate_examples`` →
``mean_token_loss``), so the numbers here and in a run's summary.json are comparable.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.schema import Example, Record
from ..errors import EduloraError
from . import metrics as m
from .rates import ReplyPedagogy, record_history, reply_pedagogy, summarize
from .results import GROUP_KEYS, LOWER_IS_BETTER, METRICS, Delta, EvalResult, ModelResult, RecordInfo, ReplyResult

@dataclass
class ModelUnderTest:
    """One tutor to evaluate: a loaded network, and which of its adapters is active.

    ``adapter`` names the PEFT adapter to activate; ``None`` means the base model (the
    network's adapters disabled, when it has any).
    """

    name: str
    model: Any
    tokenizer: Any
    template: str
    system_prompt: bool = True
    adapter: str | None = None
    #: Where the model came from (run or adapter directory, base model name): shown in reports.
    source: str = ""

    @property
    def is_base(self) -> bool:
        return self.adapter is None


@dataclass
class EvalSettings:
    max_new_tokens: int = 200
    #: Evaluate only the first N records (None: all).
    limit: int | None = None
    generation_batch_size: int = 8
    #: Token budget of one record / packed row for the loss, as in training (``data.max_length``).
    max_length: int = 1024
    loss_batch_examples: int = 4
    bootstrap_resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    #: Sentence embedder for outcome alignment; None loads MiniLM (``embeddings.embed``).
    embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def prompt_and_reference(record: Record, with_system: bool = True) -> tuple[list[dict[str, str]], str]:
    """The conversation up to the record's last tutor turn, and that turn (the reference reply)."""
    from ..formatting import record_messages

    messages = record_messages(record, with_system)
    last = max((i for i, msg in enumerate(messages) if msg["role"] == "assistant"), default=None)
    if last is None or last == 0 or messages[last - 1]["role"] != "user":
        raise EduloraError("an evaluation record must end its conversation with a tutor reply to a student turn")
    return messages[:last], messages[last]["content"]


def _record_info(index: int, record: Record) -> RecordInfo:
    messages, reference = prompt_and_reference(record, with_system=False)
    prompt = "\n".join(f"{'Student' if x['role'] == 'user' else 'Tutor'}: {x['content']}" for x in messages)
    meta = record.metadata
    return RecordInfo(index, prompt, reference, meta.subject, meta.grade_level and meta.grade_level.value,
                      meta.teaching_style and meta.teaching_style.value)


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def score_reply(reply: str, record: Record, embed: Callable[[list[str]], Sequence[Sequence[float]]],
                pedagogy: ReplyPedagogy | None = None) -> dict[str, float | None]:
    """Every educational metric of ``reply`` for ``record`` (None where the record lacks the input).

    ``pedagogy`` is ``rates.reply_pedagogy(reply, record)`` when the caller has it already.
    """
    meta = record.metadata
    history = record_history(record)
    _, reference = prompt_and_reference(record, with_system=False)
    context = record.context if isinstance(record, Example) else None
    pedagogy = pedagogy or reply_pedagogy(reply, record, history)
    return {
        "clarity": m.explanation_clarity(reply).score,
        "grade_fit": m.grade_level_fit(reply, meta.grade_level).score if meta.grade_level else None,
        "concept_coverage": m.concept_coverage(reply, reference).score,
        "outcome_alignment": m.outcome_alignment(reply, reference, context, embed=embed).score,
        "engagement": m.engagement(reply).score,
        "style_adherence": (m.style_adherence(reply, meta.teaching_style, answer=meta.answer, history=history).score
                            if meta.teaching_style else None),
        "answer_revealing": pedagogy.reveal.score,
        "answer_correctness": pedagogy.correctness.score,
        "guidance": m.providing_guidance(reply, history, answer_revealed=pedagogy.reveal.revealed).score,
    }


def _cached_embedder(texts: Sequence[str], embed: Callable | None) -> Callable[[list[str]], list[list[float]]]:
    """All texts embedded in one batched call; the metric then looks them up one reply at a time."""
    if embed is None:
        # Imported here: MiniLM is loaded only when an evaluation needs it.
        from .embeddings import embed as minilm

        embed = minilm
    unique = list(dict.fromkeys(texts))
    table = dict(zip(unique, (list(v) for v in embed(unique)), strict=True)) if unique else {}

    def lookup(batch: list[str]) -> list[list[float]]:
        missing = [t for t in batch if t not in table]
        if missing:
            table.update(zip(missing, (list(v) for v in embed(missing)), strict=True))
        return [table[t] for t in batch]

    return lookup


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def bootstrap_ci(differences: Sequence[float], resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its percentile bootstrap interval (resampling records).

    Seeded with its own generator, so the same inputs always give the same interval.
    """
    n = len(differences)
    if n == 0:
        raise ValueError("no differences to bootstrap")
    centre = sum(differences) / n
    rng = random.Random(seed)
    means = sorted(sum(differences[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    # With few records the percentile interval can miss its own centre by a rounding hair.
    return centre, min(low, centre), max(high, centre)


def paired_deltas(models: Sequence[ModelResult], settings: EvalSettings) -> list[Delta]:
    """Each model against the reference (the base when evaluated, else the first model), per metric."""
    if len(models) < 2:
        return []
    reference = next((r for r in models if r.is_base), models[0])
    deltas = []
    for result in models:
        if result is reference:
            continue
        for metric in METRICS:
            pairs = [(a.metrics[metric], b.metrics[metric]) for a, b in zip(result.replies, reference.replies)
                     if a.metrics.get(metric) is not None and b.metrics.get(metric) is not None]
            if not pairs:
                continue
            centre, low, high = bootstrap_ci([a - b for a, b in pairs], settings.bootstrap_resamples,
                                             settings.seed, settings.confidence)
            deltas.append(Delta(result.name, reference.name, metric, centre, low, high, len(pairs)))
    return deltas


def group_means(records: Sequence[RecordInfo], models: Sequence[ModelResult]) -> dict[str, dict[str, dict[str, Any]]]:
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for key in GROUP_KEYS:
        values = sorted({getattr(r, key) for r in records if getattr(r, key)})
        if not values:
            continue
        groups[key] = {}
        for value in values:
            members = {r.index for r in records if getattr(r, key) == value}
            entry: dict[str, Any] = {"n": len(members)}
            for result in models:
                chosen = [rep for rep in result.replies if rep.record in members]
                entry[result.name] = {metric: mean([rep.metrics.get(metric) for rep in chosen]) for metric in METRICS}
            groups[key][value] = entry
    return groups


# --------------------------------------------------------------------------------------------
# Running models
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def activated(mut: ModelUnderTest) -> Iterator[Any]:
    """The network with ``mut``'s adapter active (or all adapters off for the base)."""
    model = mut.model
    was_training = model.training
    model.eval()  # a model fresh from training still has LoRA dropout on; replies must be deterministic
    try:
        with _adapter_state(mut) as active:
            yield active
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _adapter_state(mut: ModelUnderTest) -> Iterator[Any]:
    model = mut.model
    has_adapters = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
    if mut.adapter is None:
        with (model.disable_adapter() if has_adapters else contextlib.nullcontext()):
            yield model
        return
    if not has_adapters:
        raise EduloraError(f"{mut.name}: adapter {mut.adapter!r} requested on a model without adapters")
    model.set_adapter(mut.adapter)
    yield model


def eval_loss(model, tokenizer, records: Sequence[Record], template: str, system_prompt: bool,
              settings: EvalSettings) -> tuple[float, int]:
    """Mean per-token loss on the reference replies, and the number of tutor tokens it covers."""
    from ..formatting import collate_examples, encode_record
    from ..training import mean_token_loss

    encoded = [encode_record(r, tokenizer, template, settings.max_length, system_prompt) for r in records]
    step = settings.loss_batch_examples
    batches = (collate_examples(encoded[i : i + step], tokenizer.pad_token_id) for i in range(0, len(encoded), step))
    return mean_token_loss(model, batches), sum(e.trainable_tokens for e in encoded)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def evaluate(models: Sequence[ModelUnderTest], records: Sequence[Record], settings: EvalSettings | None = None,
             judge: Any = None, run_dir: str | Path | None = None,
             progress: Callable[[str], None] | None = None) -> EvalResult:
    """Loss, generation speed and educational metrics of every model on the same records.

    ``judge`` is an ``edulora.evaluation.judge.Judge`` (or anything with its ``judge_reply``);
    ``run_dir`` adds the run's training log for the loss curves.
    """
    from ..generation import GenerationSettings, generate_replies

    settings = settings or EvalSettings()
    say = progress or (lambda _: None)
    if not models:
        raise EduloraError("nothing to evaluate: give at least one run or adapter, or --base")
    records = list(records)[: settings.limit] if settings.limit else list(records)
    if not records:
        raise EduloraError("no evaluation records")
    infos = [_record_info(i, r) for i, r in enumerate(records)]
    generation = GenerationSettings(max_new_tokens=settings.max_new_tokens, temperature=0.0)

    raw: list[tuple[ModelUnderTest, float, int, list, float]] = []
    for mut in models:
        prompts = [prompt_and_reference(r, mut.system_prompt)[0] for r in records]
        with activated(mut) as model:
            say(f"{mut.name}: eval loss on {len(records)} records")
            loss, tokens = eval_loss(model, mut.tokenizer, records, mut.template, mut.system_prompt, settings)
            say(f"{mut.name}: generating {len(records)} replies")
            began = time.perf_counter()
            replies = generate_replies(model, mut.tokenizer, prompts, mut.template, generation,
                                       batch_size=settings.generation_batch_size)
            seconds = time.perf_counter() - began
        raw.append((mut, loss, tokens, replies, seconds))

    say("scoring replies")
    texts = [rep.text for *_, replies, _ in raw for rep in replies]
    texts += [info.reference for info in infos]
    texts += [r.context for r in records if isinstance(r, Example) and r.context]
    embed = _cached_embedder(texts, settings.embed)

    results: list[ModelResult] = []
    for mut, loss, tokens, replies, seconds in raw:
        scored, pedagogy = [], []
        for info, record, reply in zip(infos, records, replies, strict=True):
            labels = judge.judge_reply(record_history(record), reply.text, info.reference) if judge is not None else None
            pedagogy.append(reply_pedagogy(reply.text, record))
            scored.append(ReplyResult(info.index, reply.text, reply.new_tokens, reply.seconds,
                                      score_reply(reply.text, record, embed, pedagogy[-1]), labels))
        means = {metric: mean([s.metrics[metric] for s in scored]) for metric in METRICS}
        if judge is not None:
            from .judge import judge_means

            means.update(judge_means([s.judge or {} for s in scored]))
        new_tokens = sum(r.new_tokens for r in replies)
        results.append(ModelResult(
            name=mut.name, source=mut.source, is_base=mut.is_base, eval_loss=loss,
            perplexity=math.exp(min(loss, 50.0)), eval_tokens=tokens,
            tokens_per_s=new_tokens / seconds if seconds > 0 else None,
            mean_latency_s=mean([r.seconds for r in replies]), generation_seconds=seconds,
            peak_rss_mb=_peak_rss_mb(), metrics=means, replies=scored,
            rates=summarize(pedagogy, settings.confidence)))

    return EvalResult(
        records=infos, models=results, groups=group_means(infos, results), deltas=paired_deltas(results, settings),
        settings={k: v for k, v in asdict(settings).items() if k != "embed"} | {"records": len(records)},
        training_log=read_training_log(run_dir) if run_dir else [],
        run_dir=str(run_dir) if run_dir else None,
        judge_model=getattr(judge, "model", None) if judge is not None else None,
    )


def read_training_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl rows (a torn last line, from a run still writing, is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Loading: one base, many adapters
# --------------------------------------------------------------------------------------------


def load_models(sources: Sequence[str | Path], include_base: bool = False, base_model: str | None = None,
                precision: str = "auto", allow_pickle: bool = False) -> list[ModelUnderTest]:
    """Load the base model once and attach every adapter to it under its own name.

    All adapters must be trained on the same base (unless ``base_model`` overrides it);
    the base model is evaluated with the adapters' prompt template, so only the weights differ.
    """
    from ..config import DEFAULT_MODEL, ModelConfig
    from ..modeling import adapter_dir, load_base_model, read_adapter_info

    folders = [adapter_dir(s) for s in sources]
    infos = [read_adapter_info(f) for f in folders]
    for folder in folders:
        if not (folder / "adapter_model.safetensors").exists() and not allow_pickle:
            raise EduloraError(f"{folder}: no adapter_model.safetensors; pickle weights (.bin) can run code and "
                               "are refused unless you pass --allow-pickle")
    bases = {info.base_model for info in infos}
    if base_model is None and len(bases) > 1:
        raise EduloraError(f"the adapters were trained on different base models ({', '.join(sorted(bases))}); "
                           "evaluate them separately or force one with --base-model")
    base_name = base_model or (infos[0].base_model if infos else DEFAULT_MODEL)
    if not folders and not include_base:
        raise EduloraError("nothing to evaluate: give at least one run or adapter directory, or --base")
    model, tokenizer, _ = load_base_model(ModelConfig(name=base_name, precision=precision))
    template = infos[0].template if infos else ("chat" if tokenizer.chat_template else "instruction")
    system_prompt = infos[0].system_prompt if infos else True
    tested: list[ModelUnderTest] = []
    names = _unique_names(sources)
    if folders:
        from peft import PeftModel

        for i, (folder, name) in enumerate(zip(folders, names, strict=True)):
            if i == 0:
                model = PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=False)
            else:
                model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
    model.eval()
    if include_base:
        tested.append(ModelUnderTest("base", model, tokenizer, template, system_prompt, None, base_name))
    for folder, name, info in zip(folders, names, infos, strict=True):
        tested.append(ModelUnderTest(name, model, tokenizer, info.template, info.system_prompt, name, str(folder)))
    return tested


def _unique_names(sources: Sequence[str | Path]) -> list[str]:
    """Short display names: the run directory's name ("…/runs/demo-1/adapter" → "demo-1")."""
    names: list[str] = []
    for source in sources:
        path = Path(source).expanduser().resolve()
        name = path.parent.name if path.name == "adapter" else path.name
        name = name.replace(".", "_") or "adapter"  # PEFT adapter names may not contain dots
        candidate, k = name, 2
        while candidate in names or candidate == "base":
            candidate, k = f"{name}-{k}", k + 1
        names.append(candidate)
    return names


def default_eval_file(sources: Sequence[str | Path]) -> Path:
    """The held-out split a run wrote (eval.jsonl of the first run directory given)."""
    for source in sources:
        path = Path(source).expanduser()
        if path.name == "adapter":
            path = path.parent
        if (path / "eval.jsonl").is_file():
            return path / "eval.jsonl"
    raise EduloraError("no --data given and no run directory with an eval.jsonl among the inputs")


def run_dir_of(sources: Sequence[str | Path]) -> Path | None:
    """The first input that is a run directory (it has metrics.jsonl), for the training curves."""
    for source in sources:
        path = Path(source).expanduser()
        for candidate in (path, path.parent):
            if (candidate / "metrics.jsonl").is_file():
                return candidate
    return None


def run_max_length(run_dir: Path | None, default: int = 1024) -> int:
    """The run's ``data.max_length``, so loss is measured on the same truncation as in training."""
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return default
    try:
        import yaml

        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        return int(config.get("data", {}).get("max_length") or default)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return default


# --------------------------------------------------------------------------------------------
# For callers holding a trained model in memory (the demo)
# --------------------------------------------------------------------------------------------


def evaluate_trained(model, tokenizer, template: str, records: Sequence[Record], run_dir: str | Path,
                     system_prompt: bool = True, settings: EvalSettings | None = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Base (adapters disabled) vs the active adapter of an in-memory ``PeftModel``, reports
    written into ``run_dir`` (report.html, report.md, report.json); returns their paths."""
    from .report import write_reports

    adapter = getattr(model, "active_adapter", None)
    if not isinstance(adapter, str):  # PEFT returns a list when several adapters are active
        adapter = "default"
    run_dir = Path(run_dir)
    tested = [ModelUnderTest("base", model, tokenizer, template, system_prompt, None, "base model"),
              ModelUnderTest("tuned", model, tokenizer, template, system_prompt, adapter, str(run_dir / "adapter"))]
    settings = settings or EvalSettings(max_new_tokens=160, limit=8, max_length=run_max_length(run_dir))
    result = evaluate(tested, records, settings, run_dir=run_dir, progress=progress)
    return write_reports(result, out_dir=run_dir)
