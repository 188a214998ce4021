"""Two-process DDP (gloo, CPU) must train the same adapter as one process with the same global batch.

The equivalence is exact only when every optimizer step sees the same rows with the same weights:
4 training rows, no packing, a global batch of 4 (1 process x 2 rows x 2 accumulation steps, or
2 processes x 1 row x 2 steps), no dropout, fp32. The loss is a token-weighted sum divided by the
global token count, so the split of rows between processes must not change the gradient.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def _settings(model: Path, folder: Path, name: str, batch: int) -> list[str]:
    return [f"--set={key}={value}" for key, value in {
        "model.name": model, "model.precision": "fp32",
        "data.train_file": folder / "train.jsonl", "data.eval_file": folder / "eval.jsonl",
        "data.packing": "false", "data.max_length": 96,
        "lora.dropout": 0.0, "lora.r": 4, "lora.target_modules": "q_proj,v_proj,gate_proj",
        "training.batch_size": batch, "training.grad_accum": 2, "training.max_steps": 3,
        "training.learning_rate": 3e-2, "training.warmup_ratio": 0.0, "training.group_by_length": "false",
        "training.logging_steps": 1, "training.eval_steps": 3, "training.save_steps": 3, "training.seed": 0,
        "output_dir": folder / "runs", "run_name": name,
    }.items()]


def _env() -> dict[str, str]:
    # One thread per process: two processes share the test machine's cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")
def test_two_process_ddp_matches_one_process(tiny_llama, tmp_path):
    from conftest import tutoring_rows

    rows = tutoring_rows(6)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    single = [sys.executable, "-m", "edulora", "train", *_settings(tiny_llama, tmp_path, "single", batch=2)]
    ddp = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "edulora", "train",
           *_settings(tiny_llama, tmp_path, "ddp", batch=1)]
    with ThreadPoolExecutor(2) as pool:  # both runs at once: the test's wall time is the slower one
        jobs = [pool.submit(subprocess.run, cmd, capture_output=True, text=True, env=_env(), timeout=300)
                for cmd in (single, ddp)]
        results = [job.result() for job in jobs]
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]

    runs = tmp_path / "runs"
    # Each process saves its own RNG state: a second file proves two processes really trained.
    assert (runs / "ddp" / "checkpoints" / "checkpoint-3" / "rng_state_1.pth").exists()
    assert not (runs / "single" / "checkpoints" / "checkpoint-3" / "rng_state_1.pth").exists()
    for name in ("single", "ddp"):
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["optimizer_steps"] == 3 and summary["status"] == "done"
    # Only the main process logs: one line per logged step, not one per process.
    ddp_losses = [m for m in map(json.loads, (runs / "ddp" / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert [m["step"] for m in ddp_losses] == [1, 2, 3]

    single_weights = load_file(runs / "single" / "adapter" / "adapter_model.safetensors")
    ddp_weights = load_file(runs / "ddp" / "adapter" / "adapter_model.safetensors")
    assert single_weights.keys() == ddp_weights.keys()
    trained_b_nonzero = all(float(w.abs().max()) > 0 for k, w in ddp_weights.items() if "lora_B" in k)
    assert trained_b_nonzero  # training moved the weights, so equality below is not trivial
    for key in single_weights:
        assert torch.allclose(single_weights[key], ddp_weights[key], atol=1e-5, rtol=1e-4), key
    single_losses = [m for m in map(json.loads, (runs / "single" / "metrics.jsonl").read_text().splitlines())
                     if "loss" in m]
    assert [m["loss"] for m in single_losses] == pytest.approx([m["loss"] for m in ddp_losses], rel=1e-4)


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED")])
def test_shipped_accelerate_configs_parse(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file
    from conftest import REPO

    config = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.name == kind and config.num_processes >= 2 and not config.use_cpu


@pytest.mark.parametrize("variable, name", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_sharded_launch_without_a_gpu_is_a_clear_error(variable, name, tiny_llama, tmp_path, monkeypatch):
    from edulora.config import RunConfig
    from edulora.errors import EduloraError
    from edulora.training import train

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the sharded launch would be allowed")
    monkeypatch.setenv(variable, "true")
    config = RunConfig()
    config.model.name = str(tiny_llama)
    config.output_dir = str(tmp_path / "runs")
    with pytest.raises(EduloraError, match=f"{name} runs on GPUs only.*ddp.yaml"):
        train(config)
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_adapter_is_saved_from_the_gathered_state_when_given(tiny_llama, tmp_path):
    """Under FSDP the model's own parameters are one shard; the gathered state dict is what is saved."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edulora.config import LoraSettings
    from edulora.modeling import AdapterInfo, attach_lora, save_adapter

    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraSettings(r=4, target_modules=["q_proj"]))
    gathered = {k: (torch.full_like(v, 0.25) if "lora_B" in k else v) for k, v in model.state_dict().items()}
    save_adapter(model, AutoTokenizer.from_pretrained(tiny_llama), tmp_path / "adapter", AdapterInfo(base_model="tiny"),
                 "# card\n", state_dict=gathered)
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    lora_b = [w for k, w in saved.items() if "lora_B" in k]
    assert lora_b and all(bool((w == 0.25).all()) for w in lora_b)
    assert all(float(w.detach().abs().max()) == 0 for n, w in model.named_parameters() if "lora_B" in n)
