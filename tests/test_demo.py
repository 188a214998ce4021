"""The demo's schedule: the training the guide's preset prescribes, evaluated a few evenly spaced times."""

from __future__ import annotations

import math

import pytest

from edulora.demo import EVALUATIONS, PASSES, demo_config
from edulora.training import planned_optimizer_steps
from edulora.training.data import load_data


def test_demo_evaluates_before_training_half_way_and_at_the_end(tmp_path):
    config = demo_config(str(tmp_path))
    t = config.training
    # the training itself is the demo's, whatever the evaluation schedule
    assert (t.epochs, t.batch_size, t.grad_accum, t.learning_rate, t.lr_scheduler, t.warmup_ratio, t.max_steps) == \
        (PASSES, 4, 1, 4e-3, "linear", 0.05, -1)
    # held-out losses only during training (the evaluation afterwards scores replies and drift); the base's
    # own replies to general requests mixed in
    s = t.selection
    assert (s.select_by, s.pedagogy_sample, s.retention_sample, s.keep_best, config.data.eval_fraction) == \
        ("eval_loss", 0, 0, True, 0.1)
    assert (config.data.replay_fraction, config.data.replay_responses) == (0.1, "base")
    steps = planned_optimizer_steps(config, len(load_data(config).train))
    assert t.eval_steps == t.save_steps == math.ceil(steps / EVALUATIONS)
    # the Trainer evaluates every eval_steps and at the last step; with the one before training, 3 points
    points = {0, *range(t.eval_steps, steps + 1, t.eval_steps), steps}
    assert len(points) == EVALUATIONS + 1 and max(points) == steps


@pytest.mark.parametrize(("epochs", "batch_size", "grad_accum"), [(1.5, 2, 2), (1, 4, 1), (0.85, 4, 1)])  # a part of a pass: the demo's
def test_planned_steps_are_the_steps_training_takes(tiny_llama, tmp_path, epochs, batch_size, grad_accum):
    from conftest import write_tutoring_file
    from test_training import tiny_config

    from edulora.training import train

    data = write_tutoring_file(tmp_path, 22)
    config = tiny_config(tiny_llama, data, tmp_path / "runs", max_steps=-1, epochs=epochs, batch_size=batch_size,
                         grad_accum=grad_accum, eval_steps=100, save_steps=100, pedagogy_sample=0, retention_sample=0)
    planned = planned_optimizer_steps(config, len(load_data(config).train))
    assert planned == train(config).summary.optimizer_steps


def test_the_replies_shown_are_the_scored_ones_of_the_picked_records(capsys):
    """The side-by-side comparison prints the evaluation's own replies (matched by record), not a new sample."""
    from types import SimpleNamespace

    from edulora.data.schema import Example, Metadata
    from edulora.demo import replies_to, show_before_after
    from edulora.evaluation.results import ReplyResult

    held_out = [Example(instruction=f"question {i}", response="-", metadata=Metadata()) for i in range(4)]
    replies = {name: [ReplyResult(i, f"{name} reply to {i}", 3, 0.1, {}) for i in (3, 1, 0, 2)]
               for name in ("base", "tuned")}
    evaluation = SimpleNamespace(model=lambda name: SimpleNamespace(replies=replies[name]))
    picks = [held_out[2], held_out[0]]
    before, after = (replies_to(evaluation, name, held_out, picks) for name in ("base", "tuned"))
    assert before == ["base reply to 2", "base reply to 0"] and after == ["tuned reply to 2", "tuned reply to 0"]
    shown = show_before_after(picks, before, after, 100)
    assert shown == [("question 2", "base reply to 2", "tuned reply to 2"),
                     ("question 0", "base reply to 0", "tuned reply to 0")]
    assert "TUNED TUTOR" in capsys.readouterr().out


@pytest.mark.parametrize(("available", "budget"), [(None, 4.0), (3.0, 4.0), (9.0, 4.5), (12.0, 6.0), (23.0, 8.0)])
def test_the_demo_plans_for_half_the_free_memory_between_the_default_and_its_cap(available, budget):
    from edulora.demo import demo_memory_budget

    assert demo_memory_budget(available) == budget


def test_the_demo_config_takes_its_budget_from_the_memory_left(tmp_path, monkeypatch):
    import edulora.demo as demo

    monkeypatch.setattr(demo, "available_memory_gb", lambda: 12.0)
    assert demo.demo_config(str(tmp_path)).training.memory.budget_gb == 6.0
    monkeypatch.setattr(demo, "available_memory_gb", lambda: None)
    assert demo.demo_config(str(tmp_path)).training.memory.budget_gb == 4.0


def test_available_memory_is_read_from_the_system_and_bounded_by_its_total():
    from pathlib import Path

    from edulora.training.memory import GB, available_memory_gb

    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo: available_memory_gb reads Linux's count and returns None elsewhere")
    total = next(int(line.split()[1]) * 1024 for line in meminfo.read_text().splitlines()
                 if line.startswith("MemTotal:")) / GB
    available = available_memory_gb()
    assert available is not None and 0 < available <= total


