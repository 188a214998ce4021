"""Shared helpers for the serving tests: tiny adapters in run-directory shape, a server in a thread.

Adapters get random (non-zero) LoRA weights instead of being trained: that takes milliseconds and
makes each adapter answer differently, which is what mixed-batch tests need to notice mistakes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

MATH_QUESTIONS = ["What is 7 times 8?", "How do I add fractions with different denominators?",
                  "Solve 2x + 3 = 11 for x.", "What is the area of a circle with radius 3?",
                  "Why is any number times zero equal to zero?"]
BIOLOGY_QUESTIONS = ["What does the mitochondria do in a cell?", "How do plants make food by photosynthesis?",
                     "What is the difference between DNA and RNA?", "Why do we need red blood cells?",
                     "How does natural selection lead to evolution?"]


def make_adapter(base_dir: Path, run_dir: Path, subject: str, grade: str, style: str, questions: list[str],
                 seed: int) -> Path:
    """A run directory (``adapter/`` + ``eval.jsonl``) holding a random LoRA adapter for ``base_dir``."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edulora.modeling import AdapterInfo, save_adapter

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, task_type=TaskType.CAUSAL_LM,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, config)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    info = AdapterInfo(base_model=str(base_dir), subject=subject, grade_level=grade, teaching_style=style,
                       template="chat", description=f"{subject} tutor")
    save_adapter(peft_model, tokenizer, run_dir / "adapter", info, f"# {subject} test adapter\n")
    rows = [{"instruction": q, "response": "-", "metadata": {"subject": subject}} for q in questions]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return run_dir


def serve_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def launch_serve(*args: str) -> tuple[subprocess.Popen, str]:
    """``edulora serve ARGS`` as a child process, and its URL once it prints where the page is."""
    command = [sys.executable, "-m", "edulora", "serve", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=serve_env())
    url, lines, deadline = None, [], time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Teacher page:"):
            url = line.split()[2].rstrip("/")
    if url is None:
        process.kill()
        raise AssertionError("edulora serve did not start:\n" + "".join(lines))
    return process, url


@pytest.fixture(scope="session")
def tiny_runs(tiny_llama, tmp_path_factory) -> dict[str, Path]:
    """Two run directories on the tiny Llama: ``math`` (mathematics) and ``bio`` (biology)."""
    folder = tmp_path_factory.mktemp("serving-runs")
    return {
        "math": make_adapter(tiny_llama, folder / "math-run", "mathematics", "middle_school", "socratic",
                             MATH_QUESTIONS, seed=1),
        "bio": make_adapter(tiny_llama, folder / "bio-run", "biology", "high_school", "step_by_step",
                            BIOLOGY_QUESTIONS, seed=2),
    }


@pytest.fixture(scope="session")
def tiny_engine(tiny_runs):
    """One engine for the session (loading is the slow part); started, stopped at the end."""
    from edulora.serving.engine import load_engine

    engine = load_engine([(name, path) for name, path in tiny_runs.items()], precision="fp32",
                         max_batch=8, max_queue=256, default_max_tokens=16)
    engine.start()
    yield engine
    engine.stop()


def request_as(server, token: str, method: str, path: str, body: dict | None = None):
    """``method path`` on ``server`` with ``token`` as the bearer key and ``body`` as JSON: (status, parsed answer)."""
    import http.client

    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None
