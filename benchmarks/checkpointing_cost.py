"""What activation checkpointing costs on the demo's recipe: its first 8 optimizer steps (the
longest batches: the length-grouped sampler puts them first), no evaluations in between.

    python benchmarks/checkpointing_cost.py auto|true|false [OUTPUT_DIR]

Prints one JSON line: training seconds, tokens/s, train loss, peak RSS and the memory plan.
Run the settings one after another on a quiet machine; compare only runs made side by side.
"""
import json
import sys

from edulora.demo import demo_config
from edulora.training import train

setting = sys.argv[1]
config = demo_config(sys.argv[2] if len(sys.argv) > 2 else "runs/checkpointing-cost")
config.training.max_steps = 8
config.training.eval_steps = 1000
config.training.save_steps = 1000
config.training.selection.pedagogy_sample = 0
config.training.selection.retention_sample = 0
config.training.memory.gradient_checkpointing = setting
config.run_name = setting
s = train(config).summary
print(json.dumps({"setting": setting, "train_seconds": round(s.train_seconds, 1), "tok_s": round(s.train_tokens_per_s, 1),
                  "train_loss": s.train_loss, "peak_rss_mb": round(s.peak_rss_mb), "memory": s.memory}))
