"""Per-message transcript exports → dialogues: our own sample exports in several platforms' shapes (tests/data/transcripts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import edulora as el
from edulora import data
from edulora.cli import main
from edulora.data.formats import detect_format, parse_column_map
from edulora.data.importers.transcripts import looks_like_transcript
from edulora.data.io import Skipped
from edulora.errors import EduloraError

SAMPLES = Path(__file__).resolve().parent / "data" / "transcripts"
#: A chat platform's CSV: speakers by name, ISO timestamps (one message out of place), the grade as "grade".
TUTORCHAT = SAMPLES / "tutorchat_export.csv"
#: A classroom app's JSON lines: numeric ids, turn numbers out of file order, system notices.
CLASSROOM = SAMPLES / "classroom_chat.jsonl"
#: A Q&A forum's CSV: role words with names ("Tutor (Mr. Chen)"), metadata and the key on the first row.
FORUM = SAMPLES / "forum_threads.csv"
#: An LMS export without metadata, and the side file with one row per conversation.
LESSONS, SESSIONS = SAMPLES / "lessons_messages.csv", SAMPLES / "lessons_sessions.csv"
TUTORCHAT_MAP = "conversation=session_id,role=sender,text=message,order=sent_at,grade_level=grade"
TUTORCHAT_SPEAKERS = ["tutor=Ms. Rivera", "student=Jordan|Sam"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def roles_and_text(dialogue) -> list[tuple[str, str]]:
    return [(t.role, t.content) for t in dialogue.turns]


def test_csv_with_iso_timestamps_and_speaker_names():
    mapping = parse_column_map([TUTORCHAT_MAP, *TUTORCHAT_SPEAKERS])
    first, second = data.import_transcripts(TUTORCHAT, mapping)
    assert roles_and_text(first) == [
        ("user", "hi, my name is [NAME] and i'm stuck on fractions"),
        ("assistant", "Hi [NAME]! Which problem are you looking at?"),
        ("user", "3/4 + 1/8\ni got 4/12"),  # a burst of messages is one turn
        ("assistant", "Good start. Can 4ths and 8ths be added before they are the same size of piece?"),
        ("user", "no... so 3/4 is 6/8? then 7/8"),  # the empty message (a sticker) is dropped
        # the last row of the file belongs here by its timestamp
        ("assistant", "Exactly. How could you check that 7/8 makes sense?\nNice, [NAME]. See you Thursday!"),
    ]
    assert first.metadata.to_dict() == {"subject": "mathematics", "grade_level": "elementary",
                                        "conversation_id": "TC-2024-0311-A"}
    # The tutor opens the second session; the metadata is on its second row (first non-empty value wins).
    assert second.turns[0].role == "assistant" and "[EMAIL]" in second.turns[1].content
    assert (second.metadata.subject, second.metadata.grade_level.value) == ("mathematics", "middle_school")


def test_speakers_by_option_and_column_guesses_without_a_map():
    speakers = {"Ms. Rivera": "tutor", "jordan": "student", "SAM": "student"}
    dialogues = data.import_transcripts(TUTORCHAT, {"grade_level": "grade"}, speakers=speakers)
    assert [d.metadata.extra["conversation_id"] for d in dialogues] == ["TC-2024-0311-A", "TC-2024-0312-B"]
    with pytest.raises(EduloraError, match="say student, tutor or skip, not 'teacher'"):
        data.import_transcripts(TUTORCHAT, speakers={"Ms. Rivera": "teacher"})


def test_jsonl_with_turn_numbers_system_notices_and_an_unanswered_session():
    skipped: list[Skipped] = []
    plants, rain = data.import_transcripts(CLASSROOM, skipped=skipped)
    assert [t.role for t in plants.turns] == ["user", "assistant", "user", "assistant"]
    assert plants.turns[0].content == "Why do plants need sunlight?"  # turn 1 comes second in the file
    assert rain.turns[0].content == "where does rain come from"  # "Learner joined the room" is left out
    assert plants.metadata.extra == {"conversation_id": "5501"}  # other columns ("lesson") are not metadata
    assert [(s.line, s.reason) for s in skipped] == [
        (9, "conversation '5503' has no tutor reply to a student message")]
    assert detect_format(CLASSROOM) == "transcripts"


def test_per_conversation_metadata_columns_and_the_key():
    equation, circle = data.import_transcripts(FORUM)
    assert equation.metadata.to_dict() == {
        "subject": "mathematics", "grade_level": "middle_school", "teaching_style": "socratic",
        "conversation_id": "T-88", "answer": "4", "solution": "2x = 8, so x = 4"}
    assert (circle.metadata.answer, circle.metadata.grade_level.value) == ("28.27", "high_school")
    assert [t.role for t in equation.turns] == ["user", "assistant", "user", "assistant"]  # "Tutor (Mr. Chen)"


def test_side_metadata_file_keyed_by_conversation(tmp_path):
    sky, percent = data.import_transcripts(LESSONS, metadata_file=SESSIONS)
    assert sky.metadata.to_dict() == {"subject": "physics", "grade_level": "middle_school",
                                      "teaching_style": "socratic", "conversation_id": "L-1",
                                      "answer": "Blue light scatters most (Rayleigh scattering)"}
    assert (percent.metadata.answer, percent.metadata.grade_level.value) == ("12", "middle_school")
    # JSON lines too, its id column named otherwise (guessed), a mapped column only it has; a bad value at its line
    side = tmp_path / "side.jsonl"
    side.write_text('{"session_id": "L-1", "level": "grade 4"}\n{"session_id": "L-2", "level": "toddler"}\n'
                    '{"session_id": "L-1", "level": "grade 5"}\n', encoding="utf-8")
    with pytest.raises(data.DataProblems) as caught:
        data.import_transcripts(LESSONS, {"conversation": "conversation_id", "grade_level": "level"}, metadata_file=side)
    assert [str(p) for p in caught.value.problems] == [
        f"{side}:2: metadata: unknown grade_level 'toddler' (known: elementary, middle_school, high_school, "
        "college, adult, or 'grade N')",
        f"{side}:3: conversation 'L-1' is listed twice (first at line 1)"]


def test_side_file_wins_over_columns(tmp_path):
    side = tmp_path / "side.csv"
    side.write_text("thread_id,subject,answer\nT-88,physics,five\n", encoding="utf-8")
    equation, circle = data.import_transcripts(FORUM, metadata_file=side)
    assert (equation.metadata.subject, equation.metadata.answer, equation.metadata.teaching_style.value) == (
        "physics", "five", "socratic")
    assert circle.metadata.subject == "mathematics"


def test_unknown_speaker_is_one_line_each_with_exit_2(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(capsys, "data", "convert", "--from", "transcripts", TUTORCHAT, "--out", out,
                            "--map", TUTORCHAT_MAP, "--map", "tutor=Ms. Rivera")
    assert (code, stdout) == (2, "")
    assert err.splitlines() == [
        f"{TUTORCHAT}:2: unknown speaker 'Jordan' (5 message(s)); say who it is with --map tutor='Jordan' "
        "or --map student='Jordan'",
        f"{TUTORCHAT}:11: unknown speaker 'Sam' (2 message(s)); say who it is with --map tutor='Sam' "
        "or --map student='Sam'",
        f"{TUTORCHAT}: 2 problem(s); nothing written"]
    assert not out.exists()


def test_bad_rows_are_file_line_problems(tmp_path):
    path = tmp_path / "chat.csv"
    path.write_text("chat_id,from,msg,turn\nc1,student,hi,1\n,tutor,hello,2\nc1,tutor,hello,second\n"
                    "c2,student,q,1\nc2,tutor,a,2024-01-01T10:00:00\n", encoding="utf-8")
    with pytest.raises(data.DataProblems) as caught:
        data.import_transcripts(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3: empty conversation id (column 'chat_id')",
        f"{path}:4: order value 'second' (column 'turn') is not a number or an ISO 8601 timestamp "
        "(2024-03-05T14:02:11)",
        f"{path}:5: conversation 'c2' mixes order values: number and timestamp without a time zone; use one kind"]
    missing = tmp_path / "missing.csv"
    missing.write_text("id,who,words\n1,student,hi\n", encoding="utf-8")
    with pytest.raises(data.DataProblems, match=r"missing.csv:1: no conversation column \(tried conversation_id"):
        data.import_transcripts(missing)


def test_pii_scrubbed_by_default_and_kept_only_when_asked(tmp_path, capsys):
    scrubbed, kept = tmp_path / "scrubbed.jsonl", tmp_path / "kept.jsonl"
    speakers = [a for s in TUTORCHAT_SPEAKERS for a in ("--map", s)]
    assert run(capsys, "data", "convert", TUTORCHAT, "--out", scrubbed, "--from", "transcripts", "--map", TUTORCHAT_MAP,
               *speakers)[:2] == (0, f"wrote 2 records to {scrubbed}\n")
    text = scrubbed.read_text(encoding="utf-8")
    assert "sam.okafor@example.org" not in text and "Jordan" not in text and "[EMAIL]" in text
    assert run(capsys, "data", "convert", TUTORCHAT, "--out", kept, "--map", TUTORCHAT_MAP, *speakers, "--no-scrub")[0] == 0
    assert "sam.okafor@example.org" in kept.read_text(encoding="utf-8")
    # an existing output is not replaced without --overwrite
    code, _, err = run(capsys, "data", "convert", TUTORCHAT, "--out", kept, "--map", TUTORCHAT_MAP, *speakers)
    assert code == 2 and "exists; pass --overwrite" in err and "sam.okafor" in kept.read_text(encoding="utf-8")


def test_transcript_options_are_refused_for_other_formats(tmp_path, capsys):
    guide = tmp_path / "g.jsonl"
    guide.write_text('{"instruction": "q", "response": "a"}\n', encoding="utf-8")
    code, _, err = run(capsys, "data", "convert", guide, "--out", tmp_path / "o.jsonl", "--no-scrub")
    assert code == 2 and err.startswith("edulora: error: --metadata and --no-scrub apply to transcripts only")
    quiz = tmp_path / "q.csv"
    quiz.write_text("instruction,response\nq,a\n", encoding="utf-8")
    code, _, err = run(capsys, "data", "convert", quiz, "--out", tmp_path / "o.jsonl", "--map", "role=who")
    assert code == 2 and "--map role: transcript fields; read" in err and len(err.splitlines()) == 1


def test_metadata_side_file_is_never_the_output(tmp_path, capsys):
    side = tmp_path / "side.csv"
    shutil.copy(SESSIONS, side)
    code, _, err = run(capsys, "data", "convert", LESSONS, "--out", side, "--metadata", side, "--overwrite")
    assert code == 2 and "is the input file --metadata" in err
    assert side.read_bytes() == SESSIONS.read_bytes()


def test_map_items_may_be_comma_separated_and_speakers_add_up():
    assert parse_column_map(["conversation=chat,role=who", "tutor=Rivera, Ms", "tutor=Lee"]) == {
        "conversation": "chat", "role": "who", "tutor": "Rivera, Ms|Lee"}
    assert parse_column_map(["instruction=question,response=answer,answer=key"]) == {
        "instruction": "question", "response": "answer", "answer": "key"}
    with pytest.raises(EduloraError, match="unknown field 'speaker'"):
        parse_column_map(["speaker=who"])


def test_detection_keeps_other_formats():
    assert looks_like_transcript(["session_id", "Speaker", "Message", "sent_at"])
    assert not looks_like_transcript(["conversation_id", "role", "text", "instruction", "response"])
    assert not looks_like_transcript(["messages", "metadata"])
    assert detect_format(FORUM) == detect_format(LESSONS) == "transcripts"


@pytest.fixture(scope="module")
def tokenizer(packaged_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_model_dir)


@pytest.mark.parametrize("template", ["chat", "instruction"])
def test_converted_transcripts_load_and_encode(tmp_path, capsys, tokenizer, template):
    outputs = []
    for source, extra in ((TUTORCHAT, ["--map", TUTORCHAT_MAP, "--map", "tutor=Ms. Rivera,student=Jordan|Sam"]),
                          (CLASSROOM, []), (FORUM, []), (LESSONS, ["--metadata", SESSIONS])):
        out = tmp_path / f"{source.stem}.jsonl"
        assert run(capsys, "data", "convert", source, "--out", out, *extra)[0] == 0
        outputs.append(out)
    fmt = el.PromptFormat.create(tokenizer, template)
    for out in outputs:
        records = el.load_records(out)
        assert records and all(isinstance(r, el.Dialogue) for r in records)
        for record in records:
            assert fmt.encode(record, max_length=512).trainable_tokens > 0
    assert run(capsys, "data", "validate", outputs[0])[0] == 0


def test_a_tiny_model_trains_on_converted_transcripts(tmp_path, monkeypatch, tiny_llama):
    from conftest import REPO

    monkeypatch.chdir(REPO)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in data.import_transcripts(FORUM) * 4
                             + data.import_transcripts(CLASSROOM) * 4), encoding="utf-8")
    config = el.load_config("configs/mathematics.yaml", [
        f"model.name={tiny_llama}", "model.precision=fp32", f"data.train_file={train}", "data.eval_fraction=0.25",
        "data.max_length=128", "training.batch_size=2", "training.grad_accum=1", "training.max_steps=2",
        "training.warmup_ratio=0", "training.selection.pedagogy_sample=0", "training.selection.retention_sample=0",
        f"output_dir={tmp_path / 'runs'}", "run_name=transcripts"])
    result = el.train(config)
    assert result.summary.status == "done"
