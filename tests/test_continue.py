"""SFT continuing a trained adapter (``model.adapter`` with ``training.method=sft``): the weekly loop's step.

Tiny random Llama. The continued run must start from the old adapter's weights, keep its base, prompt
format and LoRA shape, mix in the stated share of the data it was trained on (never its held-out
records), record what it continued, and refuse what cannot work in one line.
"""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

import edulora as el
from edulora.cli import main
from edulora.evaluation.runner import EvalSettings, eval_loss
from edulora.training.data import load_data

COMMON = ["model.precision=fp32", "data.max_length=64", "lora.target_modules=q_proj,v_proj", "training.batch_size=2",
          "training.grad_accum=1", "training.logging_steps=1", "training.warmup_ratio=0",
          "training.selection.keep_best=false", "training.selection.pedagogy_sample=0",
          "training.selection.retention_sample=0", "training.eval_steps=100", "training.save_steps=100"]


def corrections(n: int = 4) -> list[dict]:
    """Teachers' better replies, phrased unlike the first run's data: questions, not the answer."""
    return [{"instruction": f"What is {a} times 4?", "response": f"How many do {a} groups of 4 make together?",
             "metadata": {"subject": "mathematics", "grade_level": "elementary", "teaching_style": "socratic",
                          "answer": str(4 * a)}} for a in range(3, 3 + n)]


@pytest.fixture(scope="module")
def deployed(tiny_llama, tmp_path_factory):
    """The adapter in use: 16 records, a quarter held out, two steps."""
    from conftest import write_tutoring_file

    folder = tmp_path_factory.mktemp("deployed")
    data = write_tutoring_file(folder, 16)
    config = el.load_config(None, [f"model.name={tiny_llama}", f"data.train_file={data}", "data.eval_fraction=0.25",
                                   *COMMON, "training.max_steps=2", f"output_dir={folder}", "run_name=deployed"])
    return el.train(config).run_dir


def _continue(deployed, new_data, out, *extra: str) -> el.RunConfig:
    return el.load_config(None, [f"model.adapter={deployed}", f"data.train_file={new_data}",
                                 f"data.eval_file={deployed.eval_file}", *COMMON, "training.max_steps=2",
                                 f"output_dir={out}", "run_name=week2", *extra])


def test_sft_continues_the_adapter_from_its_weights_with_its_previous_data(deployed, tiny_llama, write_jsonl,
                                                                          tmp_path):
    new = write_jsonl(corrections(4), "corrections.jsonl")
    config = _continue(deployed, new, tmp_path, "lora.r=4")  # lora.* is the adapter's own: r=4 is not applied

    # Half the training examples come from the deployed run's training data, none from its held-out records.
    split = load_data(config)
    held_out = {json.dumps(r.to_dict(), sort_keys=True) for r in deployed.eval_records()}
    old_train = [json.dumps(r.to_dict(), sort_keys=True) for r in el.load_records(deployed.read_data_info()["train_file"])]
    drawn = [json.dumps(r.to_dict(), sort_keys=True) for r in split.train[4:]]
    assert [r.to_dict()["response"] for r in split.train[:4]] == [c["response"] for c in corrections(4)]
    assert len(drawn) == 4 and all(d in old_train and d not in held_out for d in drawn)
    assert split.info["previous"] == {"adapter": str(deployed), "files": [str(deployed.read_data_info()["train_file"])],
                                      "records": 12, "held_out_left_out": 4, "fraction": 0.5, "added": 4}

    run = el.train(config)
    # It starts where the deployed adapter is: its loss before any step is the deployed adapter's on the same
    # records (measured apart, by the evaluation), not the bare base model's.
    old = el.Tutor.load(deployed, precision="fp32")
    records = deployed.eval_records()
    settings = EvalSettings(max_length=64)
    old_loss, _ = eval_loss(old, records, settings)
    with old.base():
        base_loss, _ = eval_loss(old, records, settings)
    assert run.summary.eval_loss_before == pytest.approx(old_loss, rel=1e-4)
    assert abs(base_loss - old_loss) > 1e-3
    assert run.summary.optimizer_steps == 2 and run.summary.train_examples == 8

    # A normal run: its adapter keeps the deployed one's base, format and LoRA shape, and says what it continued.
    adapter = run.run_dir.adapter_dir
    info = json.loads((adapter / "edulora.json").read_text())
    assert info["base_model"] == str(tiny_llama) and info["template"] == "chat"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 16
    assert run.run_dir.read_data_info()["start_adapter"] == str(deployed)
    card = (adapter / "README.md").read_text()
    assert f"Continued from | {deployed}" in card and "| LoRA | r=16, alpha=32," in card  # not lora.r=4
    start, end = (load_file(str(a / "adapter_model.safetensors")) for a in (deployed.adapter_dir, adapter))
    assert start.keys() == end.keys() and any(not start[k].equal(end[k]) for k in start)
    assert el.Tutor.load(run.run_dir).ask("What is 3 times 4?").tokens >= 0

    # Next week continues this run: its previous data is this week's records and, still, the first run's.
    later = load_data(_continue(run.run_dir, new, tmp_path / "later"))
    assert later.info["previous"]["files"] == [str(new.resolve()), *split.info["previous"]["files"]]

    # Without the previous data (previous_fraction=0) only the new records train.
    assert len(load_data(_continue(deployed, new, tmp_path, "data.previous_fraction=0")).train) == 4


