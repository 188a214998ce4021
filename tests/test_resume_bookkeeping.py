"""What ``edulora train --resume`` does before training (issue 38): say where it resumes from, cut
metrics.jsonl back to that checkpoint, and leave a finished run alone.

The training itself is replaced by a stub: these are the run directory's rules, and
tests/test_crash_resume.py resumes real killed runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edulora.cli import main
from edulora.config import RunConfig
from edulora.rundir import RunDir, RunSummary
from edulora.training import RunResult, recipe


def _run_dir(tmp_path: Path, logged_steps: range, checkpoint: int) -> RunDir:
    """A run killed after logging ``logged_steps``, with its last complete checkpoint at ``checkpoint``."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(RunConfig())
    (run.checkpoints_dir / f"checkpoint-{checkpoint}").mkdir(parents=True)
    (run.checkpoints_dir / f"checkpoint-{checkpoint}" / "trainer_state.json").write_text("{}")
    for step in logged_steps:
        run.append_metrics({"step": step, "loss": 1.0 / step})
    return run


@pytest.fixture
def resumed(monkeypatch):
    """The checkpoints ``resume`` handed to training (which does not run)."""
    calls: list[str] = []

    def fake_run(config, run_dir, checkpoint):
        calls.append(checkpoint)
        return RunResult(run_dir, RunSummary(eval_loss_before=2.0, eval_loss_after=1.0), None)

    monkeypatch.setattr(recipe, "_run", fake_run)
    return calls


def test_resume_drops_the_metrics_rows_logged_after_its_checkpoint(tmp_path, capsys, resumed):
    run = _run_dir(tmp_path, range(1, 9), checkpoint=5)
    with open(run.metrics_file, "a") as handle:
        handle.write('{"step": 9, "lo')  # killed mid-write
    assert main(["train", "--resume", str(run)]) == 0
    # Training logs steps 6, 7, 8 again from the checkpoint: the first copies must be gone.
    assert [row["step"] for row in run.read_metrics()] == [1, 2, 3, 4, 5]
    assert run.metrics_file.read_text().endswith("}\n")
    assert resumed == [str(run.checkpoints_dir / "checkpoint-5")]


def test_resume_says_which_checkpoint_it_resumes_from(tmp_path, capsys, resumed):
    run = _run_dir(tmp_path, range(1, 4), checkpoint=3)
    assert main(["train", "--resume", str(run)]) == 0
    assert f"resuming from checkpoint-3 of {run}" in capsys.readouterr().out


def test_resume_on_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys, resumed):
    run = _run_dir(tmp_path, range(1, 11), checkpoint=10)
    run.write_summary(RunSummary(status="done", eval_loss_before=2.0, eval_loss_after=1.0))
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    code = main(["train", "--resume", str(run)])
    out, err = capsys.readouterr()
    assert (code, err, resumed) == (0, "", [])
    assert out.splitlines() == [f"edulora: nothing to do: {run.path} finished training already; "
                                f"its adapter is {run.adapter_dir}"]
    assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before


def test_resume_without_a_checkpoint_is_still_a_one_line_error(tmp_path, capsys, resumed):
    run = _run_dir(tmp_path, range(1, 3), checkpoint=5)
    for folder in run.checkpoints_dir.iterdir():
        (folder / "trainer_state.json").unlink()  # cut off mid-save: not a checkpoint
    assert main(["train", "--resume", str(run)]) == 2
    assert "no checkpoint to resume from yet" in capsys.readouterr().err
    assert [json.loads(line)["step"] for line in run.metrics_file.read_text().splitlines()] == [1, 2]
