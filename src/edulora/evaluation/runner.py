"""Evaluate tutors on held-out records: loss, speed and educational metrics, base vs adapters.

``evaluate(tutors, records, settings)`` is the whole procedure and returns an ``EvalResult``;
``EvalResult.write_reports`` turns it into JSON, Markdown and HTML. Several ``Tutor`` objects may
share one loaded network (a ``PeftModel`` holding several named adapters, with the base reached
through ``disable_adapter``), so comparing N adapters costs one base load, not N.

Loss is measured exactly as training measures it (``PromptFormat.encode`` → ``collate_examples`` →
``mean_token_loss``), so the numbers here and in a run's summary.json are comparable.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data.schema import Example, Record
from ..errors import EduloraError
from ..tutor import BASE_NAME, Tutor, on_llamacpp
from . import metrics as m
from .rates import ReplyPedagogy, bootstrap_ci, record_history, reply_pedagogy, summarize
from .results import (GROUP_KEYS, METRICS, Delta, EvalResult, ModelResult, RecordInfo, ReplyResult,
                      Retention)
# Importable from here as before: where an evaluation finds its records and its run's settings.
from .rundirs import default_eval_file, read_training_log, run_dir_of, run_max_length

@dataclass
class EvalSettings:
    max_new_tokens: int = 200
    #: Evaluate only the first N records (None: all).
    limit: int | None = None
    #: ``last``: each record at its last tutor turn; ``open``: each keyed dialogue at every tutor turn
    #: before the student reached the answer (where telling is possible; ``evaluation.cuts``); ``auto``:
    #: ``open`` when the data holds multi-turn dialogues, else ``last`` (the report names the one used).
    turns: str = "auto"
    generation_batch_size: int = 8
    #: Token budget of one record / packed row for the loss, as in training (``data.max_length``).
    max_length: int = 1024
    loss_batch_examples: int = 4
    bootstrap_resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    #: Who generates the replies: ``llamacpp``, ``transformers`` (the exact reference) or ``auto`` (llama.cpp on
    #: a CPU when installed; ``inference.llamacpp.choose_backend``). The loss always comes from the PyTorch network.
    backend: str = "auto"
    #: Sentence embedder for outcome alignment; None loads MiniLM (``embeddings.embed``).
    embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None
    #: Measure each model's drift from its base on general, non-tutoring prompts (``evaluation.retention``).
    retention: bool = True
    #: Those prompts: a data file of any supported format; None: our packaged ``retention.jsonl``.
    retention_file: str | None = None
    #: At most this many of them (None: all).
    retention_limit: int | None = None
    #: Length of the base's continuations the drift is measured on, and of each model's own replies.
    retention_max_new_tokens: int = 48
    #: Rate replies with the learned MRBench judges; None: only with MiniLM (``embed`` None), which they read.
    learned_judges: bool | None = None


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def prompt_and_reference(record: Record) -> tuple[list[dict[str, str]], str]:
    """The conversation up to the record's last tutor turn (no persona), and that turn (the reference reply)."""
    from ..formatting import PromptFormat

    try:
        return PromptFormat(tokenizer=None, system_prompt=False, answer_key=False).prompt_and_reference(record)
    except EduloraError:
        raise EduloraError("an evaluation record must end its conversation with a tutor reply to a student turn") from None


def _record_info(index: int, record: Record) -> RecordInfo:
    messages, reference = prompt_and_reference(record)
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
    _, reference = prompt_and_reference(record)
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


def paired_deltas(models: Sequence[ModelResult], settings: EvalSettings) -> list[Delta]:
    """Each model against the reference (the base when evaluated, else the first model), per metric."""
    if len(models) < 2:
        return []
    reference = next((r for r in models if r.is_base), models[0])
    deltas = []
    for result in models:
        if result is reference:
            continue
        for metric in (*METRICS, *sorted(set(result.metrics) & set(reference.metrics) - set(METRICS))):  # + judged
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


