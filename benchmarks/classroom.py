"""A class of simulated students against ``edulora serve``: time to first token, tokens/s, errors.

Each student is a thread with its own seeded random generator: it waits a think time (exponential,
mean ``--think``; the first wait is uniform so the class does not start in lock-step), asks its
tutor, reads the streamed reply through the official ``openai`` client, keeps the reply in the
conversation and asks a follow-up, ``--turns`` times. Students are spread round-robin over the
subject adapters and the base model ("mixed"), or all use the first adapter ("single"); both runs
are made per backend so the mixed/single aggregate ratio can be read off.

The adapters are untrained LoRAs with the default settings (r=16 on q/k/v/o) whose B matrices are
filled with seeded noise (``edulora.serving.bench.benchmark_adapters``): they answer differently
from the base and from each other, at the compute cost of trained ones. The server is started as a
subprocess (``python -m edulora serve``) on a free loopback port with an API key, per backend.

Measured per turn (each turn kept in the JSON as ``per_turn``): time to first token (request sent ->
first non-empty content chunk), the stream's decoding rate (tokens after the first / time after the
first), completion and prompt tokens and the prompt tokens the server took from its cache (from the usage
chunk). Per run: p50/p95 TTFT, mean/p5 tokens/s per stream, aggregate tokens/s (all tokens / wall time from
the first request to the last reply), prompt tokens evaluated (not cached; a count that does not depend on
the machine's speed of the day), errors and 429s, and the server's resident memory (peak so far).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edulora.serving.bench import benchmark_adapters  # noqa: E402

SUBJECTS = (("math", "mathematics"), ("biology", "biology"), ("history", "history"), ("chemistry", "chemistry"))
QUESTIONS = {
    "math": ["How do I add 3/4 and 1/6?", "What is 15% of 80?", "How do I solve 2x + 5 = 17?"],
    "biology": ["Why do plants need sunlight?", "What does the heart do?", "How do cells divide?"],
    "history": ["Why did the Roman Empire fall?", "What was the Industrial Revolution?", "Who built the pyramids?"],
    "chemistry": ["Why do we balance chemical equations?", "What is an atom made of?", "Why does ice float?"],
}
FOLLOW_UPS = ["Can you give me a hint?", "I think I get it. Can you check my idea?", "Why is that?",
              "Can you explain it another way?"]
API_KEY = "classroom-benchmark-key"


@dataclass
class Turn:
    student: int
    model: str
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the server took from its cache (usage.prompt_tokens_details)
    began: float = 0.0
    ended: float = 0.0
    error: str | None = None
    rate_limited: bool = False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(backend: str, adapters: list[tuple[str, Path]], base: str | None, max_batch: int | None,
                 max_tokens: int, log: Path, gguf: str | None = None) -> tuple[subprocess.Popen, str]:
    """``edulora serve`` in a subprocess; returns once ``/health`` answers."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "edulora", "serve", "--backend", backend, "--port", str(port), "--no-feedback",
           "--api-key", API_KEY, *(["--max-batch", str(max_batch)] if max_batch else []), "--max-queue", "256",
           "--max-new-tokens", str(max_tokens),
           *[f"--adapter={name}={path}" for name, path in adapters], *(["--base", base] if base else []),
           *(["--gguf", gguf] if gguf and backend == "llamacpp" else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edulora serve exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("edulora serve did not start within 10 minutes")


def student(client, index: int, model: str, subject: str, turns: int, think: float, max_tokens: int,
            seed: int) -> list[Turn]:
    """One student's conversation: think, ask, read the streamed reply, repeat."""
    import openai

    rng = random.Random(seed * 1000 + index)
    messages = [{"role": "user", "content": rng.choice(QUESTIONS.get(subject, QUESTIONS["math"]))}]
    out = []
    for turn in range(turns):
        time.sleep(rng.uniform(0, think) if turn == 0 else rng.expovariate(1 / think) if think > 0 else 0)
        record = Turn(index, model, began=time.perf_counter())
        parts: list[str] = []
        first = None
        try:
            stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                    stream=True, stream_options={"include_usage": True},
                                                    temperature=0.0)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter()
                    parts.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    record.tokens, record.prompt_tokens = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
                    details = chunk.usage.prompt_tokens_details
                    record.cached_tokens = (details.cached_tokens or 0) if details else 0
        except openai.RateLimitError as err:
            record.rate_limited, record.error = True, f"429: {err}"
        except Exception as err:  # an error is a result here: counted, and the student goes on
            record.error = f"{type(err).__name__}: {err}"
        record.ended = time.perf_counter()
        if first is not None:
            record.ttft_s = first - record.began
            if record.tokens > 1 and record.ended > first:
                record.tokens_per_s = (record.tokens - 1) / (record.ended - first)
        out.append(record)
        if record.error:
            continue
        messages += [{"role": "assistant", "content": "".join(parts)},
                     {"role": "user", "content": FOLLOW_UPS[(turn + index) % len(FOLLOW_UPS)]}]
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summarize(turns: list[Turn]) -> dict:
    ok = [t for t in turns if t.error is None]
    ttfts = [t.ttft_s for t in ok if t.ttft_s is not None]
    rates = [t.tokens_per_s for t in ok if t.tokens_per_s is not None]
    replies = [t.ended - t.began for t in ok]  # question sent -> whole reply read: what a student waits for
    wall = max(t.ended for t in turns) - min(t.began for t in turns)
    tokens = sum(t.tokens for t in ok)
    prompt = sum(t.prompt_tokens for t in ok)
    return {"turns": len(turns), "errors": sum(t.error is not None and not t.rate_limited for t in turns),
            "rate_limited": sum(t.rate_limited for t in turns), "tokens": tokens, "wall_s": wall,
            "ttft_p50_s": percentile(ttfts, 50), "ttft_p95_s": percentile(ttfts, 95),
            "reply_p50_s": percentile(replies, 50), "reply_p95_s": percentile(replies, 95),
            "stream_tokens_per_s_mean": statistics.fmean(rates) if rates else None,
            "stream_tokens_per_s_p5": percentile(rates, 5),
            "aggregate_tokens_per_s": tokens / wall if wall > 0 else None,
            # The prompt work the server did: tokens it evaluated, not taken from a conversation's cache.
            "prompt_tokens": prompt, "prompt_tokens_evaluated": prompt - sum(t.cached_tokens for t in ok),
            "first_errors": sorted({t.error for t in turns if t.error})[:3]}


