"""What llama.cpp's per-slot prompt cache saves on the next turn of a tutoring conversation.

A student's next turn repeats the whole conversation so far; with ``cache_prompt`` (edulora's
setting) a slot that served the previous turn evaluates only the new tokens. For each dialogue of
the sample data, turn k's prompt is sent with the cache off, then turn k-1's prompt is sent and turn
k's again with the cache on (one slot, so the second request meets the first one's cache). Reports
llama.cpp's own prompt timings (tokens evaluated, milliseconds) and the median time to first
token of both (packaged Q4_1 model, base).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edulora.data.formats import load_records  # noqa: E402
from edulora.data.schema import Dialogue  # noqa: E402
from edulora.formatting import PromptFormat  # noqa: E402
from edulora.generation import Request, Sampling  # noqa: E402
from edulora.inference.llamacpp import load_llamacpp  # noqa: E402


def first_token(model, ids: list[int], cache: bool) -> tuple[float, dict]:
    """Seconds to the first streamed token, and llama.cpp's timings for the request."""
    request = Request(ids, Sampling(max_new_tokens=8))
    began, first, timings = time.perf_counter(), [], {}

    def on_chunk(chunk: dict) -> bool:
        if not first and chunk.get("choices"):
            first.append(time.perf_counter() - began)
        timings.update(chunk.get("timings") or {})
        return False

    model.send(request, on_chunk, cache_prompt=cache)
    return first[0], timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dialogues", type=int, default=8)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    model, tokenizer, _ = load_llamacpp({}, "smollm2-135m-instruct", parallel=1)
    fmt = PromptFormat.create(tokenizer, "auto", True, True)
    dialogues = [r for r in load_records(REPO / "src/edulora/sample_data/dialogues.jsonl") if isinstance(r, Dialogue)]
    rows = []
    for record in dialogues[: args.dialogues]:
        ends = [i for i, t in enumerate(record.turns) if t.role == "assistant" and i > 0][:2]
        if len(ends) < 2:
            continue
        earlier_ids, later_ids = (
            tokenizer(fmt.render(fmt.prompt_and_reference(Dialogue(turns=record.turns[: end + 1],
                                                                    metadata=record.metadata))[0]),
                      add_special_tokens=False)["input_ids"] for end in ends)
        cold, cold_t = first_token(model, later_ids, cache=False)
        first_token(model, earlier_ids, cache=True)  # the previous turn fills the slot's cache
        warm, warm_t = first_token(model, later_ids, cache=True)
        rows.append({"prompt_tokens": len(later_ids), "cold_s": cold, "cold_evaluated": cold_t.get("prompt_n"),
                     "warm_s": warm, "warm_evaluated": warm_t.get("prompt_n"), "warm_cached": warm_t.get("cache_n")})
    result = {"dialogues": len(rows), "median_prompt_tokens": statistics.median(r["prompt_tokens"] for r in rows),
              "median_ttft_cold_s": statistics.median(r["cold_s"] for r in rows),
              "median_ttft_warm_s": statistics.median(r["warm_s"] for r in rows),
              "median_evaluated_warm": statistics.median(r["warm_evaluated"] for r in rows), "rows": rows}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