def eval_loss(tutor: Tutor, records: Sequence[Record], settings: EvalSettings,
              known: float | None = None) -> tuple[float, int]:
    """Mean per-token loss on the reference replies, and the number of tutor tokens it covers;
    ``known``: the loss already measured on exactly these records, which is then not computed again."""
    from ..formatting import collate_examples
    from ..losses import mean_token_loss

    encoded = [tutor.format.encode(r, settings.max_length) for r in records]
    if known is not None:
        return known, sum(e.trainable_tokens for e in encoded)
    step = settings.loss_batch_examples
    pad = tutor.tokenizer.pad_token_id
    batches = (collate_examples(encoded[i : i + step], pad) for i in range(0, len(encoded), step))
    with tutor.active() as model:
        return (mean_token_loss(model, batches, batch_count=math.ceil(len(encoded) / step)),
                sum(e.trainable_tokens for e in encoded))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def evaluate(tutors: Sequence[Tutor], records: Sequence[Record], settings: EvalSettings | None = None, *,
             include_base: bool = False, judge: Any = None, run_dir: str | Path | None = None,
             progress: Callable[[str], None] | None = None, speakers: Sequence[Tutor] | None = None,
             losses: Mapping[str, float] | None = None) -> EvalResult:
    """Loss, generation speed and educational metrics of every tutor on the same records.

    ``include_base`` adds the first tutor's base model (its adapters off, same prompt format) as
    the reference the others are compared with. ``judge`` is an ``edulora.evaluation.judge.Judge``
    (or anything with its ``judge_reply``); ``run_dir`` adds the run's training log for the loss curves.
    ``speakers``: tutors the caller has already loaded (e.g. ``on_llamacpp(tutors)``), one per tutor in
    ``tutors`` with the same adapter, that generate every reply in their place (the base's through the first
    one's ``as_base()``), so nothing is loaded twice; default: ``settings.backend`` decides, and llama.cpp is
    loaded here. Losses and drift always come from ``tutors``' PyTorch networks; ``losses``: eval losses
    already measured on exactly these records (and ``settings.max_length``), by model name, not computed again.
    """
    from ..generation import Sampling

    settings = settings or EvalSettings()
    models = list(tutors)
    if include_base and models and not any(t.is_base for t in models):
        models.insert(0, models[0].as_base())
    say = progress or (lambda _: None)
    if not models:
        raise EduloraError("nothing to evaluate: give at least one run or adapter, or --with-base")
    from .cuts import cut, resolve_turns

    held_out = list(records)[: settings.limit] if settings.limit else list(records)
    # The loss covers each held-out record once; replies are asked for at the cut points.
    turns = resolve_turns(held_out, settings.turns)
    records = cut(held_out, turns)
    if not records:
        raise EduloraError("no evaluation records")
    infos = [_record_info(i, r) for i, r in enumerate(records)]
    sampling = Sampling(max_new_tokens=settings.max_new_tokens, temperature=0.0)
    if speakers is not None:
        speakers = _matching_speakers(models, list(tutors), list(speakers))
        backend = speakers[0].backend
    else:
        backend = _generation_backend(models, settings.backend)
        speakers = on_llamacpp(models) if backend == "llamacpp" else models

    raw: list[tuple[Tutor, float, int, list, float]] = []
    for mut, speaker in zip(models, speakers, strict=True):
        prompts = [mut.format.prompt_and_reference(r)[0] for r in records]
        known = (losses or {}).get(mut.name)
        if known is None:
            say(f"{mut.name}: eval loss on {len(held_out)} records")
        loss, tokens = eval_loss(mut, held_out, settings, known)
        say(f"{mut.name}: generating {len(records)} replies on {backend}")
        began = time.perf_counter()
        replies = speaker.generate(prompts, sampling, batch_size=settings.generation_batch_size)
        seconds = time.perf_counter() - began
        raw.append((mut, loss, tokens, replies, seconds))

    say("scoring replies")
    texts = [rep.text for *_, replies, _ in raw for rep in replies]
    texts += [info.reference for info in infos]
    texts += [r.context for r in records if isinstance(r, Example) and r.context]
    embed = _cached_embedder(texts, settings.embed)

    retention = _retention(models, speakers, settings, say)
    results: list[ModelResult] = []
    from .judges import judge_records, judged_metrics, judged_names, judged_rates  # here: they bring numpy
    use_judges = settings.embed is None if settings.learned_judges is None else settings.learned_judges
    for mut, loss, tokens, replies, seconds in raw:
        scored, pedagogy = [], []
        verdicts = judge_records([r.text for r in replies], records, embed) if use_judges else []
        for i, (info, record, reply) in enumerate(zip(infos, records, replies, strict=True)):
            labels = judge.judge_reply(record_history(record), reply.text, info.reference) if judge is not None else None
            pedagogy.append(reply_pedagogy(reply.text, record))
            scores = score_reply(reply.text, record, embed, pedagogy[-1]) | (judged_metrics(verdicts[i]) if verdicts else {})
            scored.append(ReplyResult(info.index, reply.text, reply.tokens, reply.seconds, scores, labels))
        means = {metric: mean([s.metrics.get(metric) for s in scored]) for metric in (*METRICS, *judged_names(verdicts))}
        if judge is not None:
            from .judge import judge_means

            means.update(judge_means([s.judge or {} for s in scored]))
        new_tokens = sum(r.tokens for r in replies)
        results.append(ModelResult(
            name=mut.name, source=mut.source, is_base=mut.is_base, eval_loss=loss,
            perplexity=math.exp(min(loss, 50.0)), eval_tokens=tokens,
            tokens_per_s=new_tokens / seconds if seconds > 0 else None,
            mean_latency_s=seconds / len(replies) if replies else None, generation_seconds=seconds,  # why: results.py
            peak_rss_mb=_peak_rss_mb(), metrics=means, replies=scored,
            rates=summarize(pedagogy, settings.confidence) | judged_rates(verdicts, settings.confidence),
            retention=retention.get(mut.name)))

    return EvalResult(
        records=infos, models=results, groups=group_means(infos, results), deltas=paired_deltas(results, settings),
        settings={k: v for k, v in asdict(settings).items() if k != "embed"} | {
            "records": len(held_out), "replies": len(records), "backend": backend, "turns_scored": turns},
        training_log=read_training_log(run_dir) if run_dir else [],
        run_dir=str(run_dir) if run_dir else None,
        judge_model=getattr(judge, "model", None) if judge is not None else None,
    )


