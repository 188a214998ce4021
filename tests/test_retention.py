"""Retention: drift from the base on general prompts (KL, degeneration), the training guard, replay mixing."""

from __future__ import annotations

import contextlib
import json

import pytest

from edulora.config import load_config
from edulora.errors import EduloraError
from edulora.evaluation.retention import (
    RetentionProbe,
    distinct_n,
    drift_reading,
    is_degenerate,
    longest_repeat,
    retention_records,
)


def test_repetition_measures():
    assert distinct_n("the cat sat on the mat") == 1.0
    assert distinct_n("go go go go") == pytest.approx(1 / 3)
    assert distinct_n("") == 1.0
    assert longest_repeat("a b c d a b c e") == 3
    assert longest_repeat("no repeats at all here") == 0
    assert longest_repeat("la la la la") == 3  # overlapping occurrences count: a loop
    assert is_degenerate("")
    assert is_degenerate("I like it. " * 3)  # "i like it i like it" repeats 6 words
    assert not is_degenerate("Paris is the capital of France, and Berlin is the capital of Germany.")
    assert drift_reading(0.0).startswith("negligible")
    assert drift_reading(3.0).startswith("large")


def test_packaged_retention_set_covers_four_languages_and_four_kinds():
    records = retention_records()
    assert len(records) >= 40
    assert {r.metadata.extra["language"] for r in records} == {"en", "fr", "es", "de"}
    assert {r.metadata.extra["topic"] for r in records} == {"everyday facts", "instructions", "writing", "arithmetic"}
    from edulora.training.data import load_replay

    prompts = {r.instruction for r in records}
    assert not prompts & {r.instruction for r in load_replay()}  # replay never trains on what is measured


@pytest.fixture(scope="module")
def fresh_adapter(tiny_llama):
    """A tiny model with a LoRA adapter just attached (B = 0: it changes nothing yet)."""
    import torch

    from edulora.config import LoraSettings, ModelConfig
    from edulora.formatting import PromptFormat
    from edulora.modeling import AdapterInfo, attach_lora, load_base_model
    from edulora.tutor import Tutor

    model, tokenizer, _ = load_base_model(ModelConfig(name=str(tiny_llama), precision="fp32"))
    torch.manual_seed(0)
    model = attach_lora(model, LoraSettings(r=4))
    fmt = PromptFormat.create(tokenizer)
    return Tutor(model, tokenizer, fmt, AdapterInfo(base_model=str(tiny_llama)), "fresh", adapter="default")


def test_kl_is_zero_for_a_zero_initialised_adapter_and_grows_when_it_moves(fresh_adapter):
    probe = RetentionProbe(retention_records(limit=4), fresh_adapter.format, max_new_tokens=8, batch_size=2)
    values, tokens = probe.kl_per_prompt(fresh_adapter)
    assert tokens > 0 and len(values) > 0
    assert max(abs(v) for v in values) < 1e-7
    assert probe.drift(fresh_adapter.as_base()) == 0.0
    import edulora as el

    same = el.measure_retention(fresh_adapter, retention_records(limit=2), max_new_tokens=4)
    assert isinstance(same, el.Retention) and same.drift < 1e-7 and same.reading.startswith("negligible")
    with moved_adapter(fresh_adapter):
        moved = probe.measure(fresh_adapter, resamples=100)
    assert moved.drift > 1e-3 and moved.low <= moved.drift <= moved.high
    assert moved.n == len(values) and 0.0 <= moved.degenerate.value <= 1.0


def test_own_replies_come_from_the_speaker_and_the_drift_from_the_tutors_network(fresh_adapter, tiny_llama):
    """A speaker (the tutor loaded again, e.g. on llama.cpp) writes the replies the degeneration is read from;
    the KL still comes from the tutor's PyTorch network along the base's continuations."""
    from edulora.tutor import Tutor

    speaker = Tutor.load(None, base=str(tiny_llama), precision="fp32")  # a second loading: its own network
    probe = RetentionProbe(retention_records(limit=3), fresh_adapter.format, max_new_tokens=10, batch_size=2)
    with moved_adapter(fresh_adapter):
        alone = probe.measure(fresh_adapter, resamples=50)
        spoken = probe.measure(fresh_adapter, resamples=50, speaker=speaker)
        own = probe.replies(fresh_adapter)
    assert alone.drift > 1e-3
    assert (spoken.drift, spoken.low, spoken.high, spoken.tokens) == (alone.drift, alone.low, alone.high, alone.tokens)
    heard = [r.text for r in speaker.generate(probe.messages, probe.sampling)]
    assert heard != own  # the tuned network and the speaker answer differently, so the source shows
    assert spoken.distinct_2 == sum(distinct_n(t) for t in heard) / len(heard)
    assert spoken.longest_repeat == sum(longest_repeat(t) for t in heard) / len(heard)
    assert alone.longest_repeat == sum(longest_repeat(t) for t in own) / len(own)


