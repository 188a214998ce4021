"""Training speed: the guide's recipe (HF Trainer + PEFT, padded, fp32) against edulora's training path.

    .venv/bin/python benchmarks/train_speed.py                # 3 repetitions, all training records, 1 epoch
    .venv/bin/python benchmarks/train_speed.py --quick        # smoke test (~2-3 minutes)
    .venv/bin/python benchmarks/train_speed.py --repeats 5 --examples 96 --json-out /tmp/speed.json
    .venv/bin/python benchmarks/train_speed.py --quick --model /models/Qwen2.5-0.5B-Instruct   # any family

Both variants train the same model (the packaged SmolLM2-135M-Instruct, or ``--model``: a Hugging Face
folder or .gguf file of any family), the same LoRA (r=16, alpha=32, dropout 0.05, q/k/v/o, mapped to
the family's module names, e.g. Phi-3's fused ``qkv_proj``), the same batch settings (4 x grad-accumulation 4), learning
rate and schedule, on the same training records for the same number of epochs:

(a) ``guide``: what a user writes today from the guide: fp32 weights, ``get_peft_model``, every
    example its own row padded by ``DataCollatorForLanguageModeling`` (loss over the whole text),
    ``train_sampling_strategy="group_by_length"``.
(b) ``edulora``: ``edulora.training.train(RunConfig)`` with its defaults (bf16 weights on CPUs with
    AMX/AVX512-BF16, packed rows, tutor-text-only loss with the LM head on labelled positions only).

Each variant runs in its own child process (peak RSS is per process); the parent collects JSON and
prints medians. The GEMM roof (fp32 and bf16 FLOP/s) is measured in a child of its own in every
repetition, so model-FLOPs utilization (MFU) is relative to this machine at that moment. Eval loss
is computed identically for both: ``edulora.training.mean_token_loss`` (cross-entropy per tutor
token) on the edulora-encoded held-out records.

FLOPs per trained token (documented in docs/benchmarks.md), base weights frozen:
  linear layers  4 * N_linear   (forward 2N, backward input-gradient 2N; no weight gradients)
  LoRA           6 * N_lora     (forward, input and weight gradients)
  attention      3 * 4 * d_attn * c / 2 per layer, c = the token's causal context (QK^T and AV,
                 forward x1, backward x2)
  LM head        4 * d_model * vocab on every position whose logits are computed
                 ((a): every real token, (b): labelled tokens only)
Only real (non-padding) tokens count: padding is not useful work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# --src DIR (child processes only): import edulora from another source tree, e.g. a patched copy.
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else str(ROOT / "src")
sys.path.insert(0, _SRC)
DATA = ROOT / "src" / "edulora" / "sample_data" / "tutoring.jsonl"  # the packaged sample data
LORA = dict(r=16, alpha=32, dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
BATCH, ACCUM, LR = 4, 4, 2e-4


def read_records(path):
    from edulora.data.formats import load_records

    return load_records(path)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ data


def generated_records(n: int, seed: int = 0):
    """A stand-in for the packaged sample_data/tutoring.jsonl: short tutoring exchanges of varied length."""
    import random

    from edulora.data.schema import Example, Metadata

    rng = random.Random(seed)
    subjects = ["mathematics", "science", "history", "english"]
    steps = ["First, look at what the question gives you.", "What do you notice about the numbers?",
             "Try a smaller example first and see if the pattern holds.", "Can you explain why that step works?",
             "Check your answer by working backwards.", "Draw a picture if it helps you see it."]
    records = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        response = " ".join(rng.choice(steps) for _ in range(rng.randint(2, 12)))
        records.append(Example(instruction=f"Question {i}: what is {a} times {b}, and how do I work it out?",
                               response=f"Let's work it out together. {response}",
                               metadata=Metadata(subject=rng.choice(subjects))))
    return records


def prepare_data(work: Path, examples: int | None) -> dict:
    """Split once (edulora's stratified split) and write train/eval files both variants read."""
    from edulora.data.io import write_records
    from edulora.data.split import split_records

    records = read_records(DATA) if DATA.exists() else generated_records(200)
    train, held_out = split_records(records, 0.1, 0)
    if examples:
        train = train[:examples]
    write_records(work / "train.jsonl", train)
    write_records(work / "eval.jsonl", held_out)
    return {"source": str(DATA.relative_to(ROOT)) if DATA.exists() else "generated (200 records)",
            "train_records": len(train), "eval_records": len(held_out)}


# ------------------------------------------------------------------ FLOPs


def model_flops(model_config, example_lengths: list[int], head_positions: int, n_lora: int) -> float:
    """Model FLOPs for one pass over examples of these lengths (see the module docstring)."""
    c = model_config
    d, layers, inter = c.hidden_size, c.num_hidden_layers, c.intermediate_size
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or d // heads
    kv = getattr(c, "num_key_value_heads", heads) * head_dim
    n_linear = layers * (d * heads * head_dim + 2 * d * kv + heads * head_dim * d + 3 * d * inter)
    tokens = sum(example_lengths)
    pairs = sum(n * (n + 1) // 2 for n in example_lengths)  # causal (query, key) pairs, per example
    attention = layers * 3 * 4 * heads * head_dim * pairs
    head = 4 * d * c.vocab_size * head_positions
    return 4 * n_linear * tokens + 6 * n_lora * tokens + attention + head


def encoded_train(work: Path, fmt, max_length: int = 1024):
    return [fmt.encode(r, max_length) for r in read_records(work / "train.jsonl")]


def eval_loss(model, fmt, work: Path) -> float:
    """The same measurement for both variants: loss per tutor token on edulora-encoded held-out rows."""
    from edulora.config import RunConfig
    from edulora.training import mean_token_loss
    from edulora.training.data import Collator, encode

    records, config = read_records(work / "eval.jsonl"), RunConfig()
    examples, _ = encode(records, fmt, config.data.max_length)
    collate = Collator(fmt.tokenizer.pad_token_id, True)
    items = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    return mean_token_loss(model, [collate(items[i:i + BATCH]) for i in range(0, len(items), BATCH)])

def child_gemm(_args, _work) -> dict:
    """GEMM roof: best FLOP/s over the step's real GEMM shapes and a large square one, fp32 and bf16."""
    import torch

    from edulora.modeling import cpu_has_fast_bf16

    shapes = [(2048, 576, 1536), (2048, 1536, 576), (2048, 576, 576), (1024, 576, 49152), (2048, 2048, 2048)]
    out = {"gemm_bf16_tflops": None}
    # Without AMX or AVX-512-BF16, bf16 GEMMs run emulated at ~1 GFLOP/s (these shapes would take ~15 minutes)
    # and nothing trains in bf16 there, so that roof is not measured.
    kinds = (("fp32", torch.float32), ("bf16", torch.bfloat16)) if cpu_has_fast_bf16() else (("fp32", torch.float32),)
    for name, dtype in kinds:
        best = 0.0
        for m, k, n in shapes:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(2):
                a @ b
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.5:
                a @ b
                reps += 1
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t0))
        out[f"gemm_{name}_tflops"] = best / 1e12
    out["threads"] = torch.get_num_threads()
    return out


