"""ORPO (training.method=orpo): the DPO run with TRL's ORPOTrainer and no reference model; tiny random Llama."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from test_preference import COMMON, toy_pairs

import edulora as el
from edulora.cli import main


def _orpo(model, pairs, out, *extra: str) -> el.RunConfig:
    return el.load_config(None, [f"model.name={model}", f"data.train_file={pairs}", "training.method=orpo",
                                 "data.eval_fraction=0.2", *COMMON, "training.learning_rate=5e-3",
                                 "training.max_steps=4", "training.eval_steps=100", "training.save_steps=2",
                                 f"output_dir={out}", "run_name=orpo", *extra])


def test_orpo_lowers_the_held_out_loss_writes_a_preference_run_and_resumes(tiny_llama, write_jsonl, tmp_path):
    pairs = write_jsonl(toy_pairs(), "pairs.jsonl")
    run = el.train(_orpo(tiny_llama, pairs, tmp_path))
    summary = run.summary
    assert summary.method == "orpo" and summary.optimizer_steps == 4
    assert summary.eval_loss_after < summary.eval_loss_before
    # ORPO's own held-out measures: the chosen reply became likelier relative to the rejected one.
    assert {"nll_loss", "log_odds_chosen", "rewards/margins"} <= set(summary.preference)
    steps = [row for row in run.run_dir.read_metrics() if "loss" in row]
    assert steps[-1]["log_odds_chosen"] > steps[0]["log_odds_chosen"] and steps[-1]["loss"] < steps[0]["loss"]

    on_disk = json.loads(run.run_dir.summary_file.read_text())
    assert on_disk["method"] == "orpo" and on_disk["eval_loss_after"] == pytest.approx(summary.eval_loss_after)
    assert run.run_dir.read_data_info()["method"] == "orpo"
    adapter = run.run_dir.adapter_dir
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter / "ref").exists()
    card = (adapter / "README.md").read_text()
    assert "## Preference tuning" in card and "ORPO (TRL), beta (lambda) = 0.1" in card and "DPO" not in card
    assert el.Tutor.load(run.run_dir).ask("What is 2 times 3?").tokens >= 0

    # As if killed after the step-2 checkpoint (so before the summary, which only a finished run has):
    # resume continues from it to the end, without a reference.
    shutil.rmtree(run.run_dir.checkpoints_dir / "checkpoint-4")
    run.run_dir.summary_file.unlink()
    resumed = el.resume(run.run_dir).summary
    assert resumed.method == "orpo" and resumed.optimizer_steps == 4
    assert resumed.resumed_from.endswith("checkpoint-2") and resumed.eval_loss_before == summary.eval_loss_before


def test_a_long_conversation_loses_its_oldest_tokens_never_the_reply(tiny_llama):
    from transformers import AutoTokenizer

    from edulora.training.preference import keep_prompt_ends

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    prompt = " ".join(f"turn{i}" for i in range(60)) + " end of prompt"
    rows = {"prompt": [prompt, "short"], "chosen": [" How many groups?"], "rejected": [" It is 6."]}
    rows = {k: v * 2 if len(v) == 1 else v for k, v in rows.items()}
    cut = keep_prompt_ends(rows, tokenizer, max_length=32)
    assert cut["chosen"] == rows["chosen"] and cut["prompt"][1] == "short"
    kept = cut["prompt"][0]
    assert prompt.endswith(kept) and kept.endswith("end of prompt") and len(kept) < len(prompt)
    reply = len(tokenizer(rows["chosen"][0], add_special_tokens=False)["input_ids"])
    assert len(tokenizer(kept, add_special_tokens=False)["input_ids"]) + reply <= 32


def test_dpo_settings_with_orpo_and_an_orpo_less_trl_are_one_line_errors(tiny_llama, write_jsonl, tmp_path,
                                                                         capsys, monkeypatch):
    pairs = write_jsonl(toy_pairs(4), "pairs.jsonl")
    argv = ["train", f"--set=model.name={tiny_llama}", f"--set=data.train_file={pairs}", "--set=training.method=orpo",
            f"--set=output_dir={tmp_path}"]
    assert main([*argv, "--set=training.preference.loss_type=ipo"]) == 2
    err = capsys.readouterr().err
    assert "config: training.preference.loss_type applies to training.method=dpo only" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    # A TRL whose experimental package has no ORPO: the import fails, the run is refused in one line.
    monkeypatch.delitem(sys.modules, "edulora.training.orpo", raising=False)
    monkeypatch.delattr("edulora.training.orpo", raising=False)
    monkeypatch.setitem(sys.modules, "trl.experimental.orpo", None)
    assert main([*argv, "--set=run_name=no-orpo"]) == 2
    err = capsys.readouterr().err
    assert "config: training.method=orpo needs trl.experimental.orpo" in err and "training.method=dpo" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