def test_the_bases_own_replies_are_its_continuations_whatever_the_speaker(fresh_adapter, tiny_llama):
    """The base's loop rate is read from the continuations the KL is taken along (decoded once), not
    decoded again by a speaker."""
    from edulora.tutor import Tutor

    speaker = Tutor.load(None, base=str(tiny_llama), precision="fp32")
    probe = RetentionProbe(retention_records(limit=3), fresh_adapter.format, max_new_tokens=10, batch_size=2)
    base = fresh_adapter.as_base()
    spoken = probe.measure(base, resamples=50, speaker=speaker)
    continuations = probe.references(base)[2]
    assert spoken.drift == 0.0
    assert spoken.longest_repeat == sum(longest_repeat(t) for t in continuations) / len(continuations)
    assert spoken.distinct_2 == sum(distinct_n(t) for t in continuations) / len(continuations)


@contextlib.contextmanager
def moved_adapter(tutor):
    """The tutor's LoRA B matrices set to random values (the adapter then changes the outputs), zeroed after."""
    import torch

    lora_b = [p for n, p in tutor.model.named_parameters() if "lora_B" in n]
    with torch.no_grad():
        for p in lora_b:
            p.normal_(std=0.5)
    try:
        yield
    finally:
        with torch.no_grad():
            for p in lora_b:
                p.zero_()


def _train(tiny_llama, folder, replay_fraction: float = 0.0, **training):
    from conftest import write_tutoring_file
    from test_training import tiny_config

    from edulora.training import train

    data = write_tutoring_file(folder, 32)
    config = tiny_config(tiny_llama, data, folder / "runs", retention_sample=6, retention_max_new_tokens=12,
                         pedagogy_sample=0, **training)
    config.data.replay_fraction = replay_fraction
    return train(config)


@pytest.fixture(scope="module")
def light_and_heavy(tiny_llama, tmp_path_factory):
    # The light run also replays general requests answered by the base (data.replay_responses: base, the default).
    light = _train(tiny_llama, tmp_path_factory.mktemp("light"), replay_fraction=0.2, max_steps=2,
                   learning_rate=1e-3, eval_steps=2, save_steps=2)
    heavy = _train(tiny_llama, tmp_path_factory.mktemp("heavy"), max_steps=16, learning_rate=5e-2, keep_best=False,
                   eval_steps=8, save_steps=8)
    return light, heavy


def test_overtrained_adapter_drifts_more_than_a_lightly_trained_one(light_and_heavy):
    light, heavy = light_and_heavy
    assert heavy.summary.retention["drift"] > light.summary.retention["drift"] >= 0.0
    # Logged at each evaluation, 0 before training (the adapter starts at B = 0).
    rows = [row for row in heavy.run_dir.read_metrics() if "eval_drift" in row]
    assert rows[0]["step"] == 0 and rows[0]["eval_drift"] < 1e-7
    assert rows[-1]["eval_drift"] > 0
    card = (heavy.run_dir.adapter_dir / "README.md").read_text(encoding="utf-8")
    assert "Drift from the base on 6 general prompts" in card
    assert "drift from base" in heavy.summary.headline()


def test_a_run_with_replay_decodes_the_base_replies_before_training(light_and_heavy):
    from edulora.training.data import load_data

    light, _ = light_and_heavy
    info = light.run_dir.read_data_info()
    assert info["replay"]["responses"] == "base" and info["replay"]["added"] == 6  # 24 tutoring records: 6 = 20%
    assert 0 <= info["replay"]["base_replies"] <= info["replay"]["added"]
    written = load_data(light.run_dir.read_config()).info["train_fingerprint"]  # the file's replies
    assert (info["train_fingerprint"] != written) == (info["replay"]["base_replies"] > 0)


