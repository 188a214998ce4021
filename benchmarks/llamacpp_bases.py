"""Which GGUF base to serve the packaged model from: closeness to the trained network, and speed.

For the packaged Q4_1 file and each ``--gguf`` file (e.g. ``edulora export`` of the model folder with
``--dtype f16`` or ``q8_0``), in a process of its own: on ``--prompts`` sample-data questions (chat
template, as served), llama.cpp's greedy reply of ``--tokens`` tokens is compared with the fp32 PyTorch
network training starts from (``edulora.inference.parity.greedy_log_prob_gaps``: |Δ log-prob| of llama.cpp's
top-4 candidates at every step; and how many first tokens equal the fp32 network's own greedy reply); then
32 questions are answered with 96 new tokens, one at a time (the first 6) and 8 at a time, as new tokens/s
over the wall time, median of ``--repeats``. Compare files within one run only (the machine's speed moves).

    python benchmarks/llamacpp_bases.py --gguf base-f16.gguf --gguf base-q8_0.gguf [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def measure(gguf: str | None, prompts: int, tokens: int, repeats: int) -> dict:
    import torch

    from edulora.data.formats import load_records
    from edulora.data.samples import sample_data_path
    from edulora.generation import Sampling
    from edulora.inference.parity import greedy_log_prob_gaps
    from edulora.tutor import Tutor

    records = load_records(sample_data_path("tutoring.jsonl"))
    questions = [r.instruction for r in records]
    exact = Tutor.load(precision="fp32")
    fast = Tutor.load(backend="llamacpp", gguf=gguf)
    gaps: list[float] = []
    agree: list[int] = []
    for question in questions[:: max(1, len(questions) // prompts)][:prompts]:
        ids = exact.tokenizer(exact.format.render(exact.question(question)), add_special_tokens=False)["input_ids"]
        with exact.active() as network:
            served, step_gaps = greedy_log_prob_gaps(fast.model, network, ids, None, tokens)
            want = network.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False)[0, len(ids):].tolist()
        gaps += step_gaps
        agree.append(next((i for i, (a, b) in enumerate(zip(served, want)) if a != b), min(len(served), len(want))))
    messages = [[{"role": "user", "content": q}] for q in questions[:32]]
    sampling = Sampling(max_new_tokens=96, temperature=0.0)
    fast.generate(messages[:2], sampling, batch_size=2)  # warm-up
    speed = {}
    for rows, count in ((1, 6), (8, 32)):
        rates = []
        for _ in range(repeats):
            began = time.perf_counter()
            replies = fast.generate(messages[:count], sampling, batch_size=rows)
            rates.append(sum(r.tokens for r in replies) / (time.perf_counter() - began))
        speed[f"{rows}_at_a_time_tokens_per_s"] = round(statistics.median(rates), 1)
    ordered = sorted(gaps)
    return {"gguf": str(fast.model.gguf), "size_mb": round(fast.model.gguf.stat().st_size / 2**20),
            "prompts": len(agree), "tokens": tokens, "gap_mean": round(statistics.mean(gaps), 4),
            "gap_p95": round(ordered[int(0.95 * (len(ordered) - 1))], 4), "gap_max": round(ordered[-1], 4),
            "agreeing_first_tokens_mean": round(statistics.mean(agree), 1), **speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", action="append", default=[], help="a base GGUF to compare (repeatable)")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", help=argparse.SUPPRESS)  # the child process: one file ("" = packaged)
    args = parser.parse_args()
    if args.only is not None:
        print(json.dumps(measure(args.only or None, args.prompts, args.tokens, args.repeats)))
        return
    results = []
    for gguf in ["", *args.gguf]:
        out = subprocess.run([sys.executable, __file__, "--only", gguf, "--prompts", str(args.prompts),
                              "--tokens", str(args.tokens), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{Path(r['gguf']).name:<40} {r['size_mb']:>4} MB  |Δ log-prob| mean {r['gap_mean']:.3f} "
              f"p95 {r['gap_p95']:.3f} max {r['gap_max']:.3f}  same first tokens {r['agreeing_first_tokens_mean']:.1f}"
              f"/{r['tokens']}  1 at a time {r['1_at_a_time_tokens_per_s']} tok/s  8 at a time "
              f"{r['8_at_a_time_tokens_per_s']} tok/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"command": "python benchmarks/llamacpp_bases.py " + " ".join(sys.argv[1:]),
                                         "cpu": platform.processor() or platform.machine(),
                                         "cpus": os.cpu_count(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
