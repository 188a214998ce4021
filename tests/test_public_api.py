"""The notebook API of the README, run as a user would: train, resume, ask, compare with the base, evaluate.

On a tiny random Llama (fast); ``-m e2e`` runs the same story on the packaged SmolLM2.
"""

import csv
import json

import pytest
import torch
from transformers import Trainer

import edulora as el


def test_public_names_are_exported():
    for name in ("load_config", "train", "resume", "Tutor", "Sampling", "load_records", "evaluate", "EvalResult",
                 "RunDir", "RunConfig", "RunResult", "RunSummary", "Example", "Dialogue", "Metadata", "GradeLevel",
                 "TeachingStyle", "EduloraError", "PromptFormat", "__version__"):
        assert name in el.__all__, name
        assert getattr(el, name) is not None
    with pytest.raises(AttributeError):
        el.no_such_name  # noqa: B018


def _config(model: str, data, out, lr: float, **training) -> "el.RunConfig":
    overrides = [f"model.name={model}", f"data.train_file={data}", "data.eval_fraction=0.25", "data.max_length=128",
                 "training.batch_size=2", "training.grad_accum=1", f"training.learning_rate={lr}",
                 "training.warmup_ratio=0", "training.logging_steps=2", "training.selection.pedagogy_sample=4",
                 "training.selection.pedagogy_max_new_tokens=8", "training.selection.retention_sample=2", f"output_dir={out}", "run_name=algebra",
                 "adapter.grade_level=grade 7", "adapter.teaching_style=Socratic method"]
    overrides += [f"training.{k}={v}" for k, v in training.items()]
    if "tiny" in str(model):
        overrides.append("model.precision=fp32")
    return el.load_config("configs/mathematics.yaml", overrides)


def _csv_export(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["question", "response", "subject", "answer"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"question": row["instruction"], "response": row["response"],
                             "subject": row["metadata"]["subject"], "answer": row["response"].split()[-1].rstrip(".")})


