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

#: The drift on a few general prompts, short: tests/test_retention.py covers it; here it only has to be
#: there (all 40 prompts × 48 tokens, for every model, cost each evaluation minutes).
FEW_GENERAL_PROMPTS = {"retention_limit": 4, "retention_max_new_tokens": 8}


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
    from conftest import tutoring_rows
    from test_training import tiny_config

    from edulora.training import train

    folder = tmp_path_factory.mktemp("evalrun")
    rows = tutoring_rows(32)
    for row in rows:  # the teacher's key: the product the reply ends on ("So the answer is 12.")
        row["metadata"]["answer"] = row["response"].rstrip(".").rsplit(" ", 1)[-1]
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return train(tiny_config(tiny_llama, data, folder / "runs", max_steps=8, eval_steps=4, save_steps=8))


@pytest.fixture(scope="module")
def evaluated(trained_run):
    from edulora.data.formats import load_records

    models = load_models([trained_run.run_dir], include_base=True, precision="fp32")
    records = load_records(trained_run.run_dir / "eval.jsonl")
    settings = EvalSettings(max_new_tokens=6, embed=fake_embed, bootstrap_resamples=200, max_length=128,
                            **FEW_GENERAL_PROMPTS)
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


def test_pedagogy_rates_come_with_wilson_intervals(evaluated):
    result, _ = evaluated
    for model in result.models:
        assert set(model.rates) == {"leak_rate", "incorrect_answer_rate", "question_rate"}
        n = len(model.replies)
        leaks = sum(r.metrics["answer_revealing"] for r in model.replies)
        wrong = sum(r.metrics["answer_correctness"] == 0.0 for r in model.replies)
        assert model.rates["leak_rate"].n == model.rates["incorrect_answer_rate"].n == n  # every record has its key
        assert model.rates["leak_rate"].value == pytest.approx(leaks / n)
        assert model.rates["incorrect_answer_rate"].value == pytest.approx(wrong / n)
        for r in model.rates.values():
            assert 0.0 <= r.low <= r.value <= r.high <= 1.0
    assert result.to_dict()["models"][0]["rates"]["leak_rate"]["n"] == len(result.records)


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
    settings = EvalSettings(max_new_tokens=4, limit=3, embed=fake_embed, bootstrap_resamples=50, max_length=128,
                            **FEW_GENERAL_PROMPTS)
    _, paths = evaluate_trained(trained_run.tutor, records, tmp_path, settings=settings)
    assert set(paths) == {"html", "json", "markdown"}
    report = json.loads(paths["json"].read_text())
    assert set(report["summary"]) == {"base", "tuned"}
    assert report["summary"]["tuned"]["eval_loss"] < report["summary"]["base"]["eval_loss"]
    assert len(report["records"]) == 3


def test_losses_training_measured_are_reused_not_computed_again(trained_run, tmp_path):
    """The demo hands over the run's eval_loss_before / after (measured on the same held-out records):
    the report shows them, with the token count, and no loss pass runs again."""
    from edulora.data.formats import load_records

    records = load_records(trained_run.run_dir / "eval.jsonl")
    settings = EvalSettings(max_new_tokens=4, embed=fake_embed, bootstrap_resamples=50, max_length=128,
                            **FEW_GENERAL_PROMPTS)
    said: list[str] = []
    summary = trained_run.summary
    result, _ = evaluate_trained(trained_run.tutor, records, tmp_path, settings=settings, progress=said.append,
                                 losses=(summary.eval_loss_before, summary.eval_loss_after))
    assert not [m for m in said if "eval loss" in m] and any("generating" in m for m in said)
    assert result.model("base").eval_loss == summary.eval_loss_before
    assert result.model("tuned").eval_loss == summary.eval_loss_after
    fresh, _ = evaluate_trained(trained_run.tutor, records, tmp_path / "fresh", settings=settings)
    assert result.model("tuned").eval_tokens == fresh.model("tuned").eval_tokens > 0
    # what the training measured is what the evaluation measures (up to the order of summation)
    assert fresh.model("tuned").eval_loss == pytest.approx(summary.eval_loss_after, rel=1e-3)
    assert fresh.model("base").eval_loss == pytest.approx(summary.eval_loss_before, rel=1e-3)


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
    argv = ["eval", str(trained_run.run_dir), "--with-base", "--json", str(out), "--limit", "2",
            "--max-new-tokens", "4", "--precision", "fp32", "--resamples", "50", "--retention-prompts", "3"]
    assert main(argv) == 0
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"base", "run"}
    for figures in summary.values():
        assert isinstance(figures["eval_loss"], float)
        assert all(m in figures for m in METRICS)
    assert summary["run"]["drift"] is not None
    # 0 skips the drift: the judge-and-metrics path alone, as the e2e test and quick checks want it
    assert main(argv[:-1] + ["0", "--overwrite"]) == 0  # the same --json again: replaced only when asked
    assert json.loads(out.read_text())["summary"]["run"]["drift"] is None


