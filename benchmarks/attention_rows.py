"""One LoRA training micro-step with SDPA's attention vs edulora's short-row attention, by row length.

    .venv/bin/python benchmarks/attention_rows.py                       # 4 and 8 rows, 5 lengths each
    .venv/bin/python benchmarks/attention_rows.py --rows 8 --repeats 8 --json-out /tmp/attention.json

The packaged SmolLM2-135M-Instruct as ``edulora train`` loads it (bf16 on CPUs with fast bf16), the
guide's LoRA (r=16 on q/k/v/o; dropout 0 so both variants do identical work), and real examples of
the sample data sorted by length: each measured micro-batch is ``--rows`` consecutive examples, padded
to its longest. Both attention implementations run in one process on the same model, alternating
which goes first, so the machine's drift hits both alike; the ratio is the median of the paired
step-time ratios (SDPA / short: above 1, the short path is faster). Micro-batches past
``edulora.attention.SHORT_KEYS`` or ``MAX_SCORES`` take SDPA in both variants (ratio ~1); to check the
crossover on a new kind of CPU, raise those two constants and rerun.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per micro-batch (repeatable); default 4 and 8")
    parser.add_argument("--lengths", type=int, default=5, help="row lengths measured, spread over the data; default 5")
    parser.add_argument("--repeats", type=int, default=6, help="paired measurements per length; default 6")
    parser.add_argument("--json-out", help="also write the measurements here")
    parser.add_argument("--base", default=None, help="base model (HF id or local dir); default the packaged one")
    args = parser.parse_args(argv)

    import torch

    from edulora import attention
    from edulora.config import DEFAULT_MODEL, LoraSettings, ModelConfig
    from edulora.data import sample_data_path
    from edulora.data.formats import load_records
    from edulora.formatting import PromptFormat, collate_examples
    from edulora.losses import token_loss_sum
    from edulora.modeling import attach_lora, load_base_model
    from edulora.training.data import encode

    base, tokenizer, _ = load_base_model(ModelConfig(name=args.base or DEFAULT_MODEL), for_training=True)
    if base.config._attn_implementation != attention.NAME:
        sys.exit(f"the short-row attention does not apply here (weights {base.dtype} on "
                 f"{next(base.parameters()).device}); nothing to compare")
    model = attach_lora(base, LoraSettings(dropout=0.0))
    model.train()
    examples, _ = encode(load_records(sample_data_path("tutoring.jsonl")), PromptFormat.create(tokenizer), 1024)
    examples.sort(key=lambda e: len(e.input_ids))

    def step(batch: dict) -> float:
        began = time.perf_counter()
        loss, count = token_loss_sum(model, batch)
        (loss / count).backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - began

    results = []
    for rows in args.rows or [4, 8]:
        starts = [round(i * (len(examples) - rows) / max(args.lengths - 1, 1)) for i in range(args.lengths)]
        for start in starts:
            batch = collate_examples(examples[start:start + rows], tokenizer.pad_token_id, packing=False)
            times: dict[str, list[float]] = {"sdpa": [], attention.NAME: []}
            for repeat in range(args.repeats + 1):  # the first pair warms both up
                order = list(times) if repeat % 2 else list(times)[::-1]
                for name in order:
                    base.set_attn_implementation(name)
                    seconds = step(batch)
                    if repeat:
                        times[name].append(seconds)
            tokens, length = batch["input_ids"].numel(), batch["input_ids"].shape[1]
            ratio = statistics.median(a / b for a, b in zip(times["sdpa"], times[attention.NAME]))
            row = {"rows": rows, "length": length, "tokens": tokens,
                   "sdpa_tok_s": tokens / statistics.median(times["sdpa"]),
                   "short_tok_s": tokens / statistics.median(times[attention.NAME]), "ratio": ratio,
                   "short_path": attention.short_enough(rows, base.config.num_attention_heads, length, length)}
            results.append(row)
            print(f"{rows} rows x {row['length']:4d} tokens: SDPA {row['sdpa_tok_s']:6.0f} tok/s, short "
                  f"{row['short_tok_s']:6.0f} tok/s, ratio {ratio:.2f}"
                  f"{'' if row['short_path'] else '  (past SHORT_KEYS or MAX_SCORES: SDPA in both)'}", flush=True)
    if args.json_out:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "short_keys": attention.SHORT_KEYS}
        Path(args.json_out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
