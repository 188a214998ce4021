"""The weekly loop of docs/loop.md, end to end on the tiny Llama, through the commands a team runs.

A platform's per-message export → ``edulora data convert --from transcripts`` → ``edulora train`` (the
deployed adapter) → a teacher corrects the reply her student received and a reviewer approves it (the
FastAPI app) →
``edulora feedback export`` → ``edulora train`` with ``model.adapter`` (continued on the correction,
with the deployed adapter's own data mixed in) → ``edulora eval DEPLOYED NEW`` comparing both in one
report, with a blind sheet written for a person and their ratings read back into the report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edulora.cli import main
from edulora.rundir import RunDir
from edulora.serving.app import create_app
from edulora.serving.engine import load_engine
from edulora.serving.feedback import FeedbackStore
from edulora.serving.guard import OriginGuard, served_hosts
from edulora.serving.roles import Roles
from edulora.serving.router import Router
from edulora.serving.service import TutorService

EXPORT = Path(__file__).resolve().parent / "data" / "transcripts" / "tutorchat_export.csv"
SHORT = ["model.precision=fp32", "data.max_length=96", "lora.target_modules=q_proj,v_proj", "training.batch_size=2",
         "training.grad_accum=1", "training.max_steps=2", "training.learning_rate=5e-3", "training.eval_steps=100", "training.save_steps=100",
         "training.selection.pedagogy_sample=0", "training.selection.retention_sample=0"]
TOKENS = {"ana": "token-of-ana-0001", "rita": "token-of-rita-0003", "class": "token-of-anas-class-1"}
BETTER = "Before adding, what could you do so that both fractions have pieces of the same size?"


def _train(out: Path, name: str, *settings: str) -> RunDir:
    assert main(["train", *[f"--set={s}" for s in (*SHORT, *settings, f"output_dir={out}", f"run_name={name}")]]) == 0
    return RunDir.open(out / name)


def _teacher_corrects_a_served_reply(deployed: RunDir, db: Path) -> str:
    """Ana's student asks the deployed tutor; Ana corrects the reply her student received (without its
    token, from the review page's API); Rita, a reviewer, approves the correction. Returns the served reply."""
    engine = load_engine([("deployed", deployed)], precision="fp32", max_batch=2, max_queue=8, default_max_tokens=8)
    engine.start()
    try:
        roles = Roles.parse([f"ana={TOKENS['ana']}", f"rita={TOKENS['rita']}:reviewer"], [f"ana={TOKENS['class']}"],
                            None)
        service = TutorService(engine, Router([]), FeedbackStore(db), None, roles.teachers, reviewers=roles.reviewers,
                               students=roles.students)
        app = OriginGuard(create_app(service), served_hosts("127.0.0.1", 8000, ()))
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            def call(who: str, path: str, body: dict | None = None) -> dict:
                response = client.request("POST" if body is not None else "GET", path, json=body,
                                          headers={"Authorization": f"Bearer {TOKENS[who]}"})
                assert response.status_code == 200, response.text
                return response.json()

            question = [{"role": "user", "content": "i got 4/12 for 3/4 + 1/8"}]
            reply = call("class", "/v1/chat/completions", {"model": "deployed", "messages": question, "max_tokens": 8})
            assert reply["id"] in [r["completion_id"] for r in call("ana", "/v1/received")["data"]]
            row = call("ana", f"/v1/received/{reply['id']}/feedback", {"rating": -1, "correction": BETTER})["id"]
            assert call("rita", f"/v1/feedback/{row}/review", {"status": "approved"})["status"] == "approved"
            return reply["choices"][0]["message"]["content"]
    finally:
        engine.stop()


@pytest.mark.slow  # trains twice and evaluates through the CLI's entry point
def test_transcripts_to_a_deployed_tutor_to_teachers_corrections_to_a_continued_tutor_compared(tiny_llama, tmp_path,
                                                                                               capsys):
    # Week 0: the platform's export becomes dialogues (tutor and students named as the export names them).
    dialogues = tmp_path / "dialogues.jsonl"
    assert main(["data", "convert", str(EXPORT), "--out", str(dialogues), "--from", "transcripts",
                 "--map", "tutor=Ms. Rivera", "--map", "student=Jordan|Sam"]) == 0
    assert len(dialogues.read_text().splitlines()) == 2
    deployed = _train(tmp_path, "deployed", f"model.name={tiny_llama}", f"data.train_file={dialogues}",
                      "data.eval_fraction=0.5", "training.selection.keep_best=false")

    # The week: a teacher corrects what the deployed tutor said, a reviewer approves; then the export.
    db = tmp_path / "feedback.sqlite3"
    served = _teacher_corrects_a_served_reply(deployed, db)
    corrections = tmp_path / "corrections.jsonl"
    assert main(["feedback", "export", "--db", str(db), "--out", str(corrections)]) == 0
    [record] = [json.loads(line) for line in corrections.read_text().splitlines()]
    assert record["response"] == BETTER and record["response"] != served
    assert record["metadata"]["approved_by"] == "rita" and record["metadata"]["written_by"] == "ana"

    # Continue the deployed adapter on the correction, judged on the deployed run's held-out conversations.
    week = _train(tmp_path, "week1", f"model.adapter={deployed}", f"data.train_file={corrections}",
                  f"data.eval_file={deployed.eval_file}")
    assert f"1 of 2 training examples are drawn from the data {deployed} was trained on" in capsys.readouterr().out
    info = week.read_data_info()
    assert info["start_adapter"] == str(deployed) and info["previous"]["added"] == 1  # half: 1 new, 1 previous
    assert info["previous"]["held_out_left_out"] == 1 and week.read_summary().train_examples == 2
    assert week.read_summary().eval_loss_before == pytest.approx(deployed.read_summary().eval_loss_after, rel=1e-5)

    # One report comparing the deployed and the new adapter, and a blind sheet for a person.
    report, sheet = tmp_path / "report.json", tmp_path / "ratings.csv"
    capsys.readouterr()
    assert main(["eval", str(deployed), str(week), "--max-new-tokens", "8", "--retention-prompts", "0", "--backend", "transformers",
                 "--json", str(report), "--blind-sheet", str(sheet)]) == 0
    result = json.loads(report.read_text())
    assert [m["name"] for m in result["models"]] == ["deployed", "week1"]
    losses = {m["name"]: m["eval_loss"] for m in result["models"]}
    assert losses["week1"] != losses["deployed"]

    # The rater prefers reply A throughout; read back, each model wins the rows where it was A.
    with sheet.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    choice = header.index("choice (A, B or same)")
    for row in body:
        row[choice] = "A"
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body])
    key = json.loads(sheet.with_name("ratings.key.json").read_text())
    as_a = sum(item["A"] == "week1" for item in key["items"].values())
    rated = tmp_path / "rated.json"
    assert main(["eval", str(deployed), str(week), "--max-new-tokens", "8", "--retention-prompts", "0", "--backend", "transformers",
                 "--json", str(rated), "--ratings", str(sheet)]) == 0
    human = {h["model"]: h for h in json.loads(rated.read_text())["human"]}
    assert (human["week1"]["wins"], human["week1"]["losses"]) == (as_a, len(body) - as_a)
    assert human["week1"]["unrated"] == 0 and len(body) >= 1