def run_class(url: str, models: list[str], args) -> dict:
    """Every student's conversation at once, student ``i`` on ``models[i % len(models)]``."""
    import httpx
    from openai import OpenAI

    # One client for the class, its connection pool large enough that no student waits for a connection.
    client = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=600,
                    http_client=httpx.Client(limits=httpx.Limits(max_connections=args.students + 8)))
    subjects = dict(SUBJECTS)
    with ThreadPoolExecutor(args.students) as pool:
        futures = []
        for i in range(args.students):
            model = models[i % len(models)]
            futures.append(pool.submit(student, client, i, model, model if model in subjects else "math",
                                       args.turns, args.think, args.max_tokens, args.seed))
        turns = [t for f in futures for t in f.result()]
    return {**summarize(turns), "per_turn": per_turn(turns)}


def per_turn(turns: list[Turn]) -> list[dict]:
    """Every turn in the order asked (seconds from the class's first question): where the slow ones fall."""
    start = min(t.began for t in turns)
    rows = [{"student": t.student, "model": t.model, "asked_s": t.began - start, "ttft_s": t.ttft_s,
             "tokens": t.tokens, "prompt_tokens": t.prompt_tokens, "cached_tokens": t.cached_tokens,
             "tokens_per_s": t.tokens_per_s, "reply_s": t.ended - t.began, "error": t.error}
            for t in turns]
    return sorted(rows, key=lambda row: row["asked_s"])


