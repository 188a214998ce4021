"""``edulora eval`` on a tiny trained run: loss as in training, metrics per reply, deltas, CLI."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from edulora.cli import main
from edulora.errors import EduloraError
from edulora.evaluation.runner import (
    METRICS,
    EvalSettings,
    bootstrap_ci,
    evaluate,
    evaluate_trained,
    load_models,
)


def fake_embed(texts):
    """Bag-of-words hashed into 16 dimensions: fast, deterministic, similar texts score similar."""
    vectors = []
    for text in texts:
        v = [0.0] * 16
        for word in text.lower().split():
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % 16] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        vectors.append([x / norm for x in v])
    return vectors


@pytest.fixture(scope="module")
def trained_run(tiny_llama, tmp_path_factory):
    from conftest import write_tutoring_file
    from test_training import tiny_config

    from edulora.training import train

    folder = tmp_path_factory.mktemp("evalrun")
    data = write_tutoring_file(folder, 32)
    return train(tiny_config(tiny_llama, data, folder / "runs", max_steps=8, eval_steps=4, save_steps=8))


@pytest.fixture(scope="module")
def evaluated(trained_run):
    from edulora.data.formats import load_records

    models = load_models([trained_run.run_dir], include_base=True, precision="fp32")
    records = load_records(trained_run.run_dir / "eval.jsonl")
    settings = EvalSettings(max_new_tokens=6, embed=fake_embed, bootstrap_resamples=200, max_length=128)
    return evaluate(models, records, settings, run_dir=trained_run.run_dir), trained_run


def test_base_and_adapter_share_one_network(trained_run):
    models = load_models([trained_run.run_dir, trained_run.run_dir / "adapter"], include_base=True, precision="fp32")
    assert [m.name for m in models] == ["base", "run", "run-2"]
    assert len({id(m.model) for m in models}) == 1
    assert models[0].is_base and models[1].adapter == "run"


def test_loss_matches_training_and_every_metric_is_reported(evaluated):
    result, run = evaluated
    base, tuned = result.model("base"), result.model("run")
    # Same records, encoding and loss function as training: the numbers agree with summary.json.
    assert base.eval_loss == pytest.approx(run.summary.eval_loss_before, rel=1e-4)
    assert tuned.eval_loss == pytest.approx(run.summary.eval_loss_after, rel=1e-4)
    assert tuned.eval_loss < base.eval_loss
    assert tuned.perplexity == pytest.approx(math.exp(tuned.eval_loss))
    for model in (base, tuned):
        assert len(model.replies) == len(result.records) == run.summary.eval_examples
        assert set(METRICS) <= set(model.metrics)
        assert all(0.0 <= model.metrics[m] <= 1.0 for m in METRICS)
        assert model.tokens_per_s > 0 and model.peak_rss_mb > 0
    assert set(result.groups) == {"subject", "grade_level", "teaching_style"}
    assert len(result.training_log) > 0


def test_deltas_are_paired_and_their_intervals_contain_the_mean(evaluated):
    result, _ = evaluated
    assert {d.metric for d in result.deltas} == set(METRICS)
    for d in result.deltas:
        assert (d.model, d.reference) == ("run", "base")
        assert d.low <= d.mean <= d.high
        base = [r.metrics[d.metric] for r in result.model("base").replies]
        tuned = [r.metrics[d.metric] for r in result.model("run").replies]
        assert d.mean == pytest.approx(sum(tuned) / len(tuned) - sum(base) / len(base))


def test_bootstrap_is_seeded_and_covers_the_mean():
    diffs = [0.1, -0.2, 0.4, 0.3, 0.0, 0.25, -0.05, 0.6]
    first = bootstrap_ci(diffs, resamples=1000, seed=7)
    assert first == bootstrap_ci(diffs, resamples=1000, seed=7)
    assert first != bootstrap_ci(diffs, resamples=1000, seed=8)
    centre, low, high = first
    assert centre == pytest.approx(sum(diffs) / len(diffs))
    assert low < centre < high
    assert bootstrap_ci([0.5] * 5) == (0.5, 0.5, 0.5)


def test_evaluate_trained_writes_reports_into_the_run(trained_run, tmp_path):
    from edulora.data.formats import load_records

    records = load_records(trained_run.run_dir / "eval.jsonl")
    settings = EvalSettings(max_new_tokens=4, limit=3, embed=fake_embed, bootstrap_resamples=50, max_length=128)
    _, paths = evaluate_trained(trained_run.tutor, records, tmp_path, settings=settings)
    assert set(paths) == {"html", "json", "markdown"}
    report = json.loads(paths["json"].read_text())
    assert set(report["summary"]) == {"base", "tuned"}
    assert report["summary"]["tuned"]["eval_loss"] < report["summary"]["base"]["eval_loss"]
    assert len(report["records"]) == 3


def _cli(argv: list[str]):
    """The command line without ``main``'s error mapping, so a user mistake arrives as its EduloraError."""
    import typer

    from edulora.cli import app

    command = typer.main.get_command(app)
    with command.make_context("edulora", argv) as ctx:
        return command.invoke(ctx)


def test_cli_uses_the_runs_eval_split(trained_run, tmp_path, monkeypatch):
    from edulora.evaluation import embeddings

    monkeypatch.setattr(embeddings, "embed", fake_embed)
    out = tmp_path / "out.json"
    argv = ["eval", str(trained_run.run_dir), "--base", "--json", str(out), "--limit", "2",
            "--max-new-tokens", "4", "--precision", "fp32", "--resamples", "50"]
    assert main(argv) == 0
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"base", "run"}
    for figures in summary.values():
        assert isinstance(figures["eval_loss"], float)
        assert all(m in figures for m in METRICS)


@pytest.mark.parametrize("argv, message", [
    (["eval", "no/such/run"], "no such run"),
    (["eval", "--base"], "no --data"),
    (["eval", "--base", "--data", "missing.jsonl"], "no such data file"),
])
def test_cli_user_mistakes_are_edulora_errors(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EduloraError, match=message):
        _cli(argv)


def test_nothing_to_evaluate_is_an_error():
    with pytest.raises(EduloraError, match="nothing to evaluate"):
        load_models([], include_base=False)


def test_judge_labels_become_metrics_and_reach_the_report(trained_run, tmp_path):
    from test_judge import GOOD, FakeJudge

    from edulora.data.formats import load_records
    from edulora.evaluation.judge import Judge
    from edulora.evaluation.report import write_reports

    server = FakeJudge([json.dumps(GOOD)])
    try:
        judge = Judge(server.url, "fake", cache_dir=tmp_path / "cache")
        models = load_models([trained_run.run_dir], include_base=True, precision="fp32")
        records = load_records(trained_run.run_dir / "eval.jsonl")
        settings = EvalSettings(max_new_tokens=4, limit=2, embed=fake_embed, bootstrap_resamples=20, max_length=128)
        result = evaluate(models, records, settings, judge=judge)
    finally:
        server.close()
    for model in result.models:
        assert model.metrics["judge_tutor_tone"] == 1.0 and model.metrics["judge_mistake_location"] == 0.5
        assert model.replies[0].judge == GOOD
    page = write_reports(result, html_path=tmp_path / "r.html")["html"].read_text()
    assert "Judge: tutor tone" in page and "judge fake" in page