class _ScriptedBase:
    """Stands in for the base model's tutor: the real prompt format, replies chosen per prompt."""

    def __init__(self, fmt, replies):
        self.format, self.replies, self.asked = fmt, replies, []

    def generate(self, prompts, sampling, batch_size, desc="generating replies"):
        from edulora.generation import Reply

        self.asked.append(len(prompts))
        return [Reply(text, 5, 0.0, finish) for text, finish in (self.replies[p[-1]["content"]] for p in prompts)]


def test_replay_replies_become_the_base_models_own(tiny_llama):
    """Each distinct replay prompt is decoded once; a reply cut by the token limit keeps its whole sentences,
    one with none (or an empty one) leaves the file's reply; tutoring records and dialogues' earlier turns stay."""
    from transformers import AutoTokenizer

    from edulora.data.schema import Dialogue, Example, Turn
    from edulora.formatting import PromptFormat
    from edulora.training.data import DataSplit, answer_replay_with_base

    tutoring = Example("What is 2 + 3?", "What do you get if you count on 3 from 2?")
    a, b = Example("Name a colour.", "Blue."), Example("Say hello in French.", "Bonjour.")
    chat = Dialogue([Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", "Count to three."),
                     Turn("assistant", "One, two, three.")])
    empty = Example("Write nothing.", "Kept.")
    split = DataSplit([tutoring, a, b, a, chat, empty], [], {"replay": {}, "train_fingerprint": "x"}, replay=5)
    fmt = PromptFormat.create(AutoTokenizer.from_pretrained(str(tiny_llama)))
    base = _ScriptedBase(fmt, {"Name a colour.": ("Red is a colour.", "stop"),
                               "Say hello in French.": ("Bonjour ! Comment allez-vous? Je suis", "length"),
                               "Count to three.": ("1, 2, 3", "length"), "Write nothing.": ("", "stop")})
    assert answer_replay_with_base(split, base) == 2
    assert base.asked == [4]  # "Name a colour." twice in the data, decoded once
    assert split.train[0] is tutoring
    assert [r.response for r in (split.train[1], split.train[2], split.train[3])] == [
        "Red is a colour.", "Bonjour ! Comment allez-vous?", "Red is a colour."]
    assert split.train[4] is chat and split.train[5] is empty  # nothing whole to learn: the file's replies stay
    assert split.info["replay"]["base_replies"] == 2 and split.info["train_fingerprint"] != "x"
    base.replies["Count to three."] = ("One. Two. Three.", "stop")
    split = DataSplit([chat], [], {"replay": {}}, replay=1)
    answer_replay_with_base(split, base)
    turns = split.train[0].turns
    assert [(t.content, t.train) for t in turns if t.role == "assistant"] == [("Hello!", False),
                                                                              ("One. Two. Three.", True)]


def test_max_drift_warns_and_keeps_the_least_drifting_checkpoint(tiny_llama, tmp_path, capsys):
    run = _train(tiny_llama, tmp_path, max_steps=8, eval_steps=4, save_steps=4, max_drift=1e-9)
    assert "exceeds training.selection.max_drift=1e-09" in capsys.readouterr().out
    evals = {row["step"]: row["eval_drift"] for row in run.run_dir.read_metrics()
             if "eval_drift" in row and row["step"] in (4, 8)}
    assert run.summary.selected_step == min(evals, key=evals.get)
    assert "within training.selection.max_drift" in run.summary.selection


def test_eval_reports_drift_per_model_and_takes_a_users_set(light_and_heavy, tmp_path, write_jsonl):
    from test_eval_runner import fake_embed

    from edulora.data.formats import load_records
    from edulora.evaluation.runner import EvalSettings, evaluate, load_models

    _, heavy = light_and_heavy
    mine = write_jsonl([{"instruction": f"Name a colour number {i}.", "response": "Blue."} for i in range(3)],
                       "general.jsonl")
    models = load_models([heavy.run_dir], include_base=True, precision="fp32")
    settings = EvalSettings(max_new_tokens=4, embed=fake_embed, bootstrap_resamples=100, max_length=128,
                            retention_file=str(mine), retention_max_new_tokens=8, limit=2)
    result = evaluate(models, load_records(heavy.run_dir / "eval.jsonl"), settings)
    base, tuned = result.models
    assert base.retention.drift == 0.0 and base.retention.n == 3
    assert tuned.retention.drift > 0 and tuned.retention.data == str(mine)
    written = result.write_reports(tmp_path / "reports")
    assert "## Retention (drift from the base)" in written["markdown"].read_text(encoding="utf-8")
    assert "Retention (drift from the base)" in written["html"].read_text(encoding="utf-8")
    summary = json.loads(written["json"].read_text(encoding="utf-8"))["summary"]
    assert summary[tuned.name]["drift"] == tuned.retention.drift


