"""Every wait of the evaluation a user sits through shows a bar with a count and a total (so an estimate),
on the tiny random Llama: eval loss, the base's and the tutor's replies, the drift probe, report writing."""

from __future__ import annotations

import pytest


class RecordedBar:
    """Stands in for tqdm: records what each bar was called and how far it got."""

    bars: list[RecordedBar] = []

    def __init__(self, iterable=None, desc=None, total=None, disable=None, **_):
        self.iterable, self.desc, self.disable, self.n = iterable, desc, disable, 0
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        RecordedBar.bars.append(self)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1

    def update(self, k: int = 1) -> None:
        self.n += k

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
    # base and tuned: a loss each; replies to the records and to the drift prompts; the three report files
    assert descs.count("eval loss") == 2
    assert descs.count("generating replies") >= 3
    assert "writing reports" in descs
    for shown in recorded:
        assert shown.total and shown.n == shown.total, (shown.desc, shown.n, shown.total)
        assert shown.disable is None  # tqdm decides: hidden when stderr is not a terminal (CI logs)


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