def server_memory(pid: int) -> dict:
    """The server process's resident memory now and its peak so far (MiB; Linux only, else empty)."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return {"server_rss_mib": int(status["VmRSS"].split()[0]) / 1024,
                "server_peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024}
    except (OSError, KeyError, ValueError):
        return {}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["llamacpp", "transformers"],
                        help="repeatable; default: both")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--think", type=float, default=5.0, help="mean think time between turns, seconds")
    parser.add_argument("--max-tokens", type=int, default=64, help="reply length cap per turn")
    parser.add_argument("--adapters", type=int, default=4, choices=range(1, len(SUBJECTS) + 1),
                        help="subject adapters served (plus the base model in the mixed run)")
    parser.add_argument("--max-batch", type=int, help="edulora serve --max-batch (default: the server's)")
    parser.add_argument("--modes", default="mixed,single", help="mixed (adapters + base), single (one adapter)")
    parser.add_argument("--base", help="base model (default: the packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--gguf", help="llama.cpp's base GGUF (edulora serve --gguf; default: the packaged Q4_1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    backends = args.backend or ["llamacpp", "transformers"]
    modes = [m for m in args.modes.split(",") if m]
    if args.students < 1 or args.turns < 1 or set(modes) - {"mixed", "single"}:
        parser.error("students and turns must be >= 1; modes are mixed and/or single")

    results = {"command": " ".join(["python", "benchmarks/classroom.py", *(argv if argv is not None else sys.argv[1:])]),
               "cpu": cpu_name(), "load_before": os.getloadavg(), "config": {k: (str(v) if isinstance(v, Path) else v)
                                                                           for k, v in vars(args).items()},
               "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        adapters = benchmark_adapters(args.base or "smollm2-135m-instruct", Path(tmp), SUBJECTS[:args.adapters],
                                      noise=0.02, seed=args.seed)
        names = [name for name, _ in adapters]
        for backend in backends:
            proc, url = start_server(backend, adapters, args.base, args.max_batch, args.max_tokens,
                                     Path(tmp) / f"serve-{backend}.log", args.gguf)
            try:
                import httpx

                base_id = httpx.get(f"{url}/health", timeout=10).json()["model"]
                for mode in modes:
                    models = names + [base_id] if mode == "mixed" else names[:1]
                    row = {"backend": backend, "mode": mode, "models": models, **run_class(url, models, args),
                           **server_memory(proc.pid)}
                    results["runs"].append(row)
                    print_row(row)
            finally:
                proc.terminate()
                proc.wait(60)
    for backend in backends:
        by_mode = {r["mode"]: r for r in results["runs"] if r["backend"] == backend}
        if "mixed" in by_mode and "single" in by_mode and by_mode["single"]["aggregate_tokens_per_s"]:
            ratio = by_mode["mixed"]["aggregate_tokens_per_s"] / by_mode["single"]["aggregate_tokens_per_s"]
            results.setdefault("mixed_over_single", {})[backend] = ratio
            print(f"{backend}: mixed-adapter aggregate = {ratio:.0%} of single-adapter")
    if args.json:
        tmp_out = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp_out.write_text(json.dumps(results, indent=2) + "\n")
        tmp_out.replace(args.json)  # atomic: a reader never sees half a file
    return results


def print_row(row: dict) -> None:
    def f(value, spec=".2f"):
        return "-" if value is None else format(value, spec)

    print(f"{row['backend']:12s} {row['mode']:6s} turns {row['turns']:3d}  TTFT p50 {f(row['ttft_p50_s'])} s "
          f"p95 {f(row['ttft_p95_s'])} s  whole reply p50 {f(row.get('reply_p50_s'))} s "
          f"p95 {f(row.get('reply_p95_s'))} s  stream {f(row['stream_tokens_per_s_mean'], '.1f')} tok/s "
          f"(p5 {f(row['stream_tokens_per_s_p5'], '.1f')})  aggregate {f(row['aggregate_tokens_per_s'], '.1f')} "
          f"tok/s  prompt tokens evaluated {row.get('prompt_tokens_evaluated', '-')} of {row.get('prompt_tokens', '-')}  "
          f"errors {row['errors']}  429s {row['rate_limited']}  server peak RSS "
          f"{f(row.get('server_peak_rss_mib'), '.0f')} MiB", flush=True)


if __name__ == "__main__":
    main()
