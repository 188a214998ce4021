"""PII recall of ``edulora data scrub`` (no roster) on a labelled message set, and its false positives.

    .venv/bin/python benchmarks/pii_recall.py tests/data/pii_messages.jsonl
    .venv/bin/python benchmarks/pii_recall.py tests/data/pii_messages.jsonl --show-misses
    .venv/bin/python benchmarks/pii_recall.py SET.jsonl --min-recall 0.95 --max-false-positives 0   # exit 1 below

Prints the share of labelled items replaced (an item with any word left counts as missed), the
same per category, how many ordinary messages (``"pii": []``) the scrubber changed, and the mean
scrubbing time per message. The set's format and the counting rules: ``edulora.data.pii.evaluate``.
"""

from __future__ import annotations

import argparse
import sys
import time

from edulora.data.pii.evaluate import evaluate_pii, load_pii_set
from edulora.data.privacy import scrub_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="labelled message set (JSON lines)")
    parser.add_argument("--show-misses", action="store_true", help="print missed items and changed lines")
    parser.add_argument("--min-recall", type=float, default=None, help="exit 1 when recall is below this")
    parser.add_argument("--max-false-positives", type=int, default=None, help="exit 1 when more messages change")
    args = parser.parse_args()
    messages = load_pii_set(args.path)
    result = evaluate_pii(messages)
    print("\n".join(result.summary_lines(args.show_misses)))
    started = time.perf_counter()
    for message in messages:
        scrub_text(message.text)
    print(f"scrubbing: {1000 * (time.perf_counter() - started) / max(1, len(messages)):.2f} ms per message "
          f"({len(messages)} messages, one thread)")
    failed = ((args.min_recall is not None and result.recall < args.min_recall)
              or (args.max_false_positives is not None and result.false_positives > args.max_false_positives))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
