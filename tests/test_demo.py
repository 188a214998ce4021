"""The demo's schedule: the training the guide's preset prescribes, evaluated a few evenly spaced times."""

from __future__ import annotations

import math

import pytest

from edulora.demo import EVALUATIONS, demo_config
from edulora.training import planned_optimizer_steps
from edulora.training.data import load_data


def test_demo_evaluates_before_each_third_and_at_the_end(tmp_path):
    config = demo_config(str(tmp_path))
    t = config.training
    # the training itself is the demo's, whatever the evaluation schedule
    assert (t.epochs, t.batch_size, t.grad_accum, t.learning_rate, t.warmup_ratio, t.max_steps) == \
        (2, 8, 1, 3e-3, 0.05, -1)
    assert (t.select_by, t.pedagogy_sample, t.keep_best, config.data.eval_fraction) == ("leak_rate", 12, True, 0.1)
    steps = planned_optimizer_steps(config, len(load_data(config).train))
    assert t.eval_steps == t.save_steps == math.ceil(steps / EVALUATIONS)
    # the Trainer evaluates every eval_steps and at the last step; with the one before training, >= 4 points
    points = {0, *range(t.eval_steps, steps + 1, t.eval_steps), steps}
    assert len(points) == EVALUATIONS + 1 and max(points) == steps


@pytest.mark.parametrize(("epochs", "batch_size", "grad_accum"), [(1.5, 2, 2), (1, 4, 1)])
def test_planned_steps_are_the_steps_training_takes(tiny_llama, tmp_path, epochs, batch_size, grad_accum):
    from conftest import write_tutoring_file
    from test_training import tiny_config

    from edulora.training import train

    data = write_tutoring_file(tmp_path, 22)
    config = tiny_config(tiny_llama, data, tmp_path / "runs", max_steps=-1, epochs=epochs, batch_size=batch_size,
                         grad_accum=grad_accum, eval_steps=100, save_steps=100, pedagogy_sample=0, retention_sample=0)
    planned = planned_optimizer_steps(config, len(load_data(config).train))
    assert planned == train(config).summary.optimizer_steps