def _matching_speakers(models: list[Tutor], tutors: list[Tutor], speakers: list[Tutor]) -> list[Tutor]:
    """One speaker per evaluated model: the given ones in order, the added base through the first's ``as_base()``."""
    if len(speakers) != len(tutors) or not speakers:
        raise EduloraError(f"speakers: one per tutor is needed, got {len(speakers)} for {len(tutors)}")
    if len(models) > len(tutors):  # include_base put the base first
        speakers = [speakers[0].as_base(), *speakers]
    for mut, speaker in zip(models, speakers, strict=True):
        if speaker.adapter != mut.adapter or speaker.info.base_model != mut.info.base_model:
            raise EduloraError(f"speakers: {speaker.name!r} (adapter {speaker.adapter}) cannot speak for "
                               f"{mut.name!r} (adapter {mut.adapter})")
    if len({s.backend for s in speakers}) != 1:
        raise EduloraError("speakers: all must decode on the same backend")
    return speakers


def _retention(models: Sequence[Tutor], speakers: Sequence[Tutor], settings: EvalSettings,
               say: Callable[[str], None]) -> dict[str, Retention]:
    """Each model's drift from its base on the general prompts; one probe per prompt format, so the
    base's continuations are decoded once per network and format, whatever the number of adapters.
    Each model's own replies come from its speaker (the backend the evaluation generates with)."""
    from .retention import RetentionProbe, retention_records

    if not settings.retention:
        return {}
    records = retention_records(settings.retention_file, settings.retention_limit)
    source = settings.retention_file or "edulora retention.jsonl"
    probes: dict[tuple[str, bool], RetentionProbe] = {}
    measured = {}
    for mut, speaker in zip(models, speakers, strict=True):
        key = (mut.format.template, mut.format.system_prompt)
        probe = probes.setdefault(key, RetentionProbe(records, mut.format, settings.retention_max_new_tokens,
                                                      settings.generation_batch_size, source))
        say(f"{mut.name}: drift from the base on {len(records)} general prompts")
        measured[mut.name] = probe.measure(mut, settings.confidence, settings.bootstrap_resamples, settings.seed,
                                           speaker=speaker)
    return measured


