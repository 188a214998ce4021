"""Generation speed of the packaged model: base, base + LoRA adapter (unmerged), adapter merged.

Greedy decoding with a KV cache, every row forced to the same number of new tokens so the three
forms do identical work; prompts are questions from the sample data, rendered as in training.
Reports new tokens per second (all rows of a batch together) per form and batch size, as the
median over repetitions. ``--backend llamacpp`` measures the packaged Q4_1 GGUF in llama.cpp instead
(base, and the adapter as a GGUF LoRA chosen per request; "batch" = requests decoded together by
continuous batching); llama.cpp may end a row at its end-of-text token, so the tokens actually
generated are counted. Without ``--adapter`` an untrained LoRA with the guide's settings (r=16
on q/k/v/o, the server benchmark's) is used: speed does not depend on what the adapter learned.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edulora.data import sample_data_path  # noqa: E402
from edulora.data.formats import load_records  # noqa: E402
from edulora.formatting import PromptFormat  # noqa: E402
from edulora.modeling import load_tutor  # noqa: E402
from edulora.serving.bench import benchmark_adapters  # noqa: E402


def tokens_per_second(model, tokenizer, prompts: list[str], new_tokens: int) -> float:
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    began = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**encoded, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             top_k=None, top_p=None, temperature=None, pad_token_id=tokenizer.pad_token_id,
                             use_cache=True)
    seconds = time.perf_counter() - began
    assert out.shape[1] - encoded["input_ids"].shape[1] == new_tokens
    return len(prompts) * new_tokens / seconds


def llamacpp_tokens_per_second(model, tokenizer, prompt_ids: list[list[int]], adapter: str | None,
                               new_tokens: int) -> float:
    from edulora.generation import Request, Sampling

    requests = [Request(ids, Sampling(max_new_tokens=new_tokens), adapter) for ids in prompt_ids]
    began = time.perf_counter()
    model.decode(tokenizer, requests, parallel=len(requests))
    return sum(r.tokens for r in requests) / (time.perf_counter() - began)


def llamacpp_rows(adapter: Path, prompts: list[str], batches: list[int], args) -> list[dict]:
    from edulora.inference.llamacpp import load_llamacpp

    model, tokenizer, _ = load_llamacpp({"adapter": adapter / "adapter" if (adapter / "adapter").is_dir()
                                         else adapter}, "smollm2-135m-instruct", args.gguf, parallel=max(batches))
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    weights = Path(args.gguf).name if args.gguf else "Q4_1"
    rows = []
    for form, name in (("base", None), ("adapter (GGUF LoRA)", "adapter")):
        for batch in batches:
            rates = [llamacpp_tokens_per_second(model, tokenizer, ids[i * batch:(i + 1) * batch], name, args.new_tokens)
                     for i in range(args.repeats + 1)][1:]  # the first call warms up
            rows.append({"backend": "llamacpp", "form": form, "batch": batch, "tokens_per_s": statistics.median(rates),
                         "dtype": weights})
            print(f"llama.cpp {form:20s} batch {batch:2d}: {rows[-1]['tokens_per_s']:6.1f} new tokens/s ({weights})",
                  flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", help="a run or adapter folder (default: a fresh untrained LoRA)")
    parser.add_argument("--precision", default="auto", help="auto = fp32 on CPUs, as edulora generate uses")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--backend", choices=["transformers", "llamacpp"], default="transformers")
    parser.add_argument("--gguf", help="llama.cpp: the base GGUF (default: the packaged Q4_1 file)")
    args = parser.parse_args()

    records = load_records(sample_data_path("tutoring.jsonl"))
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(args.adapter) if args.adapter else benchmark_adapters("smollm2-135m-instruct", Path(tmp))[0][1]
        batches = [int(b) for b in args.batch_sizes.split(",")]
        if args.backend == "llamacpp":
            from edulora.modeling import load_tokenizer, resolve_model_path

            fmt = PromptFormat.create(load_tokenizer(resolve_model_path("smollm2-135m-instruct")), "chat")
            prompts = [fmt.render(fmt.prompt_and_reference(r)[0]) for r in records[:64]]
            results = llamacpp_rows(adapter, prompts, batches, args)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
            return
        base, tokenizer, _ = load_tutor(precision=args.precision)
        tutor, _, info = load_tutor(adapter, precision=args.precision)
        fmt = PromptFormat.create(tokenizer, info.template or "auto", info.system_prompt, info.answer_key)
        prompts = [fmt.render(fmt.prompt_and_reference(r)[0]) for r in records[:64]]
        results = []
        for form in ("base", "adapter (unmerged)", "merged"):
            if form == "merged":
                tutor = tutor.merge_and_unload()
            model = base if form == "base" else tutor
            for batch in batches:
                rates = [tokens_per_second(model, tokenizer, prompts[i * batch:(i + 1) * batch], args.new_tokens)
                         for i in range(args.repeats + 1)][1:]  # the first call warms up
                row = {"form": form, "batch": batch, "tokens_per_s": statistics.median(rates),
                       "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
                results.append(row)
                print(f"{form:20s} batch {batch:2d}: {row['tokens_per_s']:6.1f} new tokens/s ({row['dtype']})",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
