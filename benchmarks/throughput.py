"""Serving throughput over HTTP: two adapters on the packaged model, one client alone, then N at once.

Prints single-stream tokens/s and the aggregate of ``--clients`` concurrent clients alternating
between the adapters (their requests share mixed-adapter batches); ``--json`` also writes the
numbers. The measuring is ``edulora.serving.bench.measure_throughput``; this script only parses
and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edulora.data.io import atomic_write_text  # noqa: E402
from edulora.serving.bench import measure_throughput  # noqa: E402


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct", help="base model (default: the packaged one)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--max-new-tokens", type=positive, default=128, help="reply length cap per request")
    parser.add_argument("--clients", type=positive, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=positive, default=2, help="requests per concurrent client")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    result = measure_throughput(args.base, args.precision, args.max_new_tokens, args.clients, args.requests)
    print(result.summary())
    numbers = {**asdict(result), "single_tokens_per_s": result.single_tokens_per_s,
               "aggregate_tokens_per_s": result.aggregate_tokens_per_s, "load_before": load_before,
               "command": " ".join(["python", "benchmarks/throughput.py", *(sys.argv[1:] if argv is None else argv)])}
    if args.json:
        atomic_write_text(args.json, json.dumps(numbers, indent=2) + "\n")
    return numbers


if __name__ == "__main__":
    main()