def _generation_backend(models: Sequence[Tutor], requested: str) -> str:
    """``auto``: llama.cpp for networks on a CPU whose base and adapters it can take (else one line says why)."""
    from ..inference.llamacpp import choose_backend
    from ..modeling import adapter_dir

    if requested == "auto" and any(t.backend == "transformers" and t.model.device.type != "cpu" for t in models):
        return "transformers"
    folders = [adapter_dir(t.source) for t in models if t.adapter is not None and t.source]
    return choose_backend(requested, (models[0].info.base_model or None) if models else None, folders)


# --------------------------------------------------------------------------------------------
# Loading: one base, many adapters
# --------------------------------------------------------------------------------------------


def load_models(sources: Sequence[str | Path], include_base: bool = False, base_model: str | None = None,
                precision: str = "auto", allow_pickle: bool = False) -> list[Tutor]:
    """Load the base model once and attach every adapter to it under its own name.

    All adapters must be trained on the same base (unless ``base_model`` overrides it);
    the base model is evaluated with the adapters' prompt template, so only the weights differ.
    """
    from ..config import DEFAULT_MODEL, ModelConfig
    from ..modeling import adapter_dir, adapter_weights, attach_adapter, load_base_model, read_adapter_info

    folders = [adapter_dir(s) for s in sources]
    infos = [read_adapter_info(f) for f in folders]
    for folder in folders:
        adapter_weights(folder, allow_pickle)
    bases = {info.base_model for info in infos}
    if base_model is None and len(bases) > 1:
        raise EduloraError(f"the adapters were trained on different base models ({', '.join(sorted(bases))}); "
                           "evaluate them separately or force one with --base")
    base_name = base_model or (infos[0].base_model if infos else DEFAULT_MODEL)
    if not folders and not include_base:
        raise EduloraError("nothing to evaluate: give at least one run or adapter directory, or --with-base")
    from ..formatting import PromptFormat
    from ..modeling import AdapterInfo, inference_precision

    model, tokenizer, _ = load_base_model(ModelConfig(name=base_name, precision=inference_precision(precision)))
    formats = [PromptFormat.create(tokenizer, i.template or "auto", i.system_prompt, i.answer_key) for i in infos]
    tested: list[Tutor] = []
    names = _unique_names(sources)
    for folder, name in zip(folders, names, strict=True):
        model = attach_adapter(model, folder, name)
    model.eval()
    if include_base:
        fmt = formats[0] if formats else PromptFormat.create(tokenizer)
        info = infos[0] if infos else AdapterInfo(base_model=base_name)
        tested.append(Tutor(model, tokenizer, fmt, info, "base", base_name, adapter=None))
    for folder, name, info, fmt in zip(folders, names, infos, formats, strict=True):
        tested.append(Tutor(model, tokenizer, fmt, info, name, str(folder), adapter=name))
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


