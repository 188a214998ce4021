"""Checkpoints chosen by pedagogy: a scripted metric decides, on a tiny random Llama."""

import json

import pytest
from safetensors.torch import load_file

from edulora.errors import EduloraError
from edulora.training import pedagogy, train


def keyed_rows(n: int = 24) -> list[dict]:
    from conftest import tutoring_rows

    rows = tutoring_rows(n)
    for row in rows:
        row["metadata"]["answer"] = row["response"].split()[-1].rstrip(".")
    return rows


def scripted(monkeypatch, leak_rates: list[float]):
    """The n-th evaluation's replies score ``leak_rates[n]`` (the first is the base, before training)."""
    calls = []

    def score(replies, records):
        calls.append(len(replies))
        value = leak_rates[min(len(calls) - 1, len(leak_rates) - 1)]
        return {"leak_rate": value, "question_rate": 0.5}

    monkeypatch.setattr(pedagogy, "score_replies", score)
    return calls


def config_for(tiny_llama, data, out, **training):
    from test_training import tiny_config

    config = tiny_config(tiny_llama, data, out, max_steps=12, eval_steps=3, save_steps=3, **training)
    config.training.selection.pedagogy_sample = 3
    config.training.selection.pedagogy_max_new_tokens = 4
    return config


def test_select_by_leak_rate_keeps_the_checkpoint_the_metric_prefers(tiny_llama, tmp_path, write_jsonl, monkeypatch):
    # Evaluations at steps 0 (base), 3, 6, 9, 12; step 6 leaks least, the last step has the lowest loss.
    calls = scripted(monkeypatch, [0.9, 0.6, 0.0, 0.3, 0.3, 0.0])
    config = config_for(tiny_llama, write_jsonl(keyed_rows()), tmp_path / "runs", select_by="leak_rate",
                        select_tolerance=0)  # the measure alone decides
    result = train(config)
    summary = result.summary
    assert summary.select_by == "leak_rate" and summary.selected_step == 6
    assert "checkpoint-6" in summary.selection and "leak rate" in summary.selection
    assert summary.pedagogy["before"]["leak_rate"] == 0.9 and summary.pedagogy["after"]["leak_rate"] == 0.0
    assert all(n == 3 for n in calls)  # the fixed sample, every time
    saved = load_file(result.run_dir / "adapter" / "adapter_model.safetensors")
    best = load_file(result.run_dir / "checkpoints" / "checkpoint-6" / "adapter_model.safetensors")
    last = load_file(result.run_dir / "checkpoints" / "checkpoint-12" / "adapter_model.safetensors")
    assert all((saved[k] == best[k]).all() for k in saved)
    assert any((saved[k] != last[k]).any() for k in saved)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval_leak_rate"] for r in rows if "eval_leak_rate" in r][:5] == [0.9, 0.6, 0.0, 0.3, 0.3]
    card = (result.run_dir / "adapter" / "README.md").read_text()
    assert "checkpoint-6" in card and "select_by=leak_rate" in card
    info = json.loads((result.run_dir / "adapter" / "edulora.json").read_text())
    assert info["select_by"] == "leak_rate" and info["answer_key"] is True


@pytest.mark.parametrize(("leaks", "kept"), [
    ([3, 0, 1, 1], 12),  # one reply of three above the best is within the probe's noise: the loss decides
    ([0, 1, 2, 2], 6),   # the band is anchored at the best seen (0), so one-reply steps do not creep to 2
])
def test_rates_within_one_reply_of_the_best_count_as_equal(tiny_llama, tmp_path, write_jsonl, monkeypatch,
                                                           leaks, kept):
    scripted(monkeypatch, [0.9] + [n / 3 for n in leaks])  # 3 replies per evaluation
    config = config_for(tiny_llama, write_jsonl(keyed_rows()), tmp_path / "runs", select_by="leak_rate")
    summary = train(config).summary
    assert summary.selected_step == kept
    assert "within 1 reply of the lowest" in summary.selection and "lowest eval loss" in summary.selection


def test_a_new_best_rate_unseats_a_kept_checkpoint_outside_the_band():
    from transformers import TrainerState

    from edulora.training.pedagogy import OUT_OF_BAND
    from edulora.training.trainer import bounded_score, pedagogy_score

    one_reply = 1 / 12  # the tolerance of a 12-reply probe
    state = TrainerState(best_global_step=10, best_metric=2.0,
                         log_history=[{"step": 10, "eval_leak_rate": 3 / 12, "eval_loss": 2.0},
                                      {"step": 20, "eval_leak_rate": 5 / 12, "eval_loss": 1.9}])
    # Within one reply of the best so far (3/12): the loss is the score, the kept checkpoint stands.
    assert pedagogy_score(state, one_reply, "leak_rate", {"leak_rate": 4 / 12}, 2.2) == 2.2
    assert state.best_metric == 2.0
    # Further away: never better than a checkpoint within the band.
    assert pedagogy_score(state, one_reply, "leak_rate", {"leak_rate": 5 / 12}, 1.5) == pytest.approx(OUT_OF_BAND + 5 / 12)
    # 1/12 moves the best two replies below the kept 3/12: its score is forgotten, so this one (a higher
    # loss, within the new band) replaces it.
    assert pedagogy_score(state, one_reply, "leak_rate", {"leak_rate": 1 / 12}, 2.4) == 2.4
    assert state.best_metric is None
    # An evaluation past training.selection.max_drift does not set the best: the kept checkpoint stands (and
    # bounded_score then scores this one past the bound).
    state.best_metric = 2.0
    assert pedagogy_score(state, one_reply, "leak_rate", {"leak_rate": 0.0}, 2.4, drift=0.5, max_drift=0.1) == 2.4
    assert state.best_metric == 2.0 and bounded_score(2.4, 0.5, 0.1) > OUT_OF_BAND