def test_replay_mixing_honours_the_fraction_and_the_seed():
    from edulora.training.data import load_replay, mix_replay

    train = retention_records()[:30]
    replay = load_replay()
    mixed = mix_replay(train, replay, 0.25, seed=1)
    assert len(mixed) == 40 and mixed[:30] == train
    assert len({id(r) for r in mixed[30:]}) == 10  # no record repeated before all are used
    assert mixed == mix_replay(train, replay, 0.25, seed=1)
    assert mixed != mix_replay(train, replay, 0.25, seed=2)
    many = mix_replay(train, replay[:3], 0.5, seed=0)
    assert len(many) == 60 and sum(r is replay[0] for r in many) == 10
    assert mix_replay(train, replay, 0.0, seed=0) == train


def test_load_data_mixes_replay_into_training_only(tmp_path):
    from conftest import write_tutoring_file

    from edulora.training.data import load_data

    config = load_config(None, [f"data.train_file={write_tutoring_file(tmp_path, 40)}", "data.eval_fraction=0.25",
                                "data.replay_fraction=0.2"])
    split = load_data(config)
    added = split.info["replay"]["added"]
    tutoring = len(split.train) - added
    assert added == round(tutoring * 0.2 / 0.8) > 0
    assert sum("language" in r.metadata.extra for r in split.train) == added
    assert not any("language" in r.metadata.extra for r in split.eval)


@pytest.mark.parametrize(("override", "message"), [
    ("data.replay_fraction=1.0", "data.replay_fraction=1.0 is out of range; allowed: a value in [0.0, 1.0)"),
    ("data.replay_file=mine.jsonl", "data.replay_file needs data.replay_fraction > 0"),
    ("data.replay_responses=teacher", "data.replay_responses='teacher' is not allowed; choose 'base' or 'file'"),
    ("training.selection.max_drift=-1", "training.selection.max_drift=-1 is out of range; allowed: a value in [0.0, inf)"),
    ("training.selection.retention_sample=-2", "training.selection.retention_sample=-2 is out of range; allowed: a value in [0, inf)"),
])
def test_config_mistakes_are_one_line_errors(override, message):
    with pytest.raises(EduloraError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_max_drift_needs_prompts_and_the_cli_says_so_in_one_line(capsys):
    from edulora.cli import main

    code = main(["train", "--set", "training.selection.max_drift=0.1", "--set", "training.selection.retention_sample=0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "training.selection.max_drift needs training.selection.retention_sample" in err


def test_a_missing_retention_file_is_named(tmp_path):
    with pytest.raises(EduloraError, match="nope.jsonl"):
        retention_records(tmp_path / "nope.jsonl")


def test_the_base_continuations_are_decoded_in_one_batch_and_replies_in_batch_size_rows(fresh_adapter, monkeypatch):
    """With its adapters off the network decodes many rows at little memory cost, so the base's continuations
    go in one batch; a tutor's own replies (adapter on) keep ``batch_size`` rows (benchmarks/history/benchmarks-2026-12.md)."""
    import edulora.generation as generation

    real, rows = generation.generate, []

    def counting(model, tokenizer, prompts, sampling=None, batch_size=8, desc="generating replies"):
        rows.append((len(prompts), batch_size))
        return real(model, tokenizer, prompts, sampling, batch_size, desc)

    monkeypatch.setattr(generation, "generate", counting)
    probe = RetentionProbe(retention_records(limit=5), fresh_adapter.format, max_new_tokens=4, batch_size=2)
    probe.references(fresh_adapter)
    probe.replies(fresh_adapter)
    assert rows == [(5, 64), (5, 2)]
