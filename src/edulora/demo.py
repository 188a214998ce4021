"""``edulora demo``: the whole path on the packaged model and our sample data, in a few minutes on a CPU."""

from __future__ import annotations

import math
import shutil
import textwrap
import time
from datetime import datetime
from pathlib import Path

from .config import MemorySettings, RunConfig, validate_config
from .data import sample_data_path
from .data.formats import validate_any
from .data.schema import Example
from .errors import EduloraError
from .evaluation.rates import rate_for_style
from .evaluation.report import format_drift
from .evaluation.runner import TUNED, EvalSettings, evaluate_trained, run_max_length
from .inference.llamacpp import choose_backend
from .progress import quiet as set_quiet
from .training import RunResult, planned_optimizer_steps, train
from .training.data import load_data
from .training.memory import available_memory_gb
from .tutor import BASE_NAME, on_llamacpp


#: Held-out evaluations during the demo's training, evenly spaced, the last at its end (plus one before it).
#: Two, not three: the last checkpoint had the lowest loss in every demo measured (the rate decays to zero
#: there), so the middle one only draws the curve, and each costs ~7 s on two cores.
EVALUATIONS = 2
#: Share of one pass over the training data the demo trains on, with the learning rate decayed to zero at its
#: end: 0.85 pass lowered the held-out loss 18.9–19.0% (2.609 → 2.113–2.116) against 20.0% for a whole pass,
#: for 15% less training time (benchmarks/history/benchmarks-2026-12.md, "The demo in five minutes").
PASSES = 0.85
#: Share of the demo's training examples that are general requests answered by the base (``data.replay_fraction``):
#: drift 0.415 [0.362, 0.475] at 0.1 against 0.544 [0.497, 0.597] without and 0.509 at 0.2, for +0.8% held-out loss.
REPLAY_FRACTION = 0.1
#: The most memory (GB) the demo's training may plan for: its longest micro-batch (8 rows padded to 384 tokens)
#: in fp32, where a CPU has no fast bf16, is estimated at 7.0 GB without recomputing activations (5.7 GiB peak
#: measured on its six longest steps).
DEMO_BUDGET_CAP_GB = 8.0


def demo_memory_budget(available_gb: float | None) -> float:
    """The training memory budget for the demo: half of the memory still available, between the library's
    default (``MemorySettings.budget_gb``) and ``DEMO_BUDGET_CAP_GB``.

    Under the default 4 GB a CPU without fast bf16 trains in fp32 and recomputes the activations of half the
    demo's tokens (every micro-batch over 1,510 tokens), 11–25% more time on those steps with the same losses
    (benchmarks/history/benchmarks-2026-12.md, "The demo on a CPU without AVX-512"); a machine with room to spare need not pay that,
    and one without keeps the default. In bf16 the demo's estimate stays under the default, so nothing changes.
    """
    default = MemorySettings().budget_gb
    if available_gb is None:
        return default
    return max(default, min(DEMO_BUDGET_CAP_GB, available_gb / 2))


def demo_config(output_dir: str = "runs") -> RunConfig:
    """The guide's default LoRA preset (r=16, alpha=32, dropout 0.05, q/k/v/o) on our sample data.

    The training schedule differs from the guide's defaults because the demo must show a clear result within
    minutes on two CPU cores: most of one pass over the data (``PASSES``), 4 examples per optimizer step instead
    of 16 (four times the updates from the same data), a higher learning rate for the small data set, decayed
    linearly to zero. Training time follows the tokens trained: one pass cost half of the two passes of 8 used
    before and lowered the held-out loss 19.9% where two passes gave 21.3%; 0.85 of a pass gives ~19%
    (benchmarks/history/benchmarks-2026-12.md, "The demo in one pass", "The demo in five minutes").

    Before training, half-way and at the end (``EVALUATIONS``) only the held-out loss is measured, and the
    checkpoint with the lowest one is kept (the last, with the rate decayed to zero). The demo's evaluation then
    answers every held-out record and every general prompt with base and tuned alike and scores them once:
    pedagogy and drift probes at each evaluation cost ~70 s each on two cores to choose among checkpoints.

    Replay (``REPLAY_FRACTION``): general requests answered by the base model itself, against drift from it.
    """
    config = RunConfig()
    config.data.train_file = str(sample_data_path("tutoring.jsonl"))
    config.data.eval_fraction = 0.1
    config.data.replay_fraction = REPLAY_FRACTION
    config.data.replay_responses = "base"
    config.training.epochs = PASSES
    config.training.batch_size = 4
    config.training.grad_accum = 1
    config.training.learning_rate = 4e-3
    config.training.lr_scheduler = "linear"
    config.training.warmup_ratio = 0.05
    config.training.logging_steps = 5
    config.training.selection.select_by = "eval_loss"
    config.training.selection.pedagogy_sample = 0
    config.training.selection.retention_sample = 0
    config.training.memory.budget_gb = demo_memory_budget(available_memory_gb())
    config.adapter.description = "Demo tutor trained by `edulora demo` on edulora's sample data (all subjects, grades, styles)."
    config.output_dir = output_dir
    config.run_name = "demo-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    # A few held-out losses, evenly spaced, give the curve and keep-best its points (a few seconds each);
    # the Trainer also evaluates and saves at the last step.
    steps = planned_optimizer_steps(config, len(load_data(config).train))
    config.training.eval_steps = config.training.save_steps = max(1, math.ceil(steps / EVALUATIONS))
    validate_config(config)
    return config


