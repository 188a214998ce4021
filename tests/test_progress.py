"""Every wait of the demo a user sits through shows a bar with a count and a total (so an estimate), on the
tiny random Llama: in training the base's replay answers, eval losses and the pedagogy and drift probes; in
the evaluation eval loss, the base's and the tutor's replies, the drift probe, report writing."""

from __future__ import annotations

import pytest


class RecordedBar:
    """Stands in for tqdm: records what each bar was called and how far it got."""

    bars: list[RecordedBar] = []

    def __init__(self, iterable=None, desc=None, total=None, disable=None, **_):
        self.iterable, self.desc, self.disable, self.n = iterable, desc, disable, 0
        self.updates: list[int] = []
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        RecordedBar.bars.append(self)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1

    def update(self, k: int = 1) -> None:
        self.n += k
        self.updates.append(k)

    def close(self) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch):
    import edulora.progress

    RecordedBar.bars = []
    monkeypatch.setattr(edulora.progress, "tqdm", RecordedBar)
    return RecordedBar.bars


def test_each_long_loop_of_an_evaluation_reports_progress_to_its_total(tiny_llama, tmp_path, recorded):
    from test_serving_support import MATH_QUESTIONS, make_adapter

    from edulora.evaluation.report import write_reports
    from edulora.data.formats import load_records
    from edulora.evaluation.runner import EvalSettings, evaluate
    from edulora.tutor import Tutor

    run = make_adapter(tiny_llama, tmp_path / "run", "mathematics", "middle_school", "socratic", MATH_QUESTIONS, seed=1)
    tutor = Tutor.load(run, precision="fp32")
    settings = EvalSettings(max_new_tokens=4, max_length=128, backend="transformers", retention_limit=3,
                            retention_max_new_tokens=4, embed=lambda texts: [[1.0, 0.0]] * len(texts),
                            learned_judges=False, bootstrap_resamples=10)
    result = evaluate([tutor], load_records(run / "eval.jsonl"), settings, include_base=True)
    write_reports(result, tmp_path / "report")
    for model in result.models:  # the time per reply is the generation's wall time over its replies, not a batch's
        assert model.mean_latency_s == pytest.approx(model.generation_seconds / len(model.replies))
    descs = [b.desc for b in recorded]
    # base and tuned: a loss each, replies to the records; the drift prompts; the three report files
    assert descs.count("eval loss") == 2
    assert descs.count("generating replies") == 2
    assert "drift probe" in descs and "drift probe: KL" in descs  # the tuned adapter's KL along those replies
    assert "writing reports" in descs
    for shown in recorded:
        assert shown.total and shown.n == shown.total, (shown.desc, shown.n, shown.total)
        assert shown.disable is None  # tqdm decides: hidden when stderr is not a terminal (CI logs)


def test_each_long_loop_of_the_demos_training_reports_progress_to_its_total(tiny_llama, tmp_path, recorded):
    """The demo's own training config (replay answered by the base, held-out losses between steps) on the tiny
    Llama, with the pedagogy and drift probes a run may add: each of these loops draws a bar that reaches its
    total, and a reply ticks it as it ends, not once per batch."""
    from conftest import write_tutoring_file

    from edulora.demo import demo_config
    from edulora.training import train

    config = demo_config(str(tmp_path / "runs"))
    config.model.name = str(tiny_llama)
    config.model.precision = "fp32"
    config.data.train_file = str(write_tutoring_file(tmp_path, 24))
    config.data.eval_fraction = 0.25
    config.data.max_length = 128
    config.training.max_steps = 2
    config.training.eval_steps = config.training.save_steps = 1
    selection = config.training.selection
    selection.pedagogy_sample, selection.pedagogy_max_new_tokens = 2, 4
    selection.retention_sample, selection.retention_max_new_tokens = 2, 4
    assert config.data.replay_fraction > 0 and config.data.replay_responses == "base"
    train(config)
    descs = [b.desc for b in recorded]
    assert descs.count("replay: the base answers") == 1
    assert descs.count("eval loss") >= 3  # before training and after each of its two steps (and the kept one)
    assert descs.count("pedagogy probe") == 3
    assert descs.count("drift probe") >= 2  # the base's continuations once; the tuned replies at the end
    for shown in recorded:
        assert shown.total and shown.n == shown.total, (shown.desc, shown.n, shown.total)
    replay = next(b for b in recorded if b.desc == "replay: the base answers")
    assert replay.total > 1 and replay.updates == [1] * replay.total  # one batch, one tick per reply


def test_quiet_hides_every_bar(monkeypatch, recorded):
    import edulora.progress as progress

    monkeypatch.setattr(progress, "QUIET", False)
    assert progress.bar(desc="x", total=3).disable is None
    progress.quiet(True)
    try:
        assert progress.bar(desc="x", total=3).disable is True
    finally:
        progress.quiet(False)
    assert progress.bar(desc="x", total=3, enabled=False).disable is True

