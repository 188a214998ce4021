"""A real training process killed mid-run (SIGKILL) or interrupted (SIGINT) must resume to the same end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Every test here trains a run; the disk-full one does it in this process through the CLI's main(), which
# the tiers' rule (tests/conftest.py) cannot tell from the data commands' fast uses of main().
pytestmark = pytest.mark.slow

MAX_STEPS = 50


def _command(model: Path, data: Path, out: Path, save_steps: int) -> list[str]:
    settings = {
        "model.name": model, "model.precision": "fp32", "data.train_file": data, "data.eval_fraction": 0.25,
        "data.max_length": 128, "lora.target_modules": "q_proj,v_proj", "training.batch_size": 1,
        "training.grad_accum": 1, "training.max_steps": MAX_STEPS, "training.save_steps": save_steps,
        "training.eval_steps": 1000, "training.selection.keep_best": False, "training.logging_steps": 1,
        "training.warmup_ratio": 0.0,
        "output_dir": out, "run_name": "run",
    }
    return [sys.executable, "-m", "edulora", "train", *[f"--set={k}={v}" for k, v in settings.items()]]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"training ended (rc {process.returncode}) before the test could interrupt it: "
                        f"{process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("training made no progress in time")
        time.sleep(0.05)


def _logged_steps(run: Path) -> list[int]:
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return [json.loads(line)["step"] for line in lines if '"loss"' in line and line.endswith("}")]


def _resume(run: Path) -> dict:
    result = subprocess.run([sys.executable, "-m", "edulora", "train", "--resume", str(run)],
                            check=False, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["optimizer_steps"] == MAX_STEPS
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    return summary


@pytest.fixture
def data(write_jsonl):
    from conftest import tutoring_rows

    return write_jsonl(tutoring_rows(24))


def test_sigkill_mid_run_resumes_to_the_same_step_count(tiny_llama, data, tmp_path):
    run = tmp_path / "runs" / "run"
    process = subprocess.Popen(_command(tiny_llama, data, tmp_path / "runs", save_steps=5), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run / "checkpoints" / "checkpoint-5" / "trainer_state.json").exists(), process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (run / "adapter").exists()
    assert json.loads((run / "summary.json").read_text())["status"] == "training"
    assert max(_logged_steps(run)) < MAX_STEPS

    # A kill during a save leaves a newer checkpoint folder without trainer_state.json (written last).
    newest = max((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    partial = run / "checkpoints" / f"checkpoint-{MAX_STEPS - 1}"
    shutil.copytree(newest, partial)
    (partial / "trainer_state.json").unlink()

    summary = _resume(run)
    assert summary["resumed_from"] == str(newest)


def test_sigint_saves_a_checkpoint_and_resumes(tiny_llama, data, tmp_path):
    run = tmp_path / "runs" / "run"
    # save_steps beyond max_steps: any checkpoint must come from the interrupt.
    process = subprocess.Popen(_command(tiny_llama, data, tmp_path / "runs", save_steps=1000), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(_logged_steps(run)) >= 3, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    checkpoints = [p for p in (run / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    assert len(checkpoints) == 1, stderr[-2000:]
    step = int(checkpoints[0].name.split("-")[1])
    assert 3 <= step < MAX_STEPS and not (run / "adapter").exists()
    assert "--resume" in stderr

    summary = _resume(run)
    assert summary["resumed_from"] == str(checkpoints[0])


def test_disk_full_mid_run_is_a_clear_error_and_resume_finishes(tiny_llama, data, tmp_path, monkeypatch, capsys):
    import errno

    import torch

    from edulora.cli import main
    from edulora.rundir import RunDir

    real_save = torch.save

    def fills_up_at_the_second_checkpoint(obj, f, *args, **kwargs):
        if "checkpoint-20" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_up_at_the_second_checkpoint)
    argv = _command(tiny_llama, data, tmp_path, save_steps=10)[3:]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "edulora" in line]
    assert len(err) == 1 and err[0].startswith("edulora: error: ") and "Traceback" not in err[0]
    assert "no space left on device" in err[0] and "edulora train --resume" in err[0] and "checkpoint-20" in err[0]
    run = tmp_path / "run"
    assert str(RunDir(run).latest_checkpoint()).endswith("checkpoint-10")  # the half-written one is not trusted
    assert not (run / "summary.json").exists() or json.loads((run / "summary.json").read_text())["status"] != "done"

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    assert main(["train", "--resume", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["optimizer_steps"] == MAX_STEPS
