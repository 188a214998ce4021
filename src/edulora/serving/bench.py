"""Serving throughput on the packaged model: ``python -m edulora.serving.bench``.

Builds two LoRA adapters with the default settings (r=16 on q/k/v/o; freshly initialized, which
costs the same compute as trained ones) on the packaged SmolLM2, serves them on a loopback port,
then measures over HTTP: one client alone (single-stream tokens/s), and N clients at once, each
alternating between the adapters (aggregate tokens/s; their requests share mixed batches).
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer

QUESTIONS = ["Explain why the sky is blue to a ten-year-old.", "How do I find the area of a triangle?",
             "What causes the seasons on Earth?", "Why do we need to balance chemical equations?",
             "What is the difference between weather and climate?", "How does a vaccine work?",
             "Explain fractions using pizza.", "Why did the Roman Empire fall?"]


#: The two adapters the throughput benchmark serves: (name, subject).
TWO_SUBJECTS = (("math", "mathematics"), ("science", "biology"))


def benchmark_adapters(base: str, folder: Path, subjects=TWO_SUBJECTS, noise: float = 0.0,
                       seed: int = 0) -> list[tuple[str, Path]]:
    """Untrained adapters (default LoRA settings) saved as runs under ``folder``: [(name, run folder)].

    A fresh LoRA's B matrices are zero, so every such adapter answers exactly as the base does;
    ``noise`` > 0 fills them with seeded Gaussian noise of that standard deviation, so adapters
    differ from the base and from each other (what a mixed-adapter benchmark must serve) at the
    same compute cost as trained ones.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from ..config import LoraSettings
    from ..modeling import AdapterInfo, attach_lora, load_tokenizer, resolve_model_path, save_adapter

    path = resolve_model_path(base)
    out = []
    for i, (name, subject) in enumerate(subjects):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        peft_model = attach_lora(model, LoraSettings())
        if noise > 0:
            generator = torch.Generator().manual_seed(seed + i)
            with torch.no_grad():
                for param_name, param in peft_model.named_parameters():
                    if "lora_B" in param_name:
                        param.copy_(torch.randn(param.shape, generator=generator) * noise)
        info = AdapterInfo(base_model=base, subject=subject, grade_level="middle_school", template="chat")
        save_adapter(peft_model, load_tokenizer(path), folder / name / "adapter", info, "# benchmark adapter\n")
        out.append((name, folder / name))
    return out


def _ask(client, model: str, question: str, max_tokens: int) -> tuple[int, float]:
    began = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                           max_tokens=max_tokens)
    return reply.usage.completion_tokens, time.perf_counter() - began


def run_benchmark(base: str = "smollm2-135m-instruct", precision: str = "auto", max_tokens: int = 128,
                  clients: int = 8, requests: int = 2) -> None:
    """Serve two adapters on a loopback port and print single-stream and concurrent tokens/s."""
    from openai import OpenAI

    from .engine import load_engine
    from .router import Router
    from .server import TutorServer
    from .service import TutorService

    with tempfile.TemporaryDirectory() as tmp:
        engine = load_engine(benchmark_adapters(base, Path(tmp)), precision=precision, max_batch=clients,
                             max_queue=4 * clients).start()
        server = TutorServer(TutorService(engine, Router([], use_embeddings=False), max_tokens_cap=max_tokens),
                             "127.0.0.1", 0).start()
        client = OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=600)
        dtype = next(engine.model.parameters()).dtype
        print(f"model {engine.base_id} ({dtype}), adapters {', '.join(engine.adapters)}, {max_tokens} max new tokens")
        _ask(client, "math", QUESTIONS[0], 8)  # warm-up
        tokens, seconds = 0, 0.0
        for question in QUESTIONS[:3]:
            n, s = _ask(client, "math", question, max_tokens)
            tokens, seconds = tokens + n, seconds + s
        print(f"single stream: {tokens / seconds:.1f} tokens/s ({tokens} tokens in {seconds:.1f} s)")

        jobs = [("math" if (c + r) % 2 == 0 else "science", QUESTIONS[(c + r) % len(QUESTIONS)])
                for c in range(clients) for r in range(requests)]
        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda job: _ask(client, job[0], job[1], max_tokens), jobs))
        wall = time.perf_counter() - began
        total = sum(n for n, _ in results)
        stats = engine.stats
        print(f"{clients} concurrent clients: {total / wall:.1f} tokens/s aggregate ({total} tokens, "
              f"{len(jobs)} requests in {wall:.1f} s; mean latency {sum(s for _, s in results) / len(results):.1f} s; "
              f"largest batch {stats.largest_batch}, mixed-adapter batches {stats.mixed_batches})")
        server.stop()
        engine.stop()


def main(
    base: str = "smollm2-135m-instruct",
    precision: str = "auto",
    max_tokens: Annotated[int, typer.Option(min=1)] = 128,
    clients: Annotated[int, typer.Option(min=1)] = 8,
    requests: Annotated[int, typer.Option(min=1, help="requests per concurrent client")] = 2,
) -> None:
    """Serving throughput on the packaged model."""
    run_benchmark(base, precision, max_tokens, clients, requests)


if __name__ == "__main__":
    typer.run(main)