def child_guide(args, work: Path) -> dict:
    """(a) The guide's recipe, written the way a user would today."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from edulora.config import DEFAULT_MODEL
    from edulora.formatting import PromptFormat
    from edulora.modeling import load_tokenizer, map_target_modules, resolve_model_path

    started = time.perf_counter()
    path = resolve_model_path(args.model or DEFAULT_MODEL)
    tokenizer = load_tokenizer(path)
    fmt = PromptFormat.create(tokenizer)
    # Same tokens as edulora trains on (same template, same truncation); loss over the whole text.
    encoded = encoded_train(work, fmt)
    dataset = [{"input_ids": e.input_ids} for e in encoded]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    targets = map_target_modules(model, LORA["target_modules"])  # the family's names for q/k/v/o
    model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                             target_modules=targets, task_type=TaskType.CAUSAL_LM))
    arguments = TrainingArguments(
        output_dir=str(work / "guide-out"), num_train_epochs=args.epochs, per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUM, learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0.05,
        logging_steps=1, save_strategy="no", eval_strategy="no", train_sampling_strategy="group_by_length",
        use_cpu=True, report_to=[], seed=42, data_seed=42, disable_tqdm=True)
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    t0 = time.perf_counter()
    output = trainer.train()
    train_seconds = time.perf_counter() - t0
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    lengths = [len(e.input_ids) for e in encoded]
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = args.epochs * model_flops(model.config, lengths, sum(lengths), n_lora)
    return {"train_seconds": train_seconds, "useful_tokens": args.epochs * sum(lengths),
            "train_loss_mean": output.training_loss, "train_loss_last": losses[-1] if losses else None,
            "train_loss_kind": "whole text", "eval_loss": eval_loss(model, fmt, work),
            "model_flops": flops, "dtype": "fp32", "optimizer_steps": trainer.state.global_step,
            "wall_s": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def child_edulora(args, work: Path) -> dict:
    """(b) edulora's own path: train(RunConfig) with its defaults."""
    from edulora.config import RunConfig
    from edulora.formatting import IGNORE_INDEX  # noqa: F401  (documents what "labelled" means)
    from edulora.training import train

    started = time.perf_counter()
    config = RunConfig()
    if args.model:
        config.model.name = args.model
    config.data.train_file, config.data.eval_file = str(work / "train.jsonl"), str(work / "eval.jsonl")
    config.training.epochs = args.epochs
    config.training.batch_size, config.training.grad_accum, config.training.learning_rate = BATCH, ACCUM, LR
    config.training.logging_steps = 1
    config.training.eval_steps = config.training.save_steps = 10**6
    config.training.selection.pedagogy_sample = 0  # the guide's recipe generates nothing at evaluations either
    config.lora.r, config.lora.alpha, config.lora.dropout = LORA["r"], LORA["alpha"], LORA["dropout"]
    config.lora.target_modules = list(LORA["target_modules"])
    config.output_dir, config.run_name = str(work), "edulora-run"
    result = train(config, overwrite=True)
    summary = result.summary.to_dict()
    model, fmt = result.tutor.model, result.tutor.format
    losses = [row.get("loss") for row in result.run_dir.read_metrics()]
    losses = [x for x in losses if x is not None]
    encoded = encoded_train(work, fmt, config.data.max_length)
    lengths = [len(e.input_ids) for e in encoded]
    labelled = sum(e.trainable_tokens for e in encoded)  # head positions: labelled tokens (shifted by one)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = args.epochs * model_flops(model.config, lengths, labelled, n_lora)
    return {"train_seconds": summary["train_seconds"], "useful_tokens": args.epochs * sum(lengths),
            "trainer_tokens": summary["train_tokens_per_s"] * summary["train_seconds"],
            "train_loss_mean": summary["train_loss"], "train_loss_last": losses[-1] if losses else None,
            "train_loss_kind": "tutor tokens", "eval_loss": eval_loss(model, fmt, work),
            "eval_loss_train_summary": summary["eval_loss_after"], "model_flops": flops, "dtype": summary["dtype"],
            "optimizer_steps": summary["optimizer_steps"], "wall_s": time.perf_counter() - started,
            "peak_rss_mb": peak_rss_mb()}


