"""Preference tuning (training.method=dpo), the pair format, and pairs mined from a tutor's own mistakes.

Tiny random Llama; a DPO step on it is dominated by TRL's chunked log-prob kernel, so runs are short.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import edulora as el
from edulora.cli import main

COMMON = ["model.precision=fp32", "data.max_length=64", "lora.target_modules=q_proj,v_proj", "training.batch_size=2",
          "training.grad_accum=1", "training.logging_steps=1", "training.warmup_ratio=0", "training.selection.keep_best=false",
          "training.selection.pedagogy_sample=0"]


def toy_pairs(n: int = 10) -> list[dict]:
    """A Socratic question (chosen) over telling the answer (rejected), per multiplication."""
    rows = []
    for i in range(n):
        a, b = 2 + i % 7, 3 + i % 5
        rows.append({"prompt": f"What is {a} times {b}?", "chosen": f"How many are {a} groups of {b}?",
                     "rejected": f"It is {a * b}.",
                     "metadata": {"subject": "mathematics", "teaching_style": "socratic", "answer": str(a * b)}})
    return rows


@pytest.fixture(scope="module")
def sft_run(tiny_llama, tmp_path_factory):
    from conftest import write_tutoring_file

    folder = tmp_path_factory.mktemp("sft")
    data = write_tutoring_file(folder, 16)
    config = el.load_config(None, [f"model.name={tiny_llama}", f"data.train_file={data}", "data.eval_fraction=0.25",
                                   *COMMON, "training.max_steps=2", "training.eval_steps=2", "training.save_steps=2",
                                   f"output_dir={folder}", "run_name=sft"])
    return el.train(config).run_dir


@pytest.fixture
def pairs_file(write_jsonl):
    return write_jsonl(toy_pairs(), "pairs.jsonl")


def _dpo(model, pairs, out, *extra: str) -> el.RunConfig:
    return el.load_config(None, [f"model.name={model}", f"data.train_file={pairs}", "training.method=dpo",
                                 "data.eval_fraction=0.2", *COMMON, "training.learning_rate=5e-3",
                                 "training.eval_steps=100", "training.save_steps=100", f"output_dir={out}",
                                 "run_name=dpo", *extra])


def test_dpo_from_an_sft_adapter_lowers_the_loss_and_never_updates_the_reference(
        tiny_llama, sft_run, pairs_file, tmp_path, monkeypatch):
    from edulora.training.preference import PreferenceTrainer

    seen = {}
    original = PreferenceTrainer.train

    def train_then_look(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        params = dict(self.model.named_parameters())
        seen["ref"] = {n: p.detach().clone() for n, p in params.items() if ".ref." in n}
        seen["ref_trainable"] = any(p.requires_grad for n, p in params.items() if ".ref." in n)
        seen["policy"] = {n: p.detach().clone() for n, p in params.items() if ".default." in n}
        return output

    monkeypatch.setattr(PreferenceTrainer, "train", train_then_look)
    run = el.train(_dpo(tiny_llama, pairs_file, tmp_path, f"model.adapter={sft_run}", "training.max_steps=4"))
    summary = run.summary
    assert summary.method == "dpo" and summary.optimizer_steps == 4
    assert summary.eval_loss_before == pytest.approx(0.6931, abs=1e-3)  # tuned == reference at the start
    assert summary.eval_loss_after < summary.eval_loss_before
    losses = [row["loss"] for row in run.run_dir.read_metrics() if "loss" in row]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3) and losses[-1] < losses[0]
    assert summary.preference["rewards/accuracies"] > 0.5

    # The reference is the SFT adapter, frozen: equal to its saved weights after training; the policy moved.
    start = load_file(str(sft_run / "adapter" / "adapter_model.safetensors"))
    assert seen["ref"] and not seen["ref_trainable"]
    for name, value in seen["ref"].items():
        assert torch.equal(value, start[name.replace(".ref.", ".")]), name
    assert any(not torch.equal(v, start[n.replace(".default.", ".")]) for n, v in seen["policy"].items())

    # A plain PEFT adapter (no reference inside) with the SFT adapter's prompt format and metadata.
    adapter = run.run_dir.adapter_dir
    assert not (adapter / "ref").exists()
    info = json.loads((adapter / "edulora.json").read_text())
    assert info["base_model"] == str(tiny_llama) and info["template"] == "chat"
    assert "Preference tuning" in (adapter / "README.md").read_text()
    assert el.Tutor.load(run.run_dir).ask("What is 2 times 3?").tokens >= 0
    assert list(run.run_dir.eval_records())  # held-out conversations, as records `edulora eval` can read
    assert run.run_dir.read_config().training.method == "dpo"  # the config, written once at the start


def test_bad_pairs_are_file_line_errors_and_exit_2(tiny_llama, write_jsonl, tmp_path, capsys):
    good = toy_pairs(2)
    bad = write_jsonl([good[0], {"prompt": "Why?", "chosen": "Same.", "rejected": "Same."},
                       {"messages": [{"role": "assistant", "content": "Hi"}], "chosen": "a"}], "bad.jsonl")
    argv = ["train", *[f"--set={s}" for s in [f"model.name={tiny_llama}", f"data.train_file={bad}",
                                               "training.method=dpo", f"output_dir={tmp_path}"]]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: 'chosen' and 'rejected' are the same reply" in err
    assert f"{bad}:3: field 'messages' must end with a user (student) turn" in err
    assert f"{bad}:3: missing field 'rejected'" in err and "Traceback" not in err
    assert main(["data", "validate", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err


def test_pair_files_are_read_by_the_record_readers_loop(write_jsonl, tmp_path, capsys):
    """Pairs go through the same JSON reader and item loop as records: the same bad line reads the same."""
    from edulora.data.formats import validate_any
    from edulora.data.pairs import validate_pairs

    good = toy_pairs(2)
    broken = '{"prompt": "Why?", "chosen": '
    surrogate = '{"prompt": "Why \\ud800?", "chosen": "a", "rejected": "b"}'
    bad = write_jsonl([good[0], broken, "[1, 2]", surrogate, good[1]], "bad.jsonl")
    records = write_jsonl([{"instruction": "Why?", "response": "Because."}, broken, "[1, 2]", surrogate], "r.jsonl")

    result = validate_pairs(bad)
    assert result.records == 2 and [p.line for p in result.problems] == [2, 3, 4]
    assert str(result.problems[1]) == f"{bad}:3: a pair must be a JSON object, got list"
    as_records = validate_any(records).problems
    for pair_problem, record_problem in zip([result.problems[0], result.problems[2]], [as_records[0], as_records[2]]):
        assert pair_problem.message == record_problem.message  # invalid JSON, lone surrogate: one wording

    # The CLI prints one FILE:LINE line per problem and a summary, exit 2, no traceback.
    assert main(["data", "validate", "--from", "pairs", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[0] for line in err[:3]] == [f"{bad}:2", f"{bad}:3", f"{bad}:4"]
    assert err[3] == f"{bad}: 2 valid records, 3 problem(s)" and len(err) == 4

    array = tmp_path / "pairs.json"  # one JSON array, as for records
    array.write_text(json.dumps(good, indent=1), encoding="utf-8")
    assert validate_pairs(array).ok and len(el.load_pairs(array)) == 2
    empty = write_jsonl([], "empty.jsonl")
    assert [str(p) for p in validate_pairs(empty).problems] == [f"{empty}:1: file holds no preference pairs"]
    with pytest.raises(el.EduloraError, match=r"bad\.jsonl:2: invalid JSON"):
        el.load_pairs(bad)


def test_feedback_export_round_trips_into_dpo_training(tiny_llama, tmp_path):
    from edulora.serving.feedback import FeedbackItem, FeedbackStore, export_feedback

    store = FeedbackStore(tmp_path / "fb.sqlite3")
    for i, row in enumerate(toy_pairs(8)):
        messages = [{"role": "user", "content": row["prompt"]}]
        meta = {k: v for k, v in row["metadata"].items() if k != "answer"}
        # A teacher rates the telling reply down and writes the Socratic one; a reviewer approves it.
        store.record(FeedbackItem(completion_id=f"c{i}", model="math", messages=messages, reply=row["rejected"],
                                  rating=-1, correction=row["chosen"], answer=row["metadata"]["answer"],
                                  status="approved", **meta))
    store.close()
    pairs = tmp_path / "pairs.jsonl"
    counts = export_feedback(tmp_path / "fb.sqlite3", tmp_path / "sft.jsonl", pairs)
    assert counts.pairs == 8
    assert len(el.load_pairs(pairs)) == 8  # one format both ways

    run = el.train(_dpo(tiny_llama, pairs, tmp_path / "runs", "training.max_steps=3"))
    assert run.summary.eval_loss_after < run.summary.eval_loss_before
    losses = [row["loss"] for row in run.run_dir.read_metrics() if "loss" in row]
    assert losses[-1] < losses[0]


def test_mining_pairs_never_uses_the_held_out_records_and_is_deterministic(sft_run, tmp_path, capsys):
    from edulora.data.pairs import prompt_key
    from edulora.evaluation.embeddings import installed
    from edulora.evaluation.judges import load_judges
    from edulora.evaluation.mining import mine_pairs

    held_out = sft_run.eval_records()
    train_file = sft_run.read_data_info()["train_file"]  # the whole file: it holds the held-out records too
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "pairs", str(sft_run), "--out", str(out), "--samples", "3", "--max-new-tokens", "12"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(held_out)} records left out (in the held-out set)" in printed
    mined = el.load_pairs(out) if out.read_text() else []
    held_keys = {prompt_key(el.PromptFormat(None).prompt_and_reference(r)[0]) for r in held_out}
    assert not [p for p in mined if p.prompt_key() in held_keys]
    assert all(p.extra["failures"] and p.chosen != p.rejected for p in mined)

    tutor = el.Tutor.load(sft_run)
    records = el.load_records(train_file)
    judges = load_judges() if installed() else None  # as the command does
    again = mine_pairs(tutor, records, samples=3, max_new_tokens=12, held_out=held_out, judges=judges)
    assert [p.to_dict() for p in again.pairs] == [p.to_dict() for p in mined]
    assert again.prompts + again.held_out_skipped == len(records)
    assert len(again.pairs) + again.all_passed + again.none_passed == again.prompts


def test_a_dpo_run_killed_mid_run_resumes_to_the_end(tiny_llama, sft_run, pairs_file, tmp_path):
    from test_crash_resume import _env, _wait_for

    settings = [f"model.name={tiny_llama}", f"data.train_file={pairs_file}", "training.method=dpo",
                f"model.adapter={sft_run}", "data.eval_fraction=0.2", *COMMON, "training.max_steps=6",
                "training.save_steps=2", "training.eval_steps=100", f"output_dir={tmp_path}", "run_name=dpo"]
    run = tmp_path / "dpo"
    process = subprocess.Popen([sys.executable, "-m", "edulora", "train", *[f"--set={s}" for s in settings]],
                               env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists(), process, timeout=300)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (run / "adapter").exists()
    result = subprocess.run([sys.executable, "-m", "edulora", "train", "--resume", str(run)], check=False,
                            capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["method"] == "dpo" and summary["optimizer_steps"] == 6
    assert summary["resumed_from"].rsplit("-", 1)[-1] in ("2", "4")
    assert (run / "adapter" / "adapter_model.safetensors").exists()


def test_dpo_over_its_memory_budget_fits_by_smaller_micro_batches_and_learns_the_same(tiny_llama, sft_run,
                                                                                      pairs_file, tmp_path):
    """Over the budget, a preference run first splits each optimizer step into smaller micro-batches
    (gradient accumulation keeps the step) and recomputes activations only when one pair alone is over
    it; neither changes what is learnt (non-reentrant checkpointing replays dropout's RNG)."""
    from edulora.training.memory import GB, estimate_peak_bytes

    plain_run = el.train(_dpo(tiny_llama, pairs_file, tmp_path / "plain", f"model.adapter={sft_run}",
                              "training.max_steps=3", "training.memory.budget_gb=0"))
    plain = plain_run.summary
    assert not plain.memory["gradient_checkpointing"] and "no memory budget" in plain.memory["reason"]
    assert plain.memory["micro_batch_size"] is None
    # A budget between one pair's estimate and the whole batch's (2 pairs): half the batch per micro-batch.
    model = plain_run.tutor.model.get_base_model()
    rows = plain.memory["batch_tokens"]
    one, both = (estimate_peak_bytes(model, n, 0.5, False, 2, head="chunked") / GB for n in (rows // 2, rows))
    runs, recomputing = {}, {}
    for name, budget in (("split", f"{(one + both) / 2:.6f}"), ("bounded", "0.01")):
        run = el.train(_dpo(tiny_llama, pairs_file, tmp_path / name, f"model.adapter={sft_run}",
                            "training.max_steps=3", f"training.memory.budget_gb={budget}"))
        runs[name], recomputing[name] = run.summary, run.tutor.model.get_base_model().is_activation_checkpointing
    split, bounded = runs["split"], runs["bounded"]
    assert recomputing == {"split": False, "bounded": True}  # the network itself, not only the summary
    assert split.memory["micro_batch_size"] == 1 and not split.memory["gradient_checkpointing"]
    assert "gradient accumulation makes up the step" in split.memory["reason"]
    assert bounded.memory["gradient_checkpointing"] and bounded.memory["checkpoint_above_tokens"] == 0
    assert bounded.memory["micro_batch_size"] == 1
    assert "exceeds the 0.01 GB budget" in bounded.memory["reason"] and "even so" in bounded.memory["reason"]
    for summary in (split, bounded):
        assert summary.memory["batch_tokens"] == rows > 0
        assert summary.optimizer_steps == plain.optimizer_steps == 3
        assert summary.eval_loss_after == pytest.approx(plain.eval_loss_after, abs=1e-5)
        assert summary.train_loss == pytest.approx(plain.train_loss, abs=1e-5)
        assert summary.eval_loss_after < summary.eval_loss_before


def test_dpo_cuts_long_prompts_at_their_start_and_prints_no_library_deprecations(tiny_llama, write_jsonl, tmp_path,
                                                                                 monkeypatch):
    """A prompt past data.max_length loses its oldest tokens before TRL sees it (TRL's own keep_end is
    deprecated, its keep_start would cut the reply); with activation recomputation on, the run passes
    none of transformers' gradient_checkpointing deprecation notices (read by PEFT and TRL) to the user."""
    import warnings

    from edulora.training.preference import PreferenceTrainer

    rows = toy_pairs(6)
    for row in rows:
        row["prompt"] = " ".join(f"earlier turn {i}." for i in range(40)) + " " + row["prompt"]
    pairs = write_jsonl(rows, "long.jsonl")
    seen = []
    original = PreferenceTrainer.train

    def train_then_look(self, *args, **kwargs):
        seen.extend(self.train_dataset)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreferenceTrainer, "train", train_then_look)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = el.train(_dpo(tiny_llama, pairs, tmp_path, "training.max_steps=2", "training.memory.budget_gb=0.01"))
    assert run.summary.memory["gradient_checkpointing"] and run.summary.optimizer_steps == 2
    notices = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert not [m for m in notices if "keep_end" in m or "gradient_checkpointing" in m], notices
    assert seen
    for example in seen:
        longest = max(len(example["chosen_ids"]), len(example["rejected_ids"]))
        assert len(example["prompt_ids"]) + longest <= 64  # nothing left for TRL to cut
    tokenizer = run.tutor.tokenizer
    prompts = [tokenizer.decode(e["prompt_ids"]) for e in seen]
    assert all(" times " in p and "earlier turn 0." not in p for p in prompts)  # the question kept, the oldest cut