def test_eval_loss_selection_ignores_the_scripted_metric(tiny_llama, tmp_path, write_jsonl, monkeypatch):
    scripted(monkeypatch, [0.9, 0.6, 0.0, 0.3, 0.3, 0.0])
    result = train(config_for(tiny_llama, write_jsonl(keyed_rows()), tmp_path / "runs"))
    assert result.summary.select_by == "eval_loss" and result.summary.selected_step == 12


def test_early_stopping_on_the_pedagogy_metric(tiny_llama, tmp_path, write_jsonl, monkeypatch):
    scripted(monkeypatch, [0.9, 0.1, 0.5, 0.6, 0.7, 0.1])
    config = config_for(tiny_llama, write_jsonl(keyed_rows()), tmp_path / "runs", select_by="leak_rate",
                        early_stopping_patience=2)
    result = train(config)
    assert result.summary.optimizer_steps == 9  # steps 6 and 9 did not beat step 3
    assert result.summary.selected_step == 3


def test_selection_needs_what_it_measures(tiny_llama, tmp_path, write_jsonl):
    from conftest import tutoring_rows

    config = config_for(tiny_llama, write_jsonl(tutoring_rows(16)), tmp_path / "runs",
                        select_by="incorrect_answer_rate")
    with pytest.raises(EduloraError, match="metadata.answer"):
        train(config)


def times_table_records(n: int = 4):
    from edulora.data.schema import record_from_dict

    return [record_from_dict({"messages": [{"role": "user", "content": f"What is 6 x {7 + i}? I think it is 50."},
                                           {"role": "assistant", "content": "Let us check that together."}],
                              "metadata": {"answer": str(6 * (7 + i))}}) for i in range(n)]


def test_the_probe_scores_replies_with_the_learned_judges():
    from edulora.formatting import PromptFormat

    records = times_table_records()
    probe = pedagogy.PedagogyProbe(records, PromptFormat(None, "instruction"), size=4, max_new_tokens=8, judged=True)
    telling = probe.score([f"6 x {7 + i} is {6 * (7 + i)}, so the answer is {6 * (7 + i)}." for i in range(4)])
    guiding = probe.score([f"Let's check: what is 6 x 6, and what do you add to get 6 x {7 + i}?" for i in range(4)])
    assert set(pedagogy.JUDGED) <= set(telling) and "leak_rate" in telling
    assert telling["judged_revealing_of_the_answer_rate"] == 1.0
    assert guiding["judged_revealing_of_the_answer_rate"] == 0.0
    assert guiding["judged_actionability_rate"] > telling["judged_actionability_rate"]
    off = pedagogy.PedagogyProbe(records, PromptFormat(None, "instruction"), size=4, max_new_tokens=8, judged=False)
    assert off.judges is None and not set(pedagogy.JUDGED) & set(off.score(["What do you think?"] * 4))
    # Selecting by a judged measure needs the judges, whatever ``judged`` says.
    chosen = pedagogy.PedagogyProbe(records, PromptFormat(None, "instruction"), 4, 8,
                                    select_by="judged_actionability_rate", judged=False)
    assert chosen.judges is not None


def test_judged_measures_can_select_and_are_oriented():
    from edulora.config import SELECT_BY

    assert set(SELECT_BY) == {"eval_loss", *pedagogy.HIGHER_IS_BETTER}
    assert pedagogy.badness("judged_providing_guidance_rate", 0.75) == 0.25  # more guidance is better
    assert pedagogy.badness("judged_revealing_of_the_answer_rate", 0.25) == 0.25  # more telling is worse
    with pytest.raises(EduloraError, match="judges gave no verdict"):
        pedagogy.measured("judged_actionability_rate", {"leak_rate": 0.0})


def test_select_by_a_judged_measure_logs_and_keeps_it(tiny_llama, tmp_path, write_jsonl):
    config = config_for(tiny_llama, write_jsonl(keyed_rows()), tmp_path / "runs", select_by="judged_actionability_rate")
    result = train(config)
    logged = [json.loads(line) for line in (result.run_dir.path / "metrics.jsonl").read_text().splitlines()]
    evaluations = [row for row in logged if "eval_judged_actionability_rate" in row]
    assert len(evaluations) >= 4
    assert all(0.0 <= row["eval_judged_providing_guidance_rate"] <= 1.0 for row in evaluations)
    assert result.summary.select_by == "judged_actionability_rate"
    assert set(pedagogy.JUDGED) <= set(result.summary.pedagogy["after"])
    # Oriented as HIGHER_IS_BETTER says: the band is anchored at the highest share seen.
    assert "judged actionability rate was within 1 reply of the highest" in result.summary.selection