def test_cli_writes_a_blind_sheet_and_reads_the_ratings_back(trained_run, tmp_path, monkeypatch):
    import csv

    from edulora.evaluation import embeddings

    monkeypatch.setattr(embeddings, "embed", fake_embed)
    sheet, out = tmp_path / "ratings.csv", tmp_path / "report.json"
    argv = ["eval", str(trained_run.run_dir), "--with-base", "--limit", "3", "--max-new-tokens", "4", "--precision",
            "fp32", "--resamples", "50", "--retention-prompts", "0"]
    assert main([*argv, "--blind-sheet", str(sheet)]) == 0
    with sheet.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 4 and (tmp_path / "ratings.key.json").is_file()
    for row, choice in zip(rows[1:], ["A", "B", "same"]):
        row[4] = choice
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert main([*argv, "--ratings", str(sheet), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    human = {p["model"]: p for p in report["human"]}
    assert set(human) == {"base", "run"} and human["run"]["wins"] + human["base"]["wins"] == 2
    assert human["run"]["ties"] == 1 and human["run"]["rate"]["n"] == 2
    assert report["settings"]["turns_scored"] == "last"  # single-turn records: auto keeps the last turn


@pytest.mark.parametrize("argv, message", [
    (["eval", "no/such/run"], "no such run"),
    (["eval", "--with-base"], "no --data"),
    (["eval", "--with-base", "--data", "missing.jsonl"], "no such data file"),
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
        settings = EvalSettings(max_new_tokens=4, limit=2, embed=fake_embed, bootstrap_resamples=20, max_length=128,
                                **FEW_GENERAL_PROMPTS)
        result = evaluate(models, records, settings, judge=judge)
    finally:
        server.close()
    for model in result.models:
        assert model.metrics["judge_tutor_tone"] == 1.0 and model.metrics["judge_mistake_location"] == 0.5
        assert model.replies[0].judge == GOOD
    page = write_reports(result, html_path=tmp_path / "r.html")["html"].read_text()
    assert "Judge: tutor tone" in page and "judge fake" in page


# ---------------------------------------------------------------------------------------------
# Pedagogy rates (pure: no model)
# ---------------------------------------------------------------------------------------------


def test_wilson_interval():
    from edulora.evaluation.rates import wilson_interval

    # 8 of 20 at 95%: the textbook Wilson interval (0.2188, 0.6134)
    assert wilson_interval(8, 20) == pytest.approx((0.2188, 0.6134), abs=1e-4)
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and 0.05 < high < 0.08  # no leak in 50 replies is not certainty of none
    assert wilson_interval(50, 50)[1] == 1.0 and wilson_interval(50, 50)[0] > 0.9
    assert wilson_interval(3, 20)[0] == pytest.approx(1 - wilson_interval(17, 20)[1])
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def _triangle(reply_key: str | None):
    from edulora.data.schema import Example, Metadata

    return Example(instruction="A triangle has a base of 10 cm and a height of 6 cm. How do I find its area?",
                   response="What shape do two of these triangles make?",
                   metadata=Metadata(subject="mathematics", extra={"answer": reply_key} if reply_key else {}))


def test_pedagogy_rates_count_leaks_wrong_answers_and_questions():
    from edulora.data.schema import Dialogue, Metadata, Turn
    from edulora.evaluation.rates import pedagogy_rates, record_history

    dialogue = Dialogue([Turn("system", "You are a tutor."), Turn("user", "What is 3 x 4?"),
                         Turn("assistant", "What is 3 + 3 + 3 + 3?"), Turn("user", "11"),
                         Turn("assistant", "Count again.")], Metadata(extra={"answer": "12"}))
    assert record_history(dialogue) == [("student", "What is 3 x 4?"), ("tutor", "What is 3 + 3 + 3 + 3?"),
                                        ("student", "11")]
    records = [_triangle("30"), _triangle("30"), _triangle(None), dialogue]
    replies = [
        "Add them: 3 + 6 = 9. So the answer is 9 square centimeters.",  # leaks a wrong answer
        "Is it 30? Draw the rectangle around it first.",  # asks, asserts nothing
        "Think of a rectangle cut in half. What is its area?",  # no key: not counted for correctness
        "Not quite: the answer is 12.",  # leaks the right answer
    ]
    rates = pedagogy_rates(replies, records)
    # the record without a key had nothing to withhold: the leak rate counts the other three
    assert (rates["leak_rate"].value, rates["leak_rate"].n) == (pytest.approx(2 / 3), 3)
    assert (rates["incorrect_answer_rate"].value, rates["incorrect_answer_rate"].n) == (pytest.approx(1 / 3), 3)
    assert (rates["question_rate"].value, rates["question_rate"].n) == (0.5, 4)
    assert all(r.low <= r.value <= r.high for r in rates.values())
    # no record with a key: the leak and incorrect-answer rates are not measured, rather than 0
    assert set(pedagogy_rates(replies[2:3], records[2:3])) == {"question_rate"}
    with pytest.raises(ValueError):
        pedagogy_rates(replies, records[:2])


def test_leak_rate_counts_only_replies_with_an_answer_to_withhold():
    """An explanation where no answer was known is not a leak; a key or plain arithmetic is something to withhold."""
    from edulora.data.schema import Example, Metadata
    from edulora.evaluation.rates import all_replies_leak_rate, pedagogy_rates, reply_pedagogy

    radian = Example(instruction="What is a radian?", response="An angle.",
                     metadata=Metadata(subject="mathematics", teaching_style="direct_instruction"))
    arithmetic = Example(instruction="What is 3 x 4?", response="What is 3 + 3 + 3 + 3?",
                         metadata=Metadata(subject="mathematics"))
    records = [radian, _triangle("30"), arithmetic, arithmetic]
    replies = [
        "A radian is actually the angle made by an arc as long as the radius.",  # explains: nothing to withhold
        "The area is 30 square centimeters.",  # gives the key away
        "3 x 4 is 12.",  # gives the computable answer away
        "What is 3 + 3 + 3 + 3?",  # withholds it
    ]
    scored = [reply_pedagogy(reply, record) for reply, record in zip(replies, records)]
    assert [s.withholds for s in scored] == [False, True, True, True]
    leak = pedagogy_rates(replies, records)["leak_rate"]
    assert (leak.value, leak.n) == (pytest.approx(2 / 3), 3)
    # the computed answer is not a key: a wrong-answer rate needs the teacher's key
    assert pedagogy_rates(replies, records)["incorrect_answer_rate"].n == 1
    # the old number, every reply counted, stays available under its own name
    assert all_replies_leak_rate(scored).n == 4


def test_rates_module_is_cheap_to_import():
    import subprocess
    import sys

    code = "import sys, edulora.evaluation.rates; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_rate_for_style_counts_only_that_styles_replies():
    from edulora.evaluation.rates import rate_for_style
    from edulora.evaluation.results import EvalResult, ModelResult, RecordInfo, ReplyResult

    styles = ["socratic", "socratic", "step_by_step", "socratic", None]
    revealed = [1.0, 0.0, 1.0, None, 1.0]
    records = [RecordInfo(i, "q", "r", "mathematics", None, s) for i, s in enumerate(styles)]
    replies = [ReplyResult(i, "a", 1, 0.1, {"answer_revealing": v}) for i, v in enumerate(revealed)]
    model = ModelResult("tuned", "run", False, None, None, 0, None, None, 0.0, 0.0, {}, replies)
    evaluation = EvalResult(records, [model], {}, [], {})
    socratic = rate_for_style(evaluation, "tuned", "answer_revealing", "socratic")
    # Two scored Socratic replies (the third has no score), one of which revealed.
    assert (socratic.value, socratic.n) == (0.5, 2) and socratic.low < 0.5 < socratic.high
    assert rate_for_style(evaluation, "tuned", "answer_revealing", "step_by_step").value == 1.0
    assert rate_for_style(evaluation, "tuned", "answer_revealing", "analogy_based") is None
