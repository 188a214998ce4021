"""Training on a tiny random Llama: behaviour, run directory, adapter reload, resume."""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, Trainer

from edulora.config import MOVED, RunConfig
from edulora.errors import EduloraError
from edulora.rundir import RunDir
from edulora.training import resume, train


def tiny_config(model_dir, data_file, out_dir, **training) -> RunConfig:
    config = RunConfig()
    config.model.name = str(model_dir)
    config.model.precision = "fp32"
    config.data.train_file = str(data_file)
    config.data.eval_fraction = 0.25
    config.data.max_length = 128
    config.training.batch_size = 2
    config.training.grad_accum = 2
    config.training.learning_rate = 3e-2
    # A random model's frozen embeddings give near-uniform outputs; adapting the MLPs too lets it overfit fast.
    config.lora.target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config.training.max_steps = 12
    config.training.logging_steps = 2
    config.training.eval_steps = 6
    config.training.save_steps = 6
    config.training.warmup_ratio = 0.0
    for key, value in training.items():  # flat names, as before the sub-sections (config.MOVED)
        section, name = MOVED.get(key, ("", key))
        setattr(getattr(config.training, section) if section else config.training, name, value)
    config.adapter.subject = "mathematics"
    config.output_dir = str(out_dir)
    config.run_name = "run"
    return config


#: The configs the ``trained`` run wrote to its config.yaml, in order.
CONFIG_WRITES: list[RunConfig] = []


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    from conftest import write_tutoring_file

    folder = tmp_path_factory.mktemp("train")
    data = write_tutoring_file(folder, 32)
    write = RunDir.write_config
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunDir, "write_config", lambda run, config: (CONFIG_WRITES.append(config), write(run, config))[1])
        return train(tiny_config(tiny_llama, data, folder / "runs")), tiny_llama


def test_loss_drops_on_a_small_overfit_set(trained):
    result, _ = trained
    assert result.summary.eval_loss_after < 0.9 * result.summary.eval_loss_before
    assert result.summary.optimizer_steps == 12


def test_run_directory_is_complete(trained):
    result, _ = trained
    run = result.run_dir
    for name in ("config.yaml", "data.json", "metrics.jsonl", "summary.json", "eval.jsonl",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/edulora.json",
                 "adapter/README.md"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    for key in ("eval_loss_before", "eval_loss_after", "train_tokens_per_s", "wall_s"):
        assert isinstance(summary[key], float)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m for m in metrics) and any("eval_loss" in m for m in metrics)
    info = json.loads((run / "adapter" / "edulora.json").read_text())
    assert info["subject"] == "mathematics" and len(info["data_fingerprint"]) == 64
    assert json.loads((run / "data.json").read_text())["train_tokens"]["trainable_tokens"] > 0


def test_the_config_is_written_once_as_the_run_used_it(trained):
    """Once sized for the model (the size class's recipe fills the keys left unset), not also before."""
    result, _ = trained
    assert len(CONFIG_WRITES) == 1
    assert result.run_dir.read_config() == CONFIG_WRITES[0]
    assert "r" in CONFIG_WRITES[0].lora.model_fields_set  # left unset in tiny_config: the size recipe's pick


def test_the_final_evaluation_is_not_repeated(trained):
    """The Trainer evaluates after its last step; train() reports that loss instead of a second pass."""
    result, _ = trained
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "eval_loss" in m]
    assert [m["step"] for m in evals] == [0, 6, 12]
    assert result.summary.eval_loss_after == evals[-1]["eval_loss"]
    assert 0 < result.summary.eval_seconds < result.summary.wall_s


def test_adapter_reloads_with_identical_logits(trained):
    result, base_dir = trained
    ids = torch.tensor([[1, 50, 60, 70, 80]])
    model = result.tutor.model
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        reloaded = PeftModel.from_pretrained(base, str(result.run_dir / "adapter")).eval()
        assert torch.allclose(reloaded(input_ids=ids).logits, expected, atol=1e-5)
        assert not torch.allclose(base.get_base_model()(input_ids=ids).logits if hasattr(base, "get_base_model")
                                  else AutoModelForCausalLM.from_pretrained(base_dir)(input_ids=ids).logits, expected, atol=1e-3)


def test_existing_run_directory_is_not_overwritten(trained):
    result, base_dir = trained
    config = tiny_config(base_dir, "unused.jsonl", result.run_dir.path.parent)
    with pytest.raises(EduloraError, match="--overwrite"):
        train(config)
    assert (result.run_dir / "summary.json").exists()


def test_all_labels_masked_fails_loudly(tiny_llama, tmp_path, write_jsonl, monkeypatch):
    from conftest import tutoring_rows

    from edulora.formatting import IGNORE_INDEX, EncodedExample, PromptFormat

    def prompt_only(*args, **kwargs):  # e.g. a template that renders no tutor text
        return EncodedExample([1, 2, 3], [IGNORE_INDEX] * 3)

    monkeypatch.setattr(PromptFormat, "encode", prompt_only)
    config = tiny_config(tiny_llama, write_jsonl(tutoring_rows(8)), tmp_path / "runs")
    with pytest.raises(EduloraError, match="every label is masked"):
        train(config)


def test_resume_continues_from_the_last_checkpoint(tiny_llama, tmp_path, write_jsonl, monkeypatch):
    from conftest import tutoring_rows

    data = write_jsonl(tutoring_rows(16))
    config = tiny_config(tiny_llama, data, tmp_path / "runs", max_steps=6, save_steps=3, eval_steps=3)
    original = Trainer.training_step
    calls = {"n": 0}

    def crash_after_four_steps(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4 * config.training.grad_accum:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", crash_after_four_steps)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(Trainer, "training_step", original)
    run_dir = tmp_path / "runs" / "run"
    assert (run_dir / "checkpoints" / "checkpoint-3").exists() and not (run_dir / "adapter").exists()
    result = resume(run_dir)
    assert result.summary.optimizer_steps == 6
    assert result.summary.resumed_from.endswith("checkpoint-3")
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()


def test_trains_on_the_sample_dialogues_with_scrubbing_recorded(tiny_llama, tmp_path):
    from edulora.data import sample_data_path

    config = tiny_config(tiny_llama, sample_data_path("dialogues.jsonl"), tmp_path / "runs",
                         max_steps=2, eval_steps=2, save_steps=2)
    config.data.max_length = 1024  # the keyed dialogues carry their worked solution in the prompt
    result = train(config)
    info = json.loads((result.run_dir / "data.json").read_text())
    assert info["train_tokens"]["truncated"] == 0 and info["train_tokens"]["trainable_tokens"] > 0
    # dialogue data is scrubbed by default; the sample's self-introductions are counted, never logged
    scrubbed = info["pii_scrubbed"]
    assert scrubbed["train"]["NAME"] + scrubbed["eval"]["NAME"] > 0
    assert "Sam" not in (result.run_dir / "data.json").read_text()
    assert result.summary.optimizer_steps == 2
