"""Scrubbing personal information: each kind, the false positives that must survive, the report."""

from __future__ import annotations

import json

import pytest

from edulora.data.privacy import Roster, ScrubReport, intro_names, load_roster, scrub_records, scrub_text
from edulora.data.schema import Dialogue, Example, Metadata, Turn
from edulora.errors import EduloraError


def scrubbed(text: str, roster: Roster | None = None) -> str:
    return scrub_text(text, roster)[0]


@pytest.mark.parametrize("text, expected", [
    ("Email me at ana.lopez+hw@school.k12.ca.us please", "Email me at [EMAIL] please"),
    ("My mom's email is JOHN_doe@Example.COM.", "My mom's email is [EMAIL]."),
    ("Call (555) 123-4567 tonight", "Call [PHONE] tonight"),
    ("my number is 555-123-4567.", "my number is [PHONE]."),
    ("or 555.987.6543 or +1 555 987 6543", "or [PHONE] or [PHONE]"),
    ("UK: +44 20 7946 0958", "UK: [PHONE]"),
    ("text me 5551234567", "text me [PHONE]"),
    ("see https://example.com/a?b=1, then", "see [URL], then"),
    ("try www.khanacademy.org.", "try [URL]."),
    ("go to mathisfun.com/fractions for help", "go to [URL] for help"),
    ("I live at 123 Main Street, Apt 4B.", "I live at [ADDRESS]."),
    ("Send it to 42 Elm St., Springfield, IL 62704 today", "Send it to [ADDRESS] today"),
    ("We met at 725 5th Avenue", "We met at [ADDRESS]"),
    ("P.O. Box 1234", "[ADDRESS]"),
    ("My student ID is 20231234.", "My student ID is [STUDENT_ID]."),
    ("student number: 445566", "student number: [STUDENT_ID]"),
    ("ID# 98765 and ID: S-12345", "ID# [STUDENT_ID] and ID: [STUDENT_ID]"),
    ("badge S1234567 please", "badge [STUDENT_ID] please"),
    ("Hi, I'm Ana Lopez and I need help", "Hi, I'm [NAME] and I need help"),
    ("my name is jose. what is 3+4?", "my name is [NAME]. what is 3+4?"),
    ("You can call me Bobby!", "You can call me [NAME]!"),
    ("I am Priya, and Priya likes math", "I am [NAME], and [NAME] likes math"),
])
def test_each_kind_is_replaced(text, expected):
    assert scrubbed(text) == expected


@pytest.mark.parametrize("text", [
    "In May we learned fractions.",
    "Will you help me? I will try.",
    "I'm Confused about this. I'm Not sure. I'm Trying. I'm So lost. I'm Ready!",
    "I am 12 years old and I'm in Grade 7.",
    "What is 345 * 12?",
    "Columbus sailed in the year 1492.",
    "Pi is about 3.14159, and e is 2.71828.",
    "If x = 12345, what is x + 1?",
    "The population was 1234567 in 2020.",
    "Multiply 123.45 by 6.78 and round to 3 places.",
    "Add 3 apples on the way home.",
    "Solve 2x - 345 = 1234 for x.",
    "The answer is 1,234,567.",
    "The date 2024-05-17 is a Friday.",
    "She said so.Me too, the end.",
    "Read chapter 12, pages 100-120.",
    "My name is not important, what is 7 x 8?",
])
def test_false_positives_survive(text):
    assert scrubbed(text) == text


def test_intro_names():
    assert intro_names("Hello! I'm Maria Gonzalez, and I'm Stuck.") == ["Maria Gonzalez"]
    assert intro_names("I’m Li.") == ["Li"]
    assert intro_names("I'm Working on it") == []


def test_roster_names():
    roster = Roster(["Maria Gonzalez", "May Chen", "Will", "  ", "Okonkwo"])
    text = "Maria and maria gonzalez met May Chen. Chen came in May. Thanks, Will! Will you? I will. Okonkwo too."
    assert scrubbed(text, roster) == (
        "[NAME] and [NAME] met [NAME]. [NAME] came in May. Thanks, [NAME]! Will you? I will. [NAME] too.")


def test_load_roster(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\ufeff# class 5B\nAna Lopez\n\n  Ben Ito  \n", encoding="utf-8")
    assert load_roster(path).names == ["Ana Lopez", "Ben Ito"]
    with pytest.raises(EduloraError, match="no such roster"):
        load_roster(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_bytes(b"Jos\xe9\n")
    with pytest.raises(EduloraError, match="not valid UTF-8"):
        load_roster(tmp_path / "bad.txt")


def test_scrub_records_covers_every_field_and_learns_names_per_record():
    example = Example(
        instruction="I'm Ana. Email ana@x.org",
        context="Phone 555-123-4567",
        response="Great question, Ana! Visit https://k.org",
        metadata=Metadata(subject="math", extra={"student": "Ana", "notes": ["id: 123456"]}),
        extra={"source_url": "www.school.edu/ana"},
    )
    dialogue = Dialogue(turns=[Turn("user", "call me Sam"), Turn("assistant", "Hi Sam, and hi Ana.")])
    out, report = scrub_records([example, dialogue], roster=["Ben Ito"])
    ex, dia = out
    assert ex.instruction == "I'm [NAME]. Email [EMAIL]"
    assert ex.context == "Phone [PHONE]"
    assert ex.response == "Great question, [NAME]! Visit [URL]"
    assert ex.metadata.extra == {"student": "[NAME]", "notes": ["id: [STUDENT_ID]"]}
    assert ex.extra == {"source_url": "[URL]"}
    # "Ana" was introduced in the first record only, so the dialogue keeps that word.
    assert [t.content for t in dia.turns] == ["call me [NAME]", "Hi [NAME], and hi Ana."]
    assert example.instruction == "I'm Ana. Email ana@x.org"  # the input is not modified
    assert report.records == 2 and report.records_changed == 2
    assert report.counts == {"NAME": 5, "EMAIL": 1, "PHONE": 1, "URL": 2, "STUDENT_ID": 1}
    assert set(report.by_line) == {1, 2}


def test_report_never_holds_the_values():
    records = [Example(instruction="I'm Zelda, zelda@mail.com, 555-222-3333", response="ok")]
    _, report = scrub_records(records, lines=[17])
    dumped = json.dumps(report.to_dict()) + "\n".join(report.summary_lines())
    for secret in ("Zelda", "zelda", "mail.com", "555", "222-3333"):
        assert secret not in dumped
    assert report.to_dict()["by_line"] == {"17": {"NAME": 1, "EMAIL": 1, "PHONE": 1}}
    assert report.summary_lines()[1] == "  line 17: EMAIL 1, PHONE 1, NAME 1"


def test_clean_records_report_nothing():
    _, report = scrub_records([Example(instruction="What is 7 x 8?", response="56")])
    assert report.total == 0 and report.by_line == {} and isinstance(report, ScrubReport)
    assert report.summary_lines() == ["replaced 0 value(s) in 0 of 1 record(s)"]