def evaluate_sources(sources: Sequence[str | Path], data: str | Path | None = None,
                     settings: EvalSettings | None = None, *, include_base: bool = False,
                     base_model: str | None = None, precision: str = "auto", allow_pickle: bool = False,
                     judge: Any = None, progress: Callable[[str], None] | None = None,
                     reports: Mapping[str, str | Path | None] | None = None, ratings: str | Path | None = None,
                     blind_sheet: str | Path | None = None, overwrite: bool = False) -> EvalResult:
    """``edulora eval``'s whole job: runs or adapter folders (and the base) on ``data`` or the first run's
    held-out records, with the run's truncation and training curves. ``reports``: the report files that
    will be written, by option name, checked before any work (never onto an input; an existing one replaced only
    with ``overwrite``);
    ``ratings``: a filled blind sheet, read first, whose preferences join the result (``blind.read_ratings``);
    ``blind_sheet``: where to write a new one for a person to rate (``blind.write_blind_sheet``)."""
    from ..data.formats import load_records
    from ..data.outputs import check_outputs
    from .blind import check_sheet_outputs, read_ratings, write_blind_sheet

    settings = settings or EvalSettings()
    check_outputs({"--data": data, "--retention-data": settings.retention_file, "--ratings": ratings},
                  {**(reports or {}), "--blind-sheet": blind_sheet}, overwrite=overwrite)
    if blind_sheet is not None:
        check_sheet_outputs(blind_sheet)  # a sheet may hold a rater's work: never replaced
    human = read_ratings(ratings, confidence=settings.confidence) if ratings is not None else []
    for source in sources:
        if not Path(source).expanduser().exists():
            raise EduloraError(f"{source}: no such run or adapter directory")
    path = Path(data).expanduser() if data else default_eval_file(sources)
    if not path.is_file():
        raise EduloraError(f"{path}: no such data file")
    run_dir = run_dir_of(sources)
    if not settings.max_length:
        settings.max_length = run_max_length(run_dir)
    tutors = load_models(sources, include_base, base_model, precision, allow_pickle)
    result = evaluate(tutors, load_records(path), settings, judge=judge, run_dir=run_dir, progress=progress)
    result.human = human
    if blind_sheet is not None:
        key = write_blind_sheet(result, blind_sheet, seed=settings.seed)
        (progress or (lambda _text: None))(f"{blind_sheet}: blind sheet for a rater; keep its key {key} from them")
    return result


# --------------------------------------------------------------------------------------------
# For callers holding a trained model in memory (the demo)
# --------------------------------------------------------------------------------------------


#: The name ``evaluate_trained`` gives the trained tutor in its result (the base is ``tutor.BASE_NAME``).
TUNED = "tuned"


def evaluate_trained(tutor: Tutor, records: Sequence[Record], run_dir: str | Path,
                     settings: EvalSettings | None = None, progress: Callable[[str], None] | None = None,
                     speaker: Tutor | None = None,
                     losses: tuple[float, float] | None = None) -> tuple[EvalResult, dict[str, Path]]:
    """Base (adapters disabled) vs a tutor still in memory after training, on every record given,
    reports written into the run directory (report.html, report.md, report.json); returns the
    result and the reports' paths. ``speaker``: the same tutor already loaded on another backend
    (``on_llamacpp([tutor])[0]``), which then generates the base's and the tutor's replies.
    ``losses``: the base's and the tutor's eval loss when training measured them on these very records
    (its ``eval_loss_before`` and ``eval_loss_after``), so they are not computed again."""
    from ..rundir import RunDir

    run = RunDir(run_dir)
    # The source names the adapter's saved files (llama.cpp decodes from them): the run's, unless the
    # reports go to a folder without an adapter, where the tutor's own source is kept.
    source = str(run.adapter_dir) if run.adapter_dir.is_dir() else tutor.source
    tuned = Tutor(tutor.model, tutor.tokenizer, tutor.format, tutor.info, TUNED, source, adapter=tutor.adapter)
    settings = settings or EvalSettings(max_new_tokens=120, max_length=run_max_length(run.path))
    known = dict(zip((BASE_NAME, tuned.name), losses)) if losses is not None else None
    result = evaluate([tuned], records, settings, include_base=True, run_dir=run.path, progress=progress,
                      speakers=[speaker] if speaker is not None else None, losses=known)
    return result, result.write_reports(run.path)