def reply_backend(requested: str, trained_dtype: str, device: str) -> str:
    """Which backend writes the demo's replies. ``auto``: the trained network itself, in PyTorch, where training
    ran in bf16 on a CPU (one with fast bf16: AVX-512 BF16 or AMX), every reply of a model in one batch; else
    ``inference.llamacpp.choose_backend`` (llama.cpp on a CPU where it is installed).

    llama.cpp is the fast backend for one reply at a time, but the demo's evaluation decodes 50 replies per
    model together, where PyTorch in bf16 does each step's matrix work for all rows at once. On the 2-core
    AVX-512 BF16 EPYC the demo's 50 held-out replies (120 new tokens at most) took 20 s for the base and 22 s
    for the tuned tutor in one batch each, against 40 s and 43 s on llama.cpp's eight slots (packaged Q4_1);
    a CPU without fast bf16 trains in fp32 and keeps llama.cpp (not measured there).
    """
    if requested == "auto" and device == "cpu" and trained_dtype == "bfloat16":
        return "transformers"
    return choose_backend(requested)


def side_by_side(left: str, right: str, width: int) -> str:
    column = (width - 3) // 2
    a = textwrap.wrap(left, column) or [""]
    b = textwrap.wrap(right, column) or [""]
    a += [""] * (max(len(a), len(b)) - len(a))
    b += [""] * (len(a) - len(b))
    return "\n".join(f"{x:<{column}} | {y}" for x, y in zip(a, b))


def show_before_after(examples: list[Example], before: list[str], after: list[str],
                      width: int) -> list[tuple[str, str, str]]:
    """Replies of the base model (adapter disabled) next to the tuned adapter's, same prompts, greedy."""
    shown = []
    for example, b, a in zip(examples, before, after, strict=True):
        meta = example.metadata
        tags = ", ".join(v for v in (meta.subject, meta.grade_level and meta.grade_level.value,
                                     meta.teaching_style and meta.teaching_style.value) if v)
        print("=" * width)
        print(f"Student ({tags}): {example.instruction}")
        print("-" * width)
        print(side_by_side("BASE MODEL", "TUNED TUTOR (edulora adapter)", width))
        print("-" * width)
        print(side_by_side(b, a, width))
        shown.append((example.instruction, b, a))
    print("=" * width)
    return shown


def replies_to(evaluation, name: str, held_out: list[Example], picks: list[Example]) -> list[str]:
    """The evaluation's reply of model ``name`` to each picked record (replies are indexed by record)."""
    by_record = {reply.record: reply.text for reply in evaluation.model(name).replies}
    return [by_record[held_out.index(pick)] for pick in picks]


RATE_NAMES = {"leak_rate": "gives the answer away", "incorrect_answer_rate": "asserts a wrong answer",
              "question_rate": "asks the student a question",
              # The learned judges' share of "Yes" (evaluation.judges; absent without MiniLM: printed n/a).
              "judged_mistake_identification_rate": "notices the mistake (judged)",
              "judged_providing_guidance_rate": "guides the student (judged)",
              "judged_actionability_rate": "leaves a next step (judged)"}
