"""Peak memory of a DPO or ORPO step against edulora's memory budget.

Builds preference pairs from edulora's sample data whose prompt + reply are longer than
``--max-length`` (so every row is cut to exactly that length: the largest batch the budget must
cover), then runs ``edulora train`` for one optimizer step in a child process per setting and
reports the plan (estimate, micro-batch, recomputation), the child's peak RSS and the first
step's loss. Run from the repository root with the project's virtualenv:

    python benchmarks/preference_memory.py --method dpo --settings 0,4
    python benchmarks/preference_memory.py --method orpo --settings 0,4 --json results.json

A setting is ``training.memory.budget_gb`` (0: no budget, nothing done to fit) or ``false`` / ``true``
for ``training.memory.gradient_checkpointing`` with no budget.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edulora.data import sample_data_path
from edulora.data.formats import load_records
from edulora.data.pairs import PreferencePair, write_pairs


def long_pairs(path: Path, count: int, seed: int = 0) -> int:
    """``count`` pairs: a prompt of several sample exchanges (long enough to be cut), two replies."""
    records = load_records(sample_data_path("tutoring.jsonl"))
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        turns = []
        for record in rng.sample(records, 6):
            turns += [{"role": "user", "content": record.instruction + "\n" + (record.context or "")},
                      {"role": "assistant", "content": record.response}]
        chosen, rejected = rng.sample(records, 2)
        pairs.append(PreferencePair(prompt=turns[:-1], chosen=chosen.response, rejected=rejected.response))
    return write_pairs(path, pairs)


def run_one(method: str, setting: str, pairs: Path, out: Path, args) -> dict:
    knobs = ([f"training.memory.budget_gb={setting}"] if setting not in ("true", "false")
             else ["training.memory.budget_gb=0", f"training.memory.gradient_checkpointing={setting}"])
    name = f"{method}-{setting}"
    command = [sys.executable, "-m", "edulora", "train", "configs/default.yaml",
               "--set", f"output_dir={out}", "--set", f"run_name={name}", "--set", f"training.method={method}",
               "--set", f"data.train_file={pairs}", "--set", f"data.max_length={args.max_length}",
               "--set", f"training.batch_size={args.batch_size}", "--set", "training.grad_accum=1",
               "--set", "training.max_steps=1", "--set", "training.selection.pedagogy_sample=0",
               "--set", "training.selection.select_by=eval_loss", "--set", "training.learning_rate=5e-5"]
    for knob in knobs + args.set:
        command += ["--set", knob]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{name} failed:\n{output[-3000:]}")
    run = out / name
    summary = json.loads((run / "summary.json").read_text())
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = next((row for row in losses if "loss" in row), {})
    return {"method": method, "setting": setting, "overrides": args.set, "dtype": summary["dtype"],
            "peak_rss_gib": round(usage.ru_maxrss / 1024**2, 2), "memory": summary["memory"],
            "first_loss": first.get("loss"), "wall_s": round(seconds, 1),
            "train_seconds": round(summary["train_seconds"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("dpo", "orpo"), default="dpo")
    parser.add_argument("--settings", default="0,4", help="comma-separated budgets in GB, or false/true")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per optimizer step")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config override, e.g. model.precision=fp32")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "pairs.jsonl"
        long_pairs(pairs, args.pairs)
        for setting in args.settings.split(","):
            result = run_one(args.method, setting.strip(), pairs, Path(tmp) / "runs", args)
            plan = result["memory"]
            print(f"{args.method} ({result['dtype']}) setting {result['setting']}: "
                  f"peak RSS {result['peak_rss_gib']} GiB; estimate "
                  f"{plan['estimated_gb']} GB plain / {plan['estimated_checkpointed_gb']} GB checkpointed; "
                  f"micro-batch {plan.get('micro_batch_size') or args.batch_size} pairs, recompute "
                  f"{plan['gradient_checkpointing']}; first loss {result['first_loss']}; training "
                  f"{result['train_seconds']} s, wall {result['wall_s']} s", flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