def test_a_containers_memory_limit_lowers_what_is_available(tmp_path):
    from edulora.training.memory import GB, available_memory_gb

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25000000 kB\nMemAvailable:   20971520 kB\n")  # 20 GiB
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory_gb(str(meminfo), str(cgroup)) == 20.0  # no cgroup files: the machine's count
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text(f"{GB}\n")
    assert available_memory_gb(str(meminfo), str(cgroup)) == 20.0  # unlimited
    (cgroup / "memory.max").write_text(f"{6 * GB}\n")
    assert available_memory_gb(str(meminfo), str(cgroup)) == 5.0  # 6 GiB limit, 1 GiB used
    meminfo.write_text("MemTotal:       25000000 kB\n")
    assert available_memory_gb(str(meminfo), str(cgroup)) is None


def test_the_verdict_claims_a_difference_only_where_the_intervals_do_not_overlap():
    from edulora.demo import verdict
    from edulora.evaluation.rates import rate

    base = {"leak_rate": rate(2, 21), "incorrect_answer_rate": rate(1, 21), "question_rate": rate(1, 50)}
    tuned = {"leak_rate": rate(1, 21), "incorrect_answer_rate": rate(1, 21), "question_rate": rate(35, 50)}
    line = verdict(base, tuned)
    assert "asks more questions (intervals do not overlap)" in line
    assert "no clear difference in giving answers away (intervals overlap)" in line
    assert "no clear difference in wrong answers (intervals overlap)" in line
    # the other way round, the same evidence reads as fewer questions; an unmeasured rate is said to be
    assert "asks fewer questions (intervals do not overlap)" in verdict(tuned, base)
    assert "giving answers away: not measured" in verdict({}, tuned)


def test_the_demo_prints_each_rate_with_its_n_interval_and_a_verdict(capsys):
    from types import SimpleNamespace

    from edulora.demo import print_rates
    from edulora.evaluation.rates import rate

    def model(name, is_base, leaks, questions):
        return SimpleNamespace(name=name, is_base=is_base, replies=[],
                               rates={"leak_rate": rate(leaks, 21), "incorrect_answer_rate": rate(0, 21),
                                      "question_rate": rate(questions, 50)})

    evaluation = SimpleNamespace(models=[model("base", True, 2, 1), model("tuned", False, 1, 35)], records=[],
                                 model=lambda name: SimpleNamespace(replies=[]))
    print_rates(evaluation)
    out = capsys.readouterr().out
    assert "base 10% [3–29%] of 21" in out and "tuned 70% [56–81%] of 50" in out
    assert "replies with a key or a computable answer" in out
    assert out.strip().splitlines()[-1].startswith("Verdict, tuned vs base: ")


def test_the_verdict_covers_the_judged_dimensions():
    from edulora.demo import verdict
    from edulora.evaluation.rates import rate

    base = {"judged_providing_guidance_rate": rate(10, 50), "judged_actionability_rate": rate(20, 50),
            "judged_mistake_identification_rate": rate(25, 50)}
    tuned = {"judged_providing_guidance_rate": rate(35, 50), "judged_actionability_rate": rate(24, 50),
             "judged_mistake_identification_rate": rate(5, 50)}
    line = verdict(base, tuned)
    assert "guides more often (intervals do not overlap)" in line
    assert "no clear difference in actionability (intervals overlap)" in line
    assert "notices mistakes less often (intervals do not overlap)" in line


def test_the_drift_line_says_what_replay_did_only_when_training_had_it():
    from types import SimpleNamespace

    from edulora.demo import drift_line
    from edulora.evaluation.rates import rate
    from edulora.evaluation.results import Retention
    from edulora.evaluation.retention import drift_reading

    def model(name, is_base, drift):
        kept = Retention(drift=drift, low=drift / 2, high=drift * 2, n=40, tokens=1000, reading=drift_reading(drift),
                         distinct_2=0.9, longest_repeat=1.0, degenerate=rate(0, 40), data="x")
        return SimpleNamespace(name=name, is_base=is_base, retention=kept)

    evaluation = SimpleNamespace(models=[model("base", True, 0.0), model("tuned", False, 0.05)])
    replay = {"fraction": 0.1, "added": 51, "responses": "base", "base_replies": 32}
    line = drift_line(evaluation, replay)
    assert line.startswith("Drift from the base on 40 general prompts") and "small: " in line
    assert "Replay: 51 of the training examples (10%) were general requests with the base model's own replies" in line
    assert "the replies in the replay data" in drift_line(evaluation, {**replay, "base_replies": 0})
    assert "Replay" not in drift_line(evaluation, None) and "Replay" not in drift_line(evaluation, {"added": 0})


def test_the_demo_decodes_its_replies_in_pytorch_where_training_ran_in_bf16_on_a_cpu():
    """Batched bf16 replies on a CPU with fast bf16 (measured twice llama.cpp's rate for 50 replies at once);
    a CPU training in fp32, a GPU, or a backend asked for by name keeps choose_backend's answer."""
    from edulora.demo import reply_backend
    from edulora.inference.llamacpp import choose_backend

    assert reply_backend("auto", "bfloat16", "cpu") == "transformers"
    assert reply_backend("auto", "float32", "cpu") == choose_backend("auto")
    assert reply_backend("llamacpp", "bfloat16", "cpu") == "llamacpp"
    assert reply_backend("transformers", "float32", "cpu") == "transformers"
