"""``benchmarks/classroom.py`` (3 students, 2 turns) and ``benchmarks/throughput.py`` end to end on the tiny
model, so the benchmarks cannot rot."""

from __future__ import annotations

import importlib.util
import json
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str = "classroom"):
    spec = importlib.util.spec_from_file_location(f"{name}_bench", REPO / "benchmarks" / f"{name}.py")
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


def test_throughput_runs_on_the_tiny_model(tiny_llama, tmp_path, capsys):
    out = tmp_path / "throughput.json"
    numbers = load_benchmark("throughput").main(["--base", str(tiny_llama), "--precision", "fp32",
                                                 "--max-new-tokens", "4", "--clients", "2", "--requests", "2",
                                                 "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(numbers))
    assert numbers["adapters"] == ("math", "science") and numbers["dtype"] == "float32"
    assert numbers["requests"] == 4 and 0 < numbers["concurrent_tokens"] <= 4 * 4
    assert 0 < numbers["single_tokens"] <= 3 * 4 and numbers["single_tokens_per_s"] > 0
    assert numbers["aggregate_tokens_per_s"] > 0 and 1 <= numbers["largest_batch"] <= 2
    printed = capsys.readouterr().out
    assert "single stream:" in printed and "2 concurrent clients:" in printed


def test_throughput_refuses_a_bad_count(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_benchmark("throughput").main(["--clients", "0"])
    assert exit_.value.code == 2 and "--clients: 0: must be at least 1" in capsys.readouterr().err


def test_the_old_module_entry_point_names_the_script(capsys):
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("edulora.serving.bench", run_name="__main__")
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("edulora: error: 'python -m edulora.serving.bench' is now "
                                       "'python benchmarks/throughput.py'\n")
