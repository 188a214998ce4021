"""Serving throughput on the packaged model, measured over HTTP (``benchmarks/throughput.py`` prints it).

Builds two LoRA adapters with the default settings (r=16 on q/k/v/o; freshly initialized, which
costs the same compute as trained ones) on the packaged SmolLM2, serves them on a loopback port,
then measures over HTTP: one client alone (single-stream tokens/s), and N clients at once, each
alternating between the adapters (aggregate tokens/s; their requests share mixed batches).
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Throughput:
    """What :func:`measure_throughput` measured; seconds are wall-clock, tokens are completion tokens."""

    model: str
    dtype: str
    adapters: tuple[str, ...]
    max_tokens: int
    single_tokens: int
    single_seconds: float
    clients: int
    requests: int  # concurrent requests in all (clients x requests per client)
    concurrent_tokens: int
    concurrent_seconds: float
    mean_latency_s: float
    largest_batch: int
    mixed_batches: int

    @property
    def single_tokens_per_s(self) -> float:
        return self.single_tokens / self.single_seconds

    @property
    def aggregate_tokens_per_s(self) -> float:
        return self.concurrent_tokens / self.concurrent_seconds

    def summary(self) -> str:
        return (f"model {self.model} ({self.dtype}), adapters {', '.join(self.adapters)}, {self.max_tokens} max new tokens\n"
                f"single stream: {self.single_tokens_per_s:.1f} tokens/s ({self.single_tokens} tokens in "
                f"{self.single_seconds:.1f} s)\n{self.clients} concurrent clients: {self.aggregate_tokens_per_s:.1f} "
                f"tokens/s aggregate ({self.concurrent_tokens} tokens, {self.requests} requests in "
                f"{self.concurrent_seconds:.1f} s; mean latency {self.mean_latency_s:.1f} s; largest batch "
                f"{self.largest_batch}, mixed-adapter batches {self.mixed_batches})")


def _ask(client, model: str, question: str, max_tokens: int) -> tuple[int, float]:
    began = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                           max_tokens=max_tokens)
    return reply.usage.completion_tokens, time.perf_counter() - began


def measure_throughput(base: str = "smollm2-135m-instruct", precision: str = "auto", max_tokens: int = 128,
                       clients: int = 8, requests: int = 2) -> Throughput:
    """Serve two adapters of ``base`` on a loopback port; time one client alone (3 questions), then
    ``clients`` clients at once, ``requests`` each, alternating adapters, through the ``openai`` client."""
    from openai import OpenAI

    from .engine import load_engine
    from .router import Router
    from .server import TutorServer
    from .service import TutorService

    with tempfile.TemporaryDirectory() as tmp:
        engine = load_engine(benchmark_adapters(base, Path(tmp)), precision=precision, max_batch=clients,
                             max_queue=4 * clients).start()
        try:
            server = TutorServer(TutorService(engine, Router([], use_embeddings=False), max_tokens_cap=max_tokens),
                                 "127.0.0.1", 0).start()
            try:
                client = OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=600)
                _ask(client, "math", QUESTIONS[0], min(8, max_tokens))  # warm-up (within the cap)
                single = [_ask(client, "math", question, max_tokens) for question in QUESTIONS[:3]]
                jobs = [("math" if (c + r) % 2 == 0 else "science", QUESTIONS[(c + r) % len(QUESTIONS)])
                        for c in range(clients) for r in range(requests)]
                began = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    results = list(pool.map(lambda job: _ask(client, job[0], job[1], max_tokens), jobs))
                wall = time.perf_counter() - began
            finally:
                server.stop()
        finally:
            engine.stop()
    return Throughput(
        model=engine.base_id, dtype=str(next(engine.model.parameters()).dtype).removeprefix("torch."),
        adapters=tuple(engine.adapters), max_tokens=max_tokens, single_tokens=sum(n for n, _ in single),
        single_seconds=sum(s for _, s in single), clients=clients, requests=len(jobs),
        concurrent_tokens=sum(n for n, _ in results), concurrent_seconds=wall,
        mean_latency_s=sum(s for _, s in results) / len(results), largest_batch=engine.stats.largest_batch,
        mixed_batches=engine.stats.mixed_batches)


if __name__ == "__main__":  # the entry point before issue 41: say where the benchmark went rather than exit silently
    print("edulora: error: 'python -m edulora.serving.bench' is now 'python benchmarks/throughput.py'", file=sys.stderr)
    raise SystemExit(2)