def _refused(argv: list[str], capsys) -> str:
    assert main(["train", *[f"--set={s}" for s in argv]]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]  # beside progress bars of model loading
    assert len(errors) == 1 and errors[0].startswith("edulora: error: ") and "Traceback" not in err, err
    return errors[0]


def test_continuing_refuses_in_one_line_what_cannot_work(deployed, tiny_llama, tiny_gpt2, write_jsonl, tmp_path,
                                                         capsys):
    new = write_jsonl(corrections(2), "corrections.jsonl")
    common = [f"data.train_file={new}", f"data.eval_file={deployed.eval_file}", *COMMON, f"output_dir={tmp_path}"]

    # The data the adapter was trained on is gone (the run moved to another machine): named, with the way out.
    moved = tmp_path / "moved-run"
    shutil.copytree(deployed, moved)
    info = json.loads((moved / "data.json").read_text())
    gone = str(tmp_path / "gone.jsonl")
    (moved / "data.json").write_text(json.dumps({**info, "train_file": gone}))
    err = _refused([f"model.adapter={moved}", *common, "run_name=a"], capsys)
    assert gone in err and "data.previous_file" in err and "data.previous_fraction=0" in err

    # An adapter folder on its own records no training data: previous_file must say where it is.
    alone = tmp_path / "alone"
    shutil.copytree(deployed.adapter_dir, alone)
    err = _refused([f"model.adapter={alone}", *common, "run_name=b"], capsys)
    assert "data.previous_file" in err
    old_data = deployed.read_data_info()["train_file"]
    assert len(load_data(el.load_config(None, [f"model.adapter={alone}", f"data.previous_file={old_data}",
                                               *common])).train) == 4

    # Another base model than the one the adapter was trained on.
    err = _refused([f"model.adapter={deployed}", f"model.name={tiny_gpt2}", *common, "run_name=c"], capsys)
    assert "was trained on" in err and str(tiny_gpt2) in err
    # The same family, narrower: every LoRA matrix is the wrong shape.
    narrow = _narrow_llama(tiny_llama, tmp_path / "narrow-llama")
    err = _refused([f"model.adapter={deployed}", f"model.name={narrow}", *common, "run_name=d"], capsys)
    assert "was trained on" in err and "size mismatch" in err
    assert not any((tmp_path / name / "adapter").exists() for name in "abcd")


def _narrow_llama(like, out):
    """A Llama of half the tiny one's width, with its tokenizer."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    config = AutoConfig.from_pretrained(like)
    config.hidden_size, config.intermediate_size = 32, 64
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(like).save_pretrained(out)
    return out
