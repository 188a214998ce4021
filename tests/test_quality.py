"""Report computations (pure functions) and their rendering."""

from __future__ import annotations

import base64
import json
import random
import re
import time

import pytest

from edulora.data.quality import (
    GRADE_BANDS,
    EstimateCounter,
    auto_thin_below,
    build_report,
    coverage,
    duplicates,
    leakage,
    lengths,
    load_token_counter,
    misconceptions,
    readability,
    similar_pairs,
)
from edulora.data.report_render import findings, render_html, render_json, render_text, table
from edulora.data.schema import Dialogue, Example, GradeLevel, Metadata, TeachingStyle, Turn
from edulora.errors import EduloraError

G, S = GradeLevel, TeachingStyle

EASY = "The cat sat on the mat. It was a big cat. The cat was fat and it was glad. We like the cat a lot."
HARD = ("Photosynthetic organisms transform electromagnetic radiation into chemical potential energy through "
        "sophisticated biochemical mechanisms, predominantly involving chlorophyll-mediated excitation, "
        "electron transport chains, and subsequent carbohydrate biosynthesis within chloroplast membranes.")


def ex(instruction: str, response: str = EASY, subject: str | None = "mathematics", grade: GradeLevel | None = G.ELEMENTARY,
       style: TeachingStyle | None = S.SOCRATIC, **extra) -> Example:
    return Example(instruction=instruction, response=response,
                   metadata=Metadata(subject=subject, grade_level=grade, teaching_style=style, extra=extra))


def test_coverage_matrix_thin_empty_and_vocabulary():
    records = [ex(f"q{i}") for i in range(4)] + [
        ex("q5", grade=G.MIDDLE_SCHOOL, style=S.ANALOGY_BASED),
        ex("q6", subject="astrology", style=S.DIRECT_INSTRUCTION),
        ex("q7", subject=None, grade=None, style=None),
    ]
    c = coverage(records, thin_below=3)
    assert c.count("mathematics", "elementary", "socratic") == 4
    assert c.count("mathematics", "middle_school", "analogy_based") == 1
    assert [(x.subject, x.grade_level, x.teaching_style, x.count) for x in c.thin_cells] == [
        ("astrology", "elementary", "direct_instruction", 1), ("mathematics", "middle_school", "analogy_based", 1)]
    # Subjects and grades seen × all 6 styles, minus the 3 filled cells.
    assert len(c.empty_cells) == 2 * 2 * 6 - 3
    assert ("mathematics", "middle_school", "socratic") in c.empty_cells
    assert c.unknown_subjects == ["astrology"]
    assert "high_school" in c.unseen_grade_levels and "adult" in c.unseen_grade_levels
    assert c.unseen_teaching_styles == ["step_by_step", "inquiry_based", "misconception_correction"]
    assert c.missing_metadata == {"subject": 1, "grade_level": 1, "teaching_style": 1}
    assert c.subjects == {"(none)": 1, "astrology": 1, "mathematics": 5}


def test_thin_threshold_is_relative_by_default():
    assert auto_thin_below([]) == 2
    assert auto_thin_below([1, 1, 2, 2, 2]) == 2
    assert auto_thin_below([40, 50, 60, 0]) == 25
    records = [ex(f"a{i}") for i in range(40)] + [ex(f"b{i}", style=S.ANALOGY_BASED) for i in range(40)] + [
        ex("c", style=S.INQUIRY_BASED)] * 5
    c = coverage(records)
    assert c.thin_below == 20 and [(x.teaching_style, x.count) for x in c.thin_cells] == [("inquiry_based", 5)]


def test_misconception_coverage_by_style_text_and_metadata():
    records = [
        ex("a", subject="physics", style=S.MISCONCEPTION_CORRECTION),
        ex("b", "Many students think heavier things fall faster, but they do not.", subject="physics"),
        ex("c", subject="physics", misconception="mass vs weight"),
        ex("d", subject="physics"),
        ex("e", subject="biology"),
    ]
    m = misconceptions(records)
    rows = {r.subject: r for r in m.rows}
    assert (rows["physics"].records, rows["physics"].misconception_records, rows["physics"].by_style,
            rows["physics"].by_text) == (4, 3, 1, 2)
    assert rows["physics"].share == 0.75
    assert m.subjects_without == ["biology"] and m.total == 3


