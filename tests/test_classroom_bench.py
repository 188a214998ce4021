"""``benchmarks/classroom.py`` end to end on the tiny model (3 students, 2 turns), so the benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("classroom_bench", REPO / "benchmarks" / "classroom.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["transformers", "llamacpp"])
def test_classroom_runs_on_the_tiny_model(tiny_llama, tmp_path, monkeypatch, backend):
    if backend == "llamacpp":
        pytest.importorskip("xllamacpp")
    monkeypatch.setenv("EDULORA_CACHE", str(tmp_path / "cache"))  # the tiny base's GGUF export goes here
    out = tmp_path / "classroom.json"
    results = load_benchmark().main(["--backend", backend, "--students", "3", "--turns", "2", "--think", "0.05",
                                     "--max-tokens", "8", "--adapters", "2", "--base", str(tiny_llama),
                                     "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    runs = {r["mode"]: r for r in results["runs"]}
    assert set(runs) == {"mixed", "single"}
    assert runs["mixed"]["models"][:2] == ["math", "biology"] and len(runs["mixed"]["models"]) == 3
    for run in runs.values():
        assert run["turns"] == 6 and run["errors"] == 0 and run["rate_limited"] == 0, run["first_errors"]
        assert run["tokens"] > 0 and run["ttft_p95_s"] >= run["ttft_p50_s"] > 0
        assert run["aggregate_tokens_per_s"] > 0
        asked = [turn["asked_s"] for turn in run["per_turn"]]
        assert len(asked) == 6 and asked == sorted(asked) and asked[0] == 0
        assert sum(turn["tokens"] for turn in run["per_turn"]) == run["tokens"]
        assert run["prompt_tokens"] == sum(turn["prompt_tokens"] for turn in run["per_turn"]) > 0
        cached = sum(turn["cached_tokens"] for turn in run["per_turn"])
        assert run["prompt_tokens_evaluated"] == run["prompt_tokens"] - cached
        # llama.cpp's slots keep each conversation's prompt: second turns start from it (transformers: none).
        assert (cached > 0) == (backend == "llamacpp")
    assert results["mixed_over_single"][backend] > 0
