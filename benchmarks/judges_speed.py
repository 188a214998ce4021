"""Time to score 1,000 tutor replies with every learned judge (all eight dimensions, both feature sets).

    .venv/bin/python benchmarks/judges_speed.py ../shared/data/mrbench/mrbench_v2_part.json
    .venv/bin/python benchmarks/judges_speed.py MRBENCH.json --replies 1000 --threads 2 --json-out /tmp/judges.json

The replies are the MRBench file's tutor responses with their dialogues and keys (repeated in order if
the file has fewer), judged as ``edulora calibrate`` and ``edulora eval`` judge them: one
``Judges.predict_sets`` call, which embeds every distinct text once with MiniLM and applies the
``learned`` and ``combined`` heads, plus the rule labels. Loading MiniLM and the weights is timed
apart (a process pays it once); the issue's budget (60 s on 2 cores) is for the scoring.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from itertools import cycle, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mrbench", help="an MRBench V2 JSON file (its replies are the ones scored)")
    parser.add_argument("--replies", type=int, default=1000, help="replies scored; default 1000")
    parser.add_argument("--threads", type=int, default=2, help="torch threads; default 2")
    parser.add_argument("--json-out", help="also write the measurements here")
    args = parser.parse_args(argv)

    import torch

    from edulora.evaluation.embeddings import embed
    from edulora.evaluation.judges import load_judges
    from edulora.evaluation.judges.features import rule_labels
    from edulora.evaluation.judges.train import item_input
    from edulora.evaluation.mrbench import labelled_responses, load_mrbench

    torch.set_num_threads(args.threads)
    responses = list(labelled_responses(load_mrbench(args.mrbench)))
    items = [item_input(r) for r in islice(cycle(responses), args.replies)]
    start = time.perf_counter()
    judges = load_judges()
    embed(["warm-up"])  # loads MiniLM
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = judges.predict_sets(items, embed)
    rules = [rule_labels(item) for item in items]
    scored = time.perf_counter() - start
    assert all(len(v) == len(items) for v in verdicts.values()) and len(rules) == len(items)
    result = {"replies": len(items), "threads": args.threads, "load_s": round(loaded, 2), "score_s": round(scored, 2),
              "replies_per_s": round(len(items) / scored, 1), "cpu": platform.processor() or platform.machine()}
    print(json.dumps(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