def test_lengths_estimate_and_truncation():
    records = [ex("q", "word " * 10), ex("q", "word " * 200)]
    report = lengths(records, [3, 9], EstimateCounter(), max_length=100)
    assert report.estimate and "estimate" in report.tokenizer
    assert report.truncated == [(9, report.max)] and report.max > 200
    assert report.count == 2 and report.min < 100


def _tiny_tokenizer(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    directory = tmp_path / "tok"
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def test_lengths_with_a_real_tokenizer_directory(tmp_path):
    counter = load_token_counter(str(_tiny_tokenizer(tmp_path)))
    assert not counter.estimate
    # Whitespace pre-tokenizer: "hello world" + newline-joined "hello world hello" = 5 tokens.
    record = ex("hello world", "hello world hello")
    assert counter.count(record) == 5
    report = lengths([record], counter=counter, max_length=4)
    assert report.truncated == [(1, 5)]


def test_bad_tokenizer_is_a_user_error(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not a tokenizer", encoding="utf-8")
    with pytest.raises(EduloraError, match="cannot load tokenizer"):
        load_token_counter(str(bad))


def test_exact_and_near_duplicates():
    base = "Fractions name parts of a whole: in 3/4 the 4 says how many equal parts and the 3 how many we take."
    records = [
        ex("What is a fraction?", base),
        ex("what is a   FRACTION?", base),  # same after normalization
        ex("What is a fraction?", base.replace("we take", "we have")),  # near
        ex("Who was Napoleon?", "A French emperor who rose to power after the French Revolution."),
    ]
    d = duplicates(records, [10, 20, 30, 40])
    assert d.exact_groups == [[10, 20]] and d.exact_extra_records == 1
    assert len(d.near_groups) == 1 and d.near_groups[0].lines == [10, 30]
    assert 0.8 <= d.near_groups[0].min_similarity < 1


def test_near_duplicates_scale_to_ten_thousand_records():
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(2000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(40)) for _ in range(10_000)]
    for i in range(0, 100, 2):  # plant 50 near-duplicate pairs, one word changed
        words = texts[i].split()
        words[20] = "changed"
        texts[i + 1] = " ".join(words)
    start = time.perf_counter()
    pairs = similar_pairs(texts, 0.8)
    assert time.perf_counter() - start < 15
    assert {(a, b) for a, b, _ in pairs} == {(i, i + 1) for i in range(0, 100, 2)}


def test_leakage_kinds():
    gravity = ("Gravity pulls masses toward each other; the more mass, the stronger the pull, and the closer "
               "they are, the stronger it gets, which is why the Moon pulls the oceans into tides.")
    train = [ex("What is 2+2?", "Count up: 3, 4. So 4."), ex("Name a prime.", "7 is prime."),
             ex("Explain gravity", gravity)]
    evals = [
        ex("what is 2+2?", "count up: 3, 4.   so 4."),  # exact after normalization
        ex("Name a prime.", "2 is the only even prime."),  # same question
        ex("Explain gravity please", gravity),
        ex("Fresh question", "Fresh answer about something else entirely."),
    ]
    report = leakage(train, evals, [1, 2, 3], [5, 6, 7, 8], eval_path="eval.jsonl")
    assert [(p.eval_line, p.train_line, p.kind) for p in report.pairs] == [
        (5, 1, "exact"), (6, 2, "same_prompt"), (7, 3, "near")]
    assert report.leaked_eval_lines == [5, 6, 7]


def test_leakage_for_dialogues_uses_user_turns():
    train = [Dialogue([Turn("user", "Why is the sky blue?"), Turn("assistant", "What do you know about light?")])]
    evals = [Dialogue([Turn("user", "why is the sky blue?"), Turn("assistant", "Think about sunsets.")])]
    assert [p.kind for p in leakage(train, evals).pairs] == ["same_prompt"]


def test_readability_flags_mismatches():
    records = [
        ex("a", HARD, grade=G.ELEMENTARY),
        ex("b", EASY, grade=G.ELEMENTARY),
        ex("c", EASY, grade=G.HIGH_SCHOOL),
        ex("d", "Too short to score.", grade=G.MIDDLE_SCHOOL),
        ex("e", HARD, grade=None),
        ex("f", HARD, grade=G.ADULT),
    ]
    r = readability(records, [1, 2, 3, 4, 5, 6])
    assert [(m.line, m.direction) for m in r.mismatches] == [(1, "too hard"), (3, "too easy")]
    assert r.too_short == 1 and r.no_grade_level == 1
    rows = {row.grade_level: row for row in r.rows}
    assert rows["elementary"].scored == 2 and rows["elementary"].mismatches == 1
    assert rows["elementary"].expected == "≤ 5" and rows["high_school"].expected == "9–12"
    assert rows["adult"].expected == "any"


def test_grade_bands_are_the_schemas_so_report_and_eval_agree():
    # One table (GradeLevel.band): college is 13–16 here as in grade_level_fit, adult is open.
    assert GRADE_BANDS[G.COLLEGE] == G.COLLEGE.band == (13, 16)
    assert GRADE_BANDS[G.MIDDLE_SCHOOL] == G.MIDDLE_SCHOOL.band
    assert G.ADULT not in GRADE_BANDS and GRADE_BANDS[G.ELEMENTARY] == (None, 5)
    r = readability([ex("a", HARD, grade=G.COLLEGE), ex("b", HARD, grade=G.ADULT)], [1, 2])
    assert [(m.line, m.direction, m.expected) for m in r.mismatches] == [(1, "too hard", "13–16")]


def _report(**kwargs):
    records = [ex("What is 2+2?", HARD), ex("What is 2+2?", HARD),
               ex("Why do seasons happen?", "That is a common misconception: distance is not the reason.",
                  subject="earth_science", grade=G.MIDDLE_SCHOOL, style=S.MISCONCEPTION_CORRECTION),
               Dialogue([Turn("user", "Hi, how do plants eat?"), Turn("assistant", EASY)],
                        Metadata(subject="biology", grade_level=G.ELEMENTARY, teaching_style=S.ANALOGY_BASED))]
    return build_report(records, [1, 2, 4, 5], path="train.jsonl", eval_records=[records[2]], eval_lines=[1],
                        eval_path="eval.jsonl", max_length=20, **kwargs)


def test_build_report_and_findings():
    report = _report()
    assert (report.records, report.examples, report.dialogues) == (4, 3, 1)
    found = findings(report)
    assert found[0] == "1 of 1 eval records also occur in the training data (eval.jsonl)"
    assert any("exact duplicates" in f for f in found)
    assert any("would be truncated" in f for f in found)
    assert any("read far above or below" in f for f in found)


def test_render_text_has_every_section():
    text = render_text(_report())
    for heading in ("Dataset report: train.jsonl", "Findings", "Coverage:", "Misconception coverage",
                    "Length in ESTIMATED tokens", "Duplicates", "Train/eval leakage against eval.jsonl",
                    "Readability of tutor replies"):
        assert heading in text
    assert "  mathematics (2 records)" in text
    assert "exact: 1 group(s): 1+2 (lines)" in text


def test_render_json_is_machine_readable():
    data = json.loads(render_json(_report()))
    assert data["records"] == 4
    assert data["duplicates"]["exact_groups"] == [[1, 2]]
    assert data["leakage"]["leaked_eval_lines"] == [1]
    assert data["lengths"]["estimate"] is True and sum(data["lengths"]["histogram"]["counts"]) == 4
    assert data["coverage"]["empty_cells"][0].keys() == {"subject", "grade_level", "teaching_style"}
    assert data["findings"]


def test_render_html_is_self_contained():
    page = render_html(_report())
    assert page.startswith("<!DOCTYPE html>")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "<script" not in page
    assert "Dataset report: train.jsonl" in page


def test_html_escapes_user_text():
    report = build_report([ex("q", subject="<b>x</b>")], path="<script>.jsonl")
    page = render_html(report)
    assert "<script>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_table_alignment():
    assert table(["name", "n"], [["ab", 3], ["c", 12]], indent="") == "name   n\n----  --\nab     3\nc     12"
