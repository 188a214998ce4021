"""llama.cpp's thread count and wait policy, idle and next to a busy PyTorch job.

One llama.cpp core (the packaged Q4_1 model, no adapter) decodes sample-data prompts: three requests
one at a time (llama.cpp's own prompt and decode rates, medians) and then 8 requests together (new
tokens/s over the wall time). ``--busy`` first starts a child process that multiplies matrices on 2
PyTorch threads for the whole run, as a training job next to a server would. Each configuration is
its own process (``--threads N --poll P``); compare configurations from the same session only.
``--idle-cores N`` starts N more cores that are never asked anything, as a server's cores for adapters
nobody uses at the moment: what merely holding them costs the working one.

    python benchmarks/llamacpp_threads.py --threads 2 --poll 0 [--busy] [--idle-cores N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

BUSY = """
import time, torch
torch.set_num_threads(2)
a = torch.randn(512, 512)
while True:
    for _ in range(20):
        a = torch.tanh(a @ a)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--poll", type=int, default=0, help="llama.cpp's spin-wait level: 0 (edulora) to 100")
    parser.add_argument("--busy", action="store_true", help="run a 2-thread PyTorch job beside it")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--idle-cores", type=int, default=0, help="more cores, started and never asked")
    args = parser.parse_args()

    from edulora.data import sample_data_path
    from edulora.data.formats import load_records
    from edulora.formatting import PromptFormat
    from edulora.generation import Request, Sampling
    from edulora.inference.llamacpp import LlamaCpp
    from edulora.modeling import load_tokenizer, packaged_gguf, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path("smollm2-135m-instruct"))
    fmt = PromptFormat.create(tokenizer, "chat")
    records = load_records(sample_data_path("tutoring.jsonl"))[:16]
    ids = [tokenizer(fmt.render(fmt.prompt_and_reference(r)[0]), add_special_tokens=False)["input_ids"]
           for r in records]
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.busy else None
    try:
        if busy:
            time.sleep(3)  # let the job get going
        model, *idle = [LlamaCpp(packaged_gguf(), {}, parallel=8, threads=args.threads, poll=args.poll)
                        for _ in range(1 + args.idle_cores)]

        def one(prompt: list[int]) -> dict:
            timings: dict = {}

            def on_chunk(chunk: dict) -> bool:
                timings.update(chunk.get("timings") or {})
                return False

            request = Request(prompt, Sampling(max_new_tokens=args.new_tokens))
            model.send(request, on_chunk, cache_prompt=False)
            return timings

        one(ids[0])  # warm-up
        single = [one(p) for p in ids[1:4]]
        results: list[dict] = []
        threads = [threading.Thread(target=lambda p=p: results.append(one(p))) for p in ids[8:16]]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
    finally:
        if busy:
            busy.kill()
    print(f"threads {args.threads} poll {args.poll}{' busy' if args.busy else ''} idle cores {len(idle)}: "
          f"one request: prompt "
          f"{statistics.median(t['prompt_per_second'] for t in single):.0f} tokens/s, decode "
          f"{statistics.median(t['predicted_per_second'] for t in single):.1f} tokens/s; 8 together: "
          f"{sum(t['predicted_n'] for t in results) / wall:.1f} new tokens/s ({wall:.1f} s); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
