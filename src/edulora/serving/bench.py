"""Serving throughput on the packaged model: ``python -m edulora.serving.bench``.

Builds two LoRA adapters with the default settings (r=16 on q/k/v/o; freshly initialized, which
costs the same compute as trained ones) on the packaged SmolLM2, serves them on a loopback port,
then measures over HTTP: one client alone (single-stream tokens/s), and N clients at once, each
alternating between the adapters (aggregate tokens/s; their requests share mixed batches).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

QUESTIONS = ["Explain why the sky is blue to a ten-year-old.", "How do I find the area of a triangle?",
             "What causes the seasons on Earth?", "Why do we need to balance chemical equations?",
             "What is the difference between weather and climate?", "How does a vaccine work?",
             "Explain fractions using pizza.", "Why did the Roman Empire fall?"]


def benchmark_adapters(base: str, folder: Path) -> list[tuple[str, Path]]:
    """Two untrained adapters (default LoRA settings) saved as runs under ``folder``: [(name, run folder)]."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..config import LoraSettings
    from ..modeling import AdapterInfo, attach_lora, load_tokenizer, resolve_model_path, save_adapter

    path = resolve_model_path(base)
    out = []
    for name, subject in (("math", "mathematics"), ("science", "biology")):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        peft_model = attach_lora(model, LoraSettings())
        info = AdapterInfo(base_model=base, subject=subject, grade_level="middle_school", template="chat")
        save_adapter(peft_model, load_tokenizer(path), folder / name / "adapter", info, "# benchmark adapter\n")
        out.append((name, folder / name))
    return out


def _ask(url: str, model: str, question: str, max_tokens: int) -> tuple[int, float]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": question}],
                       "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        tokens = json.loads(response.read())["usage"]["completion_tokens"]
    return tokens, time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2, help="requests per concurrent client")
    args = parser.parse_args(argv)

    from .api import App, make_server, run_in_thread
    from .engine import load_engine
    from .router import Router

    with tempfile.TemporaryDirectory() as tmp:
        engine = load_engine(benchmark_adapters(args.base, Path(tmp)), precision=args.precision, max_batch=args.clients,
                             max_queue=4 * args.clients).start()
        server = make_server(App(engine, Router([], use_embeddings=False), max_tokens_cap=args.max_tokens),
                             "127.0.0.1", 0)
        run_in_thread(server)
        dtype = next(engine.model.parameters()).dtype
        print(f"model {engine.base_id} ({dtype}), adapters {', '.join(engine.adapters)}, "
              f"{args.max_tokens} max new tokens")
        _ask(server.url, "math", QUESTIONS[0], 8)  # warm-up
        tokens, seconds = 0, 0.0
        for question in QUESTIONS[:3]:
            n, s = _ask(server.url, "math", question, args.max_tokens)
            tokens, seconds = tokens + n, seconds + s
        print(f"single stream: {tokens / seconds:.1f} tokens/s ({tokens} tokens in {seconds:.1f} s)")

        jobs = [("math" if (c + r) % 2 == 0 else "science", QUESTIONS[(c + r) % len(QUESTIONS)])
                for c in range(args.clients) for r in range(args.requests)]
        began = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda job: _ask(server.url, job[0], job[1], args.max_tokens), jobs))
        wall = time.perf_counter() - began
        total = sum(n for n, _ in results)
        stats = engine.stats
        print(f"{args.clients} concurrent clients: {total / wall:.1f} tokens/s aggregate ({total} tokens, "
              f"{len(jobs)} requests in {wall:.1f} s; mean latency {sum(s for _, s in results) / len(results):.1f} s; "
              f"largest batch {stats.largest_batch}, mixed-adapter batches {stats.mixed_batches})")
        server.shutdown()
        server.server_close()
        engine.stop()


if __name__ == "__main__":
    main()