#: How the verdict words each rate: (higher in the tuned tutor, lower, no clear difference).
VERDICT_WORDS = {
    "leak_rate": ("gives the answer away more often", "gives the answer away less often", "giving answers away"),
    "incorrect_answer_rate": ("asserts wrong answers more often", "asserts wrong answers less often", "wrong answers"),
    "question_rate": ("asks more questions", "asks fewer questions", "asking questions"),
    "judged_mistake_identification_rate": ("notices mistakes more often", "notices mistakes less often",
                                           "noticing the student's mistake"),
    "judged_providing_guidance_rate": ("guides more often", "guides less often", "guidance"),
    "judged_actionability_rate": ("leaves a next step more often", "leaves a next step less often", "actionability"),
}
#: What each rate counts, printed with it: the leak rate only counts replies with an answer to withhold.
RATE_SCOPES = {"leak_rate": "replies with a key or a computable answer", "incorrect_answer_rate": "replies with a key",
               "question_rate": "all replies", "judged_mistake_identification_rate": "all replies, learned judge",
               "judged_providing_guidance_rate": "all replies, learned judge",
               "judged_actionability_rate": "all replies, learned judge"}


def run_demo(output_dir: str = "runs", backend: str = "auto", quiet: bool = False) -> RunResult:
    """Check the sample data, train, evaluate base vs tuned and report, then show three of the scored replies
    side by side. ``backend`` generates every reply (``reply_backend``); the losses come from the trained
    PyTorch network, measured once, during training, and the drift from it as trained (the precision training
    ran in, as training's own ``eval_drift``). ``quiet``: no progress bars of ours."""
    set_quiet(quiet)
    phases: list[tuple[str, float]] = []
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases.append((name, now - clock))
        clock = now

    config = demo_config(output_dir)
    width = min(shutil.get_terminal_size((120, 40)).columns, 140)
    check = validate_any(config.data.train_file)
    if not check.ok:
        raise EduloraError("\n".join(str(p) for p in check.problems[:20]))
    print(f"Sample data: {config.data.train_file} — {check.records} records, no problems", flush=True)
    phase("checking the data")
    result = train(config)
    phase("training (with its evaluations)")
    summary = result.summary
    print()
    print(f"Eval loss (held-out {summary.eval_examples} records): "
          f"{summary.eval_loss_before:.3f} before → {summary.eval_loss_after:.3f} after "
          f"({100 * summary.eval_loss_drop:.1f}% lower)")
    print(f"Training: {summary.optimizer_steps} steps, {summary.train_tokens_per_s:.0f} tokens/s, "
          f"{summary.train_seconds:.0f} s on {summary.device} ({summary.dtype}); kept {summary.selection}")
    # The network as trained (bf16 on a CPU with fast bf16): its drift forwards and batched replies take half
    # the time they take in fp32 (drift on 40 prompts: 14 s against 29 s on the AVX-512 BF16 EPYC).
    tutor = result.tutor
    backend = reply_backend(backend, summary.dtype, summary.device)
    held_out = [r for r in result.run_dir.eval_records() if isinstance(r, Example)]
    # On llama.cpp: the packaged GGUF base with the adapter just saved, converted to a GGUF LoRA, loaded once.
    voice = on_llamacpp([tutor])[0] if backend == "llamacpp" else None
    print(f"Base vs tuned replies to all {len(held_out)} held-out records ({backend}), scored for pedagogy…",
          flush=True)
    # In PyTorch every reply of a model is decoded in one batch (see reply_backend); llama.cpp keeps its slots.
    rows = len(held_out) if backend == "transformers" else EvalSettings.generation_batch_size
    settings = EvalSettings(max_new_tokens=120, max_length=run_max_length(result.run_dir.path), backend=backend,
                            generation_batch_size=rows)
    # Training measured both losses on these records (before: the base; after: the kept adapter).
    losses = ((summary.eval_loss_before, summary.eval_loss_after) if len(held_out) == summary.eval_examples
              else None)
    evaluation, reports = evaluate_trained(tutor, held_out, result.run_dir, settings, speaker=voice, losses=losses)
    phase(f"evaluation and report ({backend})")
    # Three of the replies just scored, side by side: what the rates below count, not a separate sample.
    picks = _pick_varied(held_out, 3)
    show_before_after(picks, replies_to(evaluation, BASE_NAME, held_out, picks),
                      replies_to(evaluation, TUNED, held_out, picks), width)
    print_rates(evaluation)
    print(drift_line(evaluation, result.run_dir.read_data_info().get("replay")))
    print(f"Report: {reports['html']}")
    print("Time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases)
          + f"; total {sum(s for _, s in phases):.0f} s")
    return result


