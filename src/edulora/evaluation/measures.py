"""The names of what an evaluation measures, shared by the results (``results.py``) and the report.

The report renders results without importing ``results.py`` (it only annotates with its types),
so ``EvalResult.write_reports`` can call the report without an import cycle.
"""

#: Educational metrics scored on every reply, in report order. ``None`` where a record lacks
#: what the metric needs (no grade level, no teaching style, no answer key).
METRICS = (
    "clarity", "grade_fit", "concept_coverage", "outcome_alignment", "engagement",
    "style_adherence", "answer_revealing", "answer_correctness", "guidance",
)
#: Metrics where a lower value is better: revealing the answer is what a tutor should avoid.
#: (``answer_correctness`` is 1.0 for a reply asserting no wrong answer, so higher is better.)
LOWER_IS_BETTER = frozenset({"answer_revealing"})
GROUP_KEYS = ("subject", "grade_level", "teaching_style")