def _story(model: str, tmp_path, monkeypatch, rows: int = 24, lr: float = 3e-2):
    from conftest import REPO, tutoring_rows, write_tutoring_file

    monkeypatch.chdir(REPO)  # the README's snippet names configs/ relative to a checkout
    data = write_tutoring_file(tmp_path, rows)
    config = _config(model, data, tmp_path / "runs", lr, max_steps=6, eval_steps=3, save_steps=3)
    assert config.lora.r == 32 and config.adapter.grade_level == "middle_school"
    assert config.adapter.teaching_style == "socratic"

    # A run killed after its first checkpoint, then resumed: el.resume continues it to the planned steps.
    original = Trainer.training_step
    calls = {"n": 0}

    def killed_after_four_steps(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", killed_after_four_steps)
    with pytest.raises(KeyboardInterrupt):
        el.train(config)
    monkeypatch.setattr(Trainer, "training_step", original)
    run = el.resume(tmp_path / "runs" / "algebra")
    assert isinstance(run, el.RunResult) and isinstance(run.run_dir, el.RunDir)
    assert isinstance(run.summary, el.RunSummary)
    assert run.summary.status == "done" and run.summary.optimizer_steps == 6
    assert run.summary.resumed_from.endswith("checkpoint-3")
    assert set(run.summary.pedagogy["after"]) >= {"question_rate"}

    run_dir = el.RunDir.open(tmp_path / "runs" / "algebra")
    assert run_dir.read_summary() == run.summary
    assert run_dir.read_config().lora.r == 32
    assert any("eval_loss" in row for row in run_dir.read_metrics())
    assert len(run_dir.eval_records()) == run.summary.eval_examples

    tutor = el.Tutor.load(run_dir, precision="fp32")
    assert tutor.metadata.teaching_style == el.TeachingStyle.SOCRATIC
    sampling = el.Sampling(max_new_tokens=12)
    question = "Why is 3/4 + 1/8 = 7/8?"
    reply = tutor.ask(question, grade_level="middle_school", teaching_style="socratic", sampling=sampling)
    assert isinstance(reply, el.Reply) and reply.text and 0 < reply.tokens <= 12 and reply.seconds > 0
    with tutor.base():
        before = tutor.ask(question, grade_level="middle_school", teaching_style="socratic", sampling=sampling)
    assert before.text != reply.text  # the adapter changes what the tutor says
    again = tutor.ask(question, grade_level="middle_school", teaching_style="socratic", sampling=sampling)
    assert again.text == reply.text  # the adapter is back on after the block, and greedy is deterministic
    replies = tutor.reply([[{"role": "user", "content": "What is osmosis?"}]], sampling)
    assert len(replies) == 1 and replies[0].text

    export = tmp_path / "export.csv"
    _csv_export(export, tutoring_rows(rows))
    records = el.load_records(export, column_map={"instruction": "question"})
    assert records[0].instruction.startswith("What is") and records[0].metadata.answer
    settings = el.EvalSettings(max_new_tokens=8, bootstrap_resamples=50, max_length=128, retention_limit=4,
                               retention_max_new_tokens=8)
    result = el.evaluate([tutor], records[:6], settings, include_base=True)
    assert isinstance(result, el.EvalResult)
    assert [m.name for m in result.models] == ["base", "algebra"]
    assert result.model("algebra").eval_loss < result.model("base").eval_loss
    paths = result.write_reports(tmp_path / "reports")
    assert {p.name for p in paths.values()} == {"report.html", "report.md", "report.json"}
    assert json.loads(paths["json"].read_text())["summary"]["algebra"]["eval_loss"] > 0
    return tutor


def test_the_readme_notebook_story_on_a_tiny_model(tiny_llama, tmp_path, monkeypatch):
    _story(str(tiny_llama), tmp_path, monkeypatch)


def test_base_tutor_and_bad_metadata(tiny_llama):
    base = el.Tutor.load(base=str(tiny_llama), precision="fp32")
    assert base.is_base and base.name == "base"
    reply = base.ask("What is 2 + 2?", answer="4", sampling=el.Sampling(max_new_tokens=4))
    assert reply.tokens <= 4
    with pytest.raises(el.EduloraError, match="grade_level"):
        base.ask("What is 2 + 2?", grade_level="grade 42")
    with pytest.raises(el.EduloraError, match="adapter: unknown grade_level"):
        el.load_config(None, ["adapter.grade_level=grade 42"])


def test_the_key_reaches_the_prompt_but_never_the_labels(tiny_llama):
    from edulora.formatting import IGNORE_INDEX

    tutor = el.Tutor.load(base=str(tiny_llama), precision="fp32")
    fmt = tutor.format
    record = el.Example(instruction="A triangle has base 10 cm and height 6 cm. How do I find its area?",
                        response="What do you multiply base and height by?",
                        metadata=el.Metadata(subject="mathematics", extra={"answer": "30 cm²",
                                                                           "solution": "10 × 6 / 2 = 30"}))
    prompt = fmt.render(fmt.prompt_and_reference(record)[0])
    assert "30 cm²" in prompt and "10 × 6 / 2 = 30" in prompt and "never state the final answer" in prompt
    encoded = fmt.encode(record, 512)
    learned = tutor.tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])
    assert "30" not in learned and "multiply" in learned
    asked = tutor.question("How do I find its area?", answer="30 cm²")
    assert "30 cm²" in asked[0]["content"]
    off = el.PromptFormat.create(tutor.tokenizer, answer_key=False)
    assert "30 cm²" not in off.render(off.prompt_and_reference(record)[0])


@pytest.mark.e2e
@pytest.mark.xdist_group("e2e")
def test_the_readme_notebook_story_on_the_packaged_model(packaged_model_dir, tmp_path, monkeypatch):
    torch.manual_seed(0)
    _story(str(packaged_model_dir), tmp_path, monkeypatch, rows=16, lr=2e-3)