def _format_rate(rate) -> str:
    return "n/a" if rate is None or not rate.n else (
        f"{100 * rate.value:.0f}% [{100 * rate.low:.0f}–{100 * rate.high:.0f}%] of {rate.n}")


def print_rates(evaluation) -> None:
    """Leak (where there was an answer to withhold), wrong-answer and question rates of base and tuned, and the
    learned judges' mistake-noticing, guidance and actionability rates, with their n and 95% intervals, then a
    verdict that claims only what the intervals support."""
    print("Pedagogy on the held-out replies (95% CI, of n replies):")
    for name, meaning in RATE_NAMES.items():
        cells = [f"{model.name} {_format_rate(model.rates.get(name))}" for model in evaluation.models]
        print(f"  {meaning:<30} " + "   ".join(cells) + f"   ({RATE_SCOPES[name]})")
    cells = []
    for model in evaluation.models:
        socratic = rate_for_style(evaluation, model.name, "answer_revealing", "socratic")
        cells.append(f"{model.name} {_format_rate(socratic)}")
    print(f"  {'Socratic replies giving it away':<30} " + "   ".join(cells))
    base = next((m for m in evaluation.models if m.is_base), None)
    tuned = next((m for m in evaluation.models if not m.is_base), None)
    if base is not None and tuned is not None:
        print(verdict(base.rates, tuned.rates))


def verdict(base: dict, tuned: dict) -> str:
    """One line on the tuned tutor against the base: a difference is claimed only where the two 95%
    intervals do not overlap; overlapping intervals are said to show no clear difference, whatever the
    point estimates, since a few dozen replies cannot tell them apart."""
    parts = []
    for name, (higher, lower, topic) in VERDICT_WORDS.items():
        b, t = base.get(name), tuned.get(name)
        if b is None or t is None or not b.n or not t.n:
            parts.append(f"{topic}: not measured (no reply it applies to)")
        elif t.low > b.high:
            parts.append(f"{higher} (intervals do not overlap)")
        elif t.high < b.low:
            parts.append(f"{lower} (intervals do not overlap)")
        else:
            parts.append(f"no clear difference in {topic} (intervals overlap)")
    return "Verdict, tuned vs base: " + "; ".join(parts) + "."


def drift_line(evaluation, replay: dict | None = None) -> str:
    """The tuned adapter's drift from the base on general prompts, and how often each model's replies loop;
    ``replay`` (the run's data.json entry) says what training did to keep what the base knew."""
    tuned = next(r.retention for r in evaluation.models if not r.is_base)
    loops = "   ".join(f"{r.name} {100 * r.retention.degenerate.value:.0f}%" for r in evaluation.models)
    kept = ""
    if replay and replay.get("added"):
        whose = "the base model's own replies" if replay.get("base_replies") else "the replies in the replay data"
        kept = (f"\n  Replay: {replay['added']} of the training examples ({100 * replay['fraction']:.0f}%) were general "
                f"requests with {whose}, to hold what the base knew (the drift above says how well it did)")
    return (f"Drift from the base on {tuned.n} general prompts (KL per token, 95% CI): {format_drift(tuned)}\n"
            f"  {tuned.reading}; degenerate replies: {loops}{kept}")


def _pick_varied(examples: list[Example], n: int) -> list[Example]:
    """Prompts of different subjects and teaching styles, so the comparison shows more than one behaviour."""
    chosen: list[Example] = []
    for example in examples:
        meta = example.metadata
        if all(meta.subject != c.metadata.subject and meta.teaching_style != c.metadata.teaching_style for c in chosen):
            chosen.append(example)
        if len(chosen) == n:
            break
    return chosen + [e for e in examples if e not in chosen][: n - len(chosen)]