CHILDREN = {"gemm": child_gemm, "guide": child_guide, "edulora": child_edulora, "candidate": child_edulora}


def run_child(name: str, args, work: Path) -> dict:
    out = work / f"{name}.json"
    command = [sys.executable, __file__, "--child", name, "--work", str(work), "--epochs", str(args.epochs)]
    if args.model:
        command += ["--model", args.model]
    if name == "candidate":
        command += ["--src", args.candidate_src]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0 or not out.exists():
        sys.exit(f"{name} failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
    return json.loads(out.read_text())


# ------------------------------------------------------------------ parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (medians are reported); default 3")
    parser.add_argument("--examples", type=int, default=0, help="training records to use (0: all); default 0")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs over the training records; default 1")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 repetition, 24 records")
    parser.add_argument("--json-out", help="also write all measurements here")
    parser.add_argument("--model", help="base model (HF id, folder or .gguf; default: the packaged SmolLM2)")
    parser.add_argument("--candidate-src", help="also run (c): edulora's path imported from this source tree "
                                                "(a patched copy of src/, to measure proposed changes)")
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import warnings

        warnings.filterwarnings("ignore")
        work = Path(args.work)
        load_before = os.getloadavg()[0]
        result = CHILDREN[args.child](args, work)
        result["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["cpu_s"] = usage.ru_utime + usage.ru_stime
        (work / f"{args.child}.json").write_text(json.dumps(result))
        return

    if args.quick:
        args.repeats, args.examples = 1, args.examples or 24
    import torch

    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edulora-speed-") as tmp:
        work = Path(tmp)
        data = prepare_data(work, args.examples or None)
        print(f"data: {data}; torch {torch.__version__}, {os.cpu_count()} CPUs, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}", flush=True)
        for rep in range(args.repeats):
            order = ["guide", "edulora"] + (["candidate"] if args.candidate_src else [])
            if rep % 2:
                order.reverse()  # cancel drift (other load on the machine) between the variants
            run = {"gemm": run_child("gemm", args, work)}
            for name in order:
                run[name] = run_child(name, args, work)
                r = run[name]
                print(f"rep {rep + 1}/{args.repeats} {name:8s} {r['useful_tokens'] / r['train_seconds']:7.1f} tok/s  "
                      f"train {r['train_seconds']:6.1f}s  wall {r['wall_s']:6.1f}s  RSS {r['peak_rss_mb']:6.0f} MiB  "
                      f"eval loss {r['eval_loss']:.4f}  load {r['loadavg_1min']}", flush=True)
            runs.append(run)

    def med(name, fn):
        return statistics.median(fn(run[name], run["gemm"]) for run in runs)

    gemm = {k: statistics.median(run["gemm"][k] for run in runs) if runs[0]["gemm"][k] is not None else None
            for k in ("gemm_fp32_tflops", "gemm_bf16_tflops")}
    bf16_roof = gemm["gemm_bf16_tflops"] is not None

    rows = []
    variants = [("guide", "(a) guide recipe"), ("edulora", "(b) edulora")]
    if args.candidate_src:
        variants.append(("candidate", f"(c) edulora from {args.candidate_src}"))
    for name, label in variants:
        roof = "bf16" if runs[0][name]["dtype"] == "bfloat16" else "fp32"
        row = {
            "variant": label, "dtype": runs[0][name]["dtype"],
            "useful_tok_s": med(name, lambda r, g: r["useful_tokens"] / r["train_seconds"]),
            "train_s": med(name, lambda r, g: r["train_seconds"]), "wall_s": med(name, lambda r, g: r["wall_s"]),
            "peak_rss_mb": med(name, lambda r, g: r["peak_rss_mb"]),
            "train_loss_last": med(name, lambda r, g: r["train_loss_last"]),
            "train_loss_mean": med(name, lambda r, g: r["train_loss_mean"]),
            "train_loss_kind": runs[0][name]["train_loss_kind"],
            "eval_loss": med(name, lambda r, g: r["eval_loss"]),
            "optimizer_steps": runs[0][name]["optimizer_steps"],
            "model_tflops": med(name, lambda r, g: r["model_flops"] / r["train_seconds"] / 1e12),
            "mfu_own_dtype": med(name, lambda r, g: r["model_flops"] / r["train_seconds"] / 1e12 / g[f"gemm_{roof}_tflops"]),
            "mfu_vs_bf16": (med(name, lambda r, g: r["model_flops"] / r["train_seconds"] / 1e12 / g["gemm_bf16_tflops"])
                            if bf16_roof else None),
        }
        rows.append(row)
    # Ratios are paired within a repetition (the variants of one repetition ran back to back, under the
    # same background load), then the median is taken over repetitions.
    def paired(name, key):
        return statistics.median(run[name][key] / run["guide"][key] for run in runs)

    ratios = {label: {"tok_s_ratio": 1 / paired(name, "train_seconds"),
                      "rss_ratio": paired(name, "peak_rss_mb"),
                      "eval_loss_diff": statistics.median(run[name]["eval_loss"] - run["guide"]["eval_loss"]
                                                          for run in runs)}
              for name, label in variants[1:]}

    print(f"\nmedians over {len(runs)} repetition(s); data {data}; measured GEMM roof "
          f"fp32 {gemm['gemm_fp32_tflops']:.2f} / bf16 "
          + (f"{gemm['gemm_bf16_tflops']:.2f} TFLOP/s" if bf16_roof else "not measured (no fast bf16 on this CPU)"))
    print("| variant | dtype | useful tok/s | train s | wall s | peak RSS MiB | train loss (last / mean) | eval loss "
          "| opt. steps | model TFLOP/s | MFU (own dtype) | MFU vs bf16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['dtype']} | {r['useful_tok_s']:.0f} | {r['train_s']:.0f} | {r['wall_s']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r['train_loss_last']:.3f} / {r['train_loss_mean']:.3f} ({r['train_loss_kind']}) | "
              f"{r['eval_loss']:.4f} | {r['optimizer_steps']} | {r['model_tflops']:.3f} | {100 * r['mfu_own_dtype']:.1f}% | "
              + (f"{100 * r['mfu_vs_bf16']:.1f}% |" if bf16_roof else "– |"))
    print()
    for label, r in ratios.items():
        print(f"{label} vs (a), paired by repetition: {r['tok_s_ratio']:.2f}x useful tok/s, {r['rss_ratio']:.2f}x peak RSS, "
              f"eval loss {r['eval_loss_diff']:+.4f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"data": data, "gemm": gemm, "rows": rows, "ratios": ratios,
                                                   "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
