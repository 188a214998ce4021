"""Blind rating sheets: written without model names, shuffled, read back into a preference rate."""

from __future__ import annotations

import csv
import json

import pytest

from edulora.errors import EduloraError
from edulora.evaluation.blind import key_path, read_ratings, write_blind_sheet
from edulora.evaluation.rates import wilson_interval
from edulora.evaluation.report import to_html, to_json, to_markdown, to_text
from edulora.evaluation.results import EvalResult, ModelResult, RecordInfo, ReplyResult


def _model(name: str, is_base: bool, n: int) -> ModelResult:
    replies = [ReplyResult(i, f"{name} says reply {i}: what do you notice?", 5, 0.1, {}) for i in range(n)]
    return ModelResult(name, name, is_base, 1.0, 2.7, 10, 1.0, 0.1, 1.0, 100.0, {}, replies)


def _result(n: int = 12) -> EvalResult:
    records = [RecordInfo(i, f"Student: what is {i} + {i}?\nTutor: What do you think?\nStudent: no idea {i}",
                          str(2 * i), "math", None, "socratic") for i in range(n)]
    return EvalResult(records, [_model("base", True, n), _model("week-2", False, n)], {}, [],
                      {"turns": "auto", "turns_scored": "open", "records": 4, "replies": n})


def _rows(path):
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def _fill(path, choose) -> None:
    """A rater's work: ``choose(row)`` gives the choice cell for each data row."""
    rows = _rows(path)
    for row in rows[1:]:
        row[4] = choose(row)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_sheet_names_no_model_and_shuffles_sides_and_rows(tmp_path):
    sheet = tmp_path / "ratings.csv"
    key = write_blind_sheet(_result(), sheet, seed=3)
    assert key == key_path(sheet) == tmp_path / "ratings.key.json"
    text = sheet.read_text(encoding="utf-8-sig")
    assert "week-2" not in text.replace("week-2 says", "") and "base" not in text.replace("base says", "")
    rows = _rows(sheet)
    assert rows[0] == ["item", "conversation", "reply A", "reply B", "choice (A, B or same)", "notes"]
    assert len(rows) == 13 and all(r[4] == r[5] == "" for r in rows[1:])
    sides = [r[2].split()[0] for r in rows[1:]]
    assert set(sides) == {"base", "week-2"}  # the base is A on some rows and B on others
    order = [int(r[1].split()[3]) for r in rows[1:]]
    assert sorted(order) == list(range(12)) and order != list(range(12))
    items = json.loads(key.read_text())["items"]  # the key, kept from the rater, says who wrote which reply
    assert all(items[r[0]]["A"] == r[2].split()[0] and items[r[0]]["B"] == r[3].split()[0] for r in rows[1:])
    # seeded: the same sheet again, elsewhere
    again = tmp_path / "again.csv"
    write_blind_sheet(_result(), again, seed=3)
    assert _rows(again) == rows


def test_ratings_give_the_preference_with_a_wilson_interval(tmp_path):
    sheet = tmp_path / "ratings.csv"
    write_blind_sheet(_result(), sheet)
    picks = iter(["tuned"] * 7 + ["base"] * 2 + ["same", "", "same"])

    def choose(row):  # the rater prefers week-2's reply 7 times, the base's twice, ties twice, skips one
        pick = next(picks)
        if pick in ("same", ""):
            return pick.upper() if pick else ""
        wanted = "week-2" if pick == "tuned" else "base"
        return "a" if row[2].startswith(wanted) else "B"

    _fill(sheet, choose)
    tuned, base = read_ratings(sheet)
    assert (tuned.model, tuned.other, tuned.wins, tuned.losses, tuned.ties, tuned.unrated) == ("week-2", "base", 7, 2,
                                                                                              2, 1)
    assert tuned.rate.value == pytest.approx(7 / 9) and tuned.rate.n == 9
    assert (tuned.rate.low, tuned.rate.high) == pytest.approx(wilson_interval(7, 9))
    assert base.rate.value == pytest.approx(2 / 9)
    result = _result()
    result.human = [tuned, base]
    assert "Human preference" in to_text(result) and "77.8% [45.3%, 93.7%] (n=9)" in to_text(result)
    assert "## Human preference (blind sheet)" in to_markdown(result)
    assert "Human preference (blind sheet)" in to_html(result) and "77.8% [45.3%, 93.7%]" in to_html(result)
    summary = to_json(result)["summary"]
    assert summary["week-2"]["human_preference"]["value"] == pytest.approx(7 / 9)
    assert to_json(result)["human"][0]["unrated"] == 1


