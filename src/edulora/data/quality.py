"""Dataset quality report: coverage, misconceptions, lengths, duplicates, leakage, readability.

Every function here is pure: records in, dataclasses out. Printing, HTML and JSON live in
``report_render``. Records are identified by the line they start on in their file, so each
finding can be looked up with an editor.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .lengths import EstimateCounter, LengthReport, TokenCounter, lengths, line_numbers, load_token_counter
from .schema import KNOWN_SUBJECTS, Dialogue, Example, GradeLevel, Record, TeachingStyle
from .similarity import jaccard, normalized_text, prompt_key, record_text, shingles, similar_pairs

NONE_LABEL = "(none)"


# --------------------------------------------------------------------------- coverage


@dataclass
class CoverageCell:
    subject: str
    grade_level: str
    teaching_style: str
    count: int


@dataclass
class CoverageReport:
    """Counts per subject × grade level × teaching style, with the gaps called out.

    ``empty_cells`` spans the subjects and grade levels that occur in the data × every
    known teaching style: a K-12 dataset is not nagged about adult learners, but a grade it
    does teach is checked against every style.
    """

    cells: list[CoverageCell]
    subjects: dict[str, int]
    grade_levels: dict[str, int]
    teaching_styles: dict[str, int]
    thin_below: int
    thin_cells: list[CoverageCell]
    empty_cells: list[tuple[str, str, str]]
    missing_metadata: dict[str, int]
    unknown_subjects: list[str]
    unseen_subjects: list[str]
    unseen_grade_levels: list[str]
    unseen_teaching_styles: list[str]

    def count(self, subject: str, grade_level: str, teaching_style: str) -> int:
        for cell in self.cells:
            if (cell.subject, cell.grade_level, cell.teaching_style) == (subject, grade_level, teaching_style):
                return cell.count
        return 0


def _labels(record: Record) -> tuple[str, str, str]:
    meta = record.metadata
    return (
        meta.subject or NONE_LABEL,
        meta.grade_level.value if meta.grade_level else NONE_LABEL,
        meta.teaching_style.value if meta.teaching_style else NONE_LABEL,
    )


def auto_thin_below(counts: Iterable[int]) -> int:
    """Half the median non-empty cell, at least 2: "thin" means thin for this dataset.

    A fixed number would call every cell of a small dataset thin and none of a large one,
    which says nothing about which parts are under-represented.
    """
    values = sorted(n for n in counts if n > 0)
    if not values:
        return 2
    median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    return max(2, math.ceil(median / 2))


def coverage(records: Sequence[Record], thin_below: int | None = None) -> CoverageReport:
    """Coverage matrix; a labelled cell with ``1 <= count < thin_below`` records is thin
    (``None``: see ``auto_thin_below``)."""
    counts: Counter[tuple[str, str, str]] = Counter(_labels(r) for r in records)
    if thin_below is None:
        thin_below = auto_thin_below(n for cell, n in counts.items() if NONE_LABEL not in cell)
    subjects: Counter[str] = Counter()
    grades: Counter[str] = Counter()
    styles: Counter[str] = Counter()
    for (s, g, t), n in counts.items():
        subjects[s] += n
        grades[g] += n
        styles[t] += n
    grade_order = [g.value for g in GradeLevel]
    style_order = [t.value for t in TeachingStyle]
    cells = [CoverageCell(s, g, t, n) for (s, g, t), n in sorted(counts.items(), key=lambda kv: _cell_key(kv[0]))]
    thin = [c for c in cells if c.count < thin_below and NONE_LABEL not in (c.subject, c.grade_level, c.teaching_style)]
    seen_subjects = sorted(s for s in subjects if s != NONE_LABEL)
    seen_grades = [g for g in grade_order if g in grades]
    empty = [(s, g, t) for s in seen_subjects for g in seen_grades for t in style_order if (s, g, t) not in counts]
    return CoverageReport(
        cells=cells,
        subjects=dict(sorted(subjects.items())),
        grade_levels={g: grades[g] for g in [*grade_order, NONE_LABEL] if g in grades},
        teaching_styles={t: styles[t] for t in [*style_order, NONE_LABEL] if t in styles},
        thin_below=thin_below,
        thin_cells=thin,
        empty_cells=empty,
        missing_metadata={"subject": subjects.get(NONE_LABEL, 0), "grade_level": grades.get(NONE_LABEL, 0),
                          "teaching_style": styles.get(NONE_LABEL, 0)},
        unknown_subjects=[s for s in seen_subjects if s not in KNOWN_SUBJECTS],
        unseen_subjects=[s for s in KNOWN_SUBJECTS if s not in subjects],
        unseen_grade_levels=[g for g in grade_order if g not in grades],
        unseen_teaching_styles=[t for t in style_order if t not in styles],
    )


_GRADE_RANK = {g.value: i for i, g in enumerate(GradeLevel)}
_STYLE_RANK = {t.value: i for i, t in enumerate(TeachingStyle)}


def _cell_key(cell: tuple[str, str, str]) -> tuple[bool, str, int, int]:
    s, g, t = cell
    return (s == NONE_LABEL, s, _GRADE_RANK.get(g, 99), _STYLE_RANK.get(t, 99))


# --------------------------------------------------------------------------- misconceptions

#: Phrases by which a tutor reply names a misconception it is addressing.
_MISCONCEPTION_TEXT = re.compile(
    r"\bmisconceptions?\b|\bcommon (?:mistake|error|confusion|misunderstanding)s?\b|\bmisunderstand(?:ing|s)?\b"
    r"|\bmany (?:students|people|learners) (?:think|believe|assume)\b|\ba common (?:myth|belief)\b"
    r"|\b(?:is|are) (?:a )?myths?\b|\bmistakenly\b",
    re.IGNORECASE,
)


@dataclass
class MisconceptionRow:
    subject: str
    records: int
    misconception_records: int
    by_style: int  # records whose teaching style is misconception_correction
    by_text: int  # other records whose text or metadata names a misconception

    @property
    def share(self) -> float:
        return self.misconception_records / self.records if self.records else 0.0


@dataclass
class MisconceptionReport:
    rows: list[MisconceptionRow]
    total: int
    subjects_without: list[str]


def names_misconception(record: Record) -> bool:
    """True when the record is about a misconception (by style, a metadata key, or its wording)."""
    meta = record.metadata
    if meta.teaching_style is TeachingStyle.MISCONCEPTION_CORRECTION:
        return True
    if meta.extra.get("misconception"):
        return True
    return bool(_MISCONCEPTION_TEXT.search(record_text(record)))


def misconceptions(records: Sequence[Record]) -> MisconceptionReport:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for record in records:
        row = per[record.metadata.subject or NONE_LABEL]
        row[0] += 1
        if record.metadata.teaching_style is TeachingStyle.MISCONCEPTION_CORRECTION:
            row[1] += 1
        elif names_misconception(record):
            row[2] += 1
    rows = [MisconceptionRow(s, n, a + b, a, b) for s, (n, a, b) in sorted(per.items(), key=lambda kv: (kv[0] == NONE_LABEL, kv[0]))]
    return MisconceptionReport(
        rows=rows,
        total=sum(r.misconception_records for r in rows),
        subjects_without=[r.subject for r in rows if r.misconception_records == 0 and r.subject != NONE_LABEL],
    )


# --------------------------------------------------------------------------- duplicates


@dataclass
class NearDuplicateGroup:
    lines: list[int]
    min_similarity: float


@dataclass
class DuplicateReport:
    exact_groups: list[list[int]]  # lines of records with the same normalized text
    near_groups: list[NearDuplicateGroup]
    near_threshold: float

    @property
    def exact_extra_records(self) -> int:
        """Records that could be dropped: all but one of each exact group."""
        return sum(len(g) - 1 for g in self.exact_groups)


def _groups(n: int, pairs: Iterable[tuple[int, int, float]]) -> list[tuple[list[int], float]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    lowest: dict[int, float] = {}
    scored = list(pairs)
    for a, b, _ in scored:
        parent[find(a)] = find(b)
    members: dict[int, list[int]] = defaultdict(list)
    for a, b, score in scored:
        root = find(a)
        lowest[root] = min(lowest.get(root, 1.0), score)
    for i in range(n):
        members[find(i)].append(i)
    return [(sorted(m), lowest[root]) for root, m in members.items() if len(m) > 1]


def duplicates(records: Sequence[Record], lines: Sequence[int] | None = None, near_threshold: float = 0.8) -> DuplicateReport:
    """Exact duplicates (same normalized text) and near-duplicate groups among the rest."""
    at = line_numbers(records, lines)
    by_text: dict[str, list[int]] = defaultdict(list)
    for line, record in zip(at, records):
        by_text[normalized_text(record)].append(line)
    exact = [g for g in by_text.values() if len(g) > 1]
    texts = list(by_text)  # one representative per exact group
    first_line = [by_text[t][0] for t in texts]
    near = [
        NearDuplicateGroup([first_line[i] for i in members], round(score, 3))
        for members, score in _groups(len(texts), similar_pairs(texts, near_threshold))
    ]
    near.sort(key=lambda g: g.lines[0])
    return DuplicateReport(exact_groups=sorted(exact), near_groups=near, near_threshold=near_threshold)


# --------------------------------------------------------------------------- train/eval leakage


@dataclass
class LeakPair:
    eval_line: int
    train_line: int
    kind: str  # "exact" | "same_prompt" | "near"
    similarity: float


@dataclass
class LeakageReport:
    eval_path: str
    eval_records: int
    pairs: list[LeakPair]

    @property
    def leaked_eval_lines(self) -> list[int]:
        return sorted({p.eval_line for p in self.pairs})

    def by_kind(self, kind: str) -> list[LeakPair]:
        return [p for p in self.pairs if p.kind == kind]


def leakage(train: Sequence[Record], eval_records: Sequence[Record], train_lines: Sequence[int] | None = None,
            eval_lines: Sequence[int] | None = None, eval_path: str = "", near_threshold: float = 0.8) -> LeakageReport:
    """Eval records that also occur in train: exactly, with the same prompt, or nearly.

    Each eval record is reported once, under the strongest kind found.
    """
    t_at, e_at = line_numbers(train, train_lines), line_numbers(eval_records, eval_lines)
    train_text = {}
    train_prompt = {}
    for line, record in zip(t_at, train):
        train_text.setdefault(normalized_text(record), line)
        train_prompt.setdefault(prompt_key(record), line)
    pairs: list[LeakPair] = []
    remaining: list[int] = []
    for index, (line, record) in enumerate(zip(e_at, eval_records)):
        hit = train_text.get(normalized_text(record))
        if hit is not None:
            pairs.append(LeakPair(line, hit, "exact", 1.0))
            continue
        hit = train_prompt.get(prompt_key(record))
        if hit is not None:
            pairs.append(LeakPair(line, hit, "same_prompt", 1.0))
            continue
        remaining.append(index)
    if remaining:
        texts = [normalized_text(r) for r in train] + [normalized_text(eval_records[i]) for i in remaining]
        best: dict[int, tuple[float, int]] = {}
        for a, b, score in similar_pairs(texts, near_threshold):
            if a < len(train) <= b:
                e_index = remaining[b - len(train)]
                if score > best.get(e_index, (0.0, 0))[0]:
                    best[e_index] = (score, t_at[a])
        for e_index, (score, train_line) in sorted(best.items()):
            pairs.append(LeakPair(e_at[e_index], train_line, "near", round(score, 3)))
    pairs.sort(key=lambda p: p.eval_line)
    return LeakageReport(eval_path=eval_path, eval_records=len(eval_records), pairs=pairs)


# --------------------------------------------------------------------------- readability

def _open_ends(band: tuple[float, float]) -> tuple[float | None, float | None]:
    """``GradeLevel.band`` with its open ends as None: a text cannot read below kindergarten
    (grade 0), and an infinite top means no text is too hard."""
    low, high = band
    return (low if low > 0 else None, high if math.isfinite(high) else None)


#: US school grades each declared level is written for (None = open-ended), from ``GradeLevel.band``,
#: the one grade-band table, so this report and ``edulora eval`` judge a level alike. A level open
#: at both ends (adult) has no band: every reading grade suits it.
GRADE_BANDS: dict[GradeLevel, tuple[float | None, float | None]] = {
    grade: _open_ends(grade.band) for grade in GradeLevel if _open_ends(grade.band) != (None, None)
}
#: Flesch-Kincaid swings by several grades on short texts, so those are not scored.
MIN_WORDS_FOR_READABILITY = 15


@dataclass
class ReadabilityRow:
    grade_level: str
    expected: str
    scored: int
    mean: float
    min: float
    max: float
    mismatches: int


@dataclass
class ReadabilityMismatch:
    line: int
    grade_level: str
    fk_grade: float
    expected: str
    direction: str  # "too hard" | "too easy"


@dataclass
class ReadabilityReport:
    tolerance: float
    rows: list[ReadabilityRow]
    mismatches: list[ReadabilityMismatch]
    too_short: int
    no_grade_level: int
    scores: list[tuple[int, str, float]] = field(repr=False, default_factory=list)  # (line, grade, fk)


def tutor_text(record: Record) -> str:
    """What the tutor says: the response, or every assistant turn."""
    if isinstance(record, Example):
        return record.response
    return "\n".join(t.content for t in record.turns if t.role == "assistant")


def _band_label(band: tuple[float | None, float | None]) -> str:
    low, high = band
    if low is None:
        return f"≤ {high:g}"
    if high is None:
        return f"≥ {low:g}"
    return f"{low:g}–{high:g}"


def readability(records: Sequence[Record], lines: Sequence[int] | None = None, tolerance: float = 2.0) -> ReadabilityReport:
    """Flesch-Kincaid grade of each tutor reply vs its declared grade level.

    A reply is flagged when its grade lies more than ``tolerance`` grades outside the band.
    """
    import textstat

    at = line_numbers(records, lines)
    too_short = no_grade = 0
    scores: list[tuple[int, str, float]] = []
    mismatches: list[ReadabilityMismatch] = []
    for line, record in zip(at, records):
        grade = record.metadata.grade_level
        if grade is None:
            no_grade += 1
            continue
        text = tutor_text(record)
        if len(text.split()) < MIN_WORDS_FOR_READABILITY:
            too_short += 1
            continue
        fk = round(float(textstat.flesch_kincaid_grade(text)), 1)
        scores.append((line, grade.value, fk))
        band = GRADE_BANDS.get(grade)
        if band is None:
            continue
        low, high = band
        if high is not None and fk > high + tolerance:
            mismatches.append(ReadabilityMismatch(line, grade.value, fk, _band_label(band), "too hard"))
        elif low is not None and fk < low - tolerance:
            mismatches.append(ReadabilityMismatch(line, grade.value, fk, _band_label(band), "too easy"))
    rows = []
    for grade in GradeLevel:
        values = [fk for _, g, fk in scores if g == grade.value]
        if not values:
            continue
        band = GRADE_BANDS.get(grade)
        rows.append(ReadabilityRow(
            grade_level=grade.value, expected=_band_label(band) if band else "any",
            scored=len(values), mean=round(sum(values) / len(values), 1), min=min(values), max=max(values),
            mismatches=sum(1 for m in mismatches if m.grade_level == grade.value),
        ))
    return ReadabilityReport(tolerance, rows, mismatches, too_short, no_grade, scores)


# --------------------------------------------------------------------------- the whole report


@dataclass
class DatasetReport:
    path: str
    records: int
    examples: int
    dialogues: int
    coverage: CoverageReport
    misconceptions: MisconceptionReport
    lengths: LengthReport
    duplicates: DuplicateReport
    readability: ReadabilityReport
    leakage: LeakageReport | None = None


def build_report(
    records: Sequence[Record],
    lines: Sequence[int] | None = None,
    *,
    path: str = "",
    eval_records: Sequence[Record] | None = None,
    eval_lines: Sequence[int] | None = None,
    eval_path: str = "",
    counter: TokenCounter | None = None,
    max_length: int | None = None,
    thin_below: int | None = None,
    near_threshold: float = 0.8,
    readability_tolerance: float = 2.0,
) -> DatasetReport:
    """Every section of the report for ``records`` (and train/eval leakage when ``eval_records`` is given)."""
    return DatasetReport(
        path=path,
        records=len(records),
        examples=sum(isinstance(r, Example) for r in records),
        dialogues=sum(isinstance(r, Dialogue) for r in records),
        coverage=coverage(records, thin_below),
        misconceptions=misconceptions(records),
        lengths=lengths(records, lines, counter, max_length),
        duplicates=duplicates(records, lines, near_threshold),
        readability=readability(records, lines, readability_tolerance),
        leakage=None if eval_records is None else leakage(
            records, eval_records, lines, eval_lines, eval_path, near_threshold),
    )


__all__ = [
    "CoverageCell", "CoverageReport", "DatasetReport", "DuplicateReport", "EstimateCounter", "GRADE_BANDS",
    "LeakPair", "LeakageReport", "LengthReport", "MisconceptionReport", "MisconceptionRow", "NearDuplicateGroup",
    "ReadabilityMismatch", "ReadabilityReport", "ReadabilityRow", "TokenCounter", "auto_thin_below", "build_report", "coverage",
    "duplicates", "jaccard", "leakage", "lengths", "load_token_counter", "misconceptions", "names_misconception",
    "readability", "shingles", "similar_pairs", "tutor_text",
]