def test_the_report_says_which_turns_it_scored():
    result = _result()
    assert to_text(result).splitlines()[0].startswith("Turns scored: open — 12 replies")
    result.settings = {"turns": "auto", "turns_scored": "last", "records": 12, "replies": 12}
    assert "last tutor turn (no multi-turn dialogue in the data)" in to_markdown(result)


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[3].__setitem__(4, "maybe"), r"ratings.csv:8: column 'choice': 'maybe' is not A, B or same"),
    (lambda rows: rows[2].__setitem__(0, "999"), r"ratings.csv:5: column 'item': '999' is not a row"),
    (lambda rows: rows.append(list(rows[1])), r"ratings.csv:38: column 'item': .* is rated twice"),
    (lambda rows: rows[5].__setitem__(2, "an edited reply"), r"ratings.csv:14: columns 'conversation', 'reply A'"),
    (lambda rows: [r.pop(4) for r in rows], r"ratings.csv:1: no 'choice' column"),
])
def test_bad_sheets_are_one_line_errors_naming_file_line_and_column(tmp_path, edit, message):
    """Each conversation cell spans three lines: the line named is the one the row starts on."""
    sheet = tmp_path / "ratings.csv"
    write_blind_sheet(_result(), sheet)
    rows = _rows(sheet)
    for row in rows[1:]:
        row[4] = "A"
    edit(rows)
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(EduloraError, match=message) as err:
        read_ratings(sheet)
    assert "\n" not in str(err.value)


def test_a_sheet_is_never_replaced_and_needs_its_key(tmp_path):
    sheet = tmp_path / "ratings.csv"
    write_blind_sheet(_result(), sheet)
    _fill(sheet, lambda row: "A")
    with pytest.raises(EduloraError, match="ratings.csv: exists"):
        write_blind_sheet(_result(), sheet)
    assert all(r[4] == "A" for r in _rows(sheet)[1:])  # the rater's work is still there
    key_path(sheet).rename(tmp_path / "elsewhere.json")
    with pytest.raises(EduloraError, match="ratings.key.json: no key for this sheet"):
        read_ratings(sheet)
    assert read_ratings(sheet, tmp_path / "elsewhere.json")[0].wins + read_ratings(sheet, tmp_path / "elsewhere.json")[
        1].wins == 12
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(EduloraError, match="not a blind sheet's key"):
        read_ratings(sheet, tmp_path / "broken.json")


def test_a_sheet_needs_two_models(tmp_path):
    result = _result()
    result.models = result.models[:1]
    with pytest.raises(EduloraError, match="compares two models"):
        write_blind_sheet(result, tmp_path / "s.csv")
    with pytest.raises(EduloraError, match="no model 'other'"):
        write_blind_sheet(_result(), tmp_path / "s.csv", models=("base", "other"))


def test_cli_reads_a_bad_sheet_before_loading_any_model(tmp_path, capsys):
    from edulora.cli import main

    sheet = tmp_path / "ratings.csv"
    write_blind_sheet(_result(), sheet)
    rows = _rows(sheet)
    rows[1][4] = "both"
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert main(["eval", "no/such/run", "--ratings", str(sheet)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{sheet}:2: column 'choice': 'both'" in err
    write_blind_sheet(_result(), tmp_path / "taken.csv")
    assert main(["eval", "no/such/run", "--blind-sheet", str(tmp_path / "taken.csv")]) == 2
    assert "taken.csv: exists" in capsys.readouterr().err
