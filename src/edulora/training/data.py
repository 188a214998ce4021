"""Training data: read, split, scrub, balance and encode records into token rows."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

import torch

from ..config import RunConfig
from ..data.formats import load_records
from ..data.schema import Dialogue, Record
from ..data.split import fingerprint, split_records
from ..errors import EduloraError
from ..evaluation.retention import BASE_DECODE_ROWS
from ..formatting import EncodedExample, PromptFormat, collate_examples


@dataclass
class DataSplit:
    train: list[Record]
    eval: list[Record]
    info: dict = field(default_factory=dict)
    #: How many of ``train``'s records, at its end, are replay (general requests, ``data.replay_fraction``).
    replay: int = 0


def load_data(config: RunConfig) -> DataSplit:
    """Read (any supported format), split, scrub and balance the data; the fingerprints let two
    runs prove they saw the same data."""
    if not config.data.train_file:
        raise EduloraError("config: data.train_file is not set (e.g. --set data.train_file=train.jsonl)")
    records = load_records(config.data.train_file)
    if config.data.eval_file:
        train, held_out = records, load_records(config.data.eval_file)
    else:
        train, held_out = split_records(records, config.data.eval_fraction, config.data.split_seed)
    info: dict = {"train_file": config.data.train_file, "eval_file": config.data.eval_file or None}
    if should_scrub(config.data.scrub_pii):
        from ..data.privacy import scrub_records

        train, report = scrub_records(train)
        held_out, eval_report = scrub_records(held_out)
        # Counts only: the original values must never reach a log or a run directory.
        info["pii_scrubbed"] = {"train": report.to_dict()["counts"], "eval": eval_report.to_dict()["counts"]}
    if config.data.balance_floor > 0:
        from ..data.balance import balance_records

        before = len(train)
        train = balance_records(train, config.data.balance_floor, config.data.split_seed)
        info["balanced"] = {"floor": config.data.balance_floor, "added_copies": len(train) - before}
    if config.model.adapter and config.data.previous_fraction > 0:  # SFT continuing an adapter (continued.py)
        from .continued import previous_records

        previous, info["previous"] = previous_records(config, should_scrub(config.data.scrub_pii))
        before = len(train)
        train = mix_replay(train, previous, config.data.previous_fraction, config.data.split_seed)
        info["previous"].update(fraction=config.data.previous_fraction, added=len(train) - before)
    if config.data.replay_fraction > 0:  # after the previous records: replay stays at the end (DataSplit.replay)
        replay = load_replay(config.data.replay_file)
        if should_scrub(config.data.scrub_pii):
            from ..data.privacy import scrub_records

            replay, _ = scrub_records(replay)
        before = len(train)
        train = mix_replay(train, replay, config.data.replay_fraction, config.data.split_seed)
        info["replay"] = {"file": config.data.replay_file or "edulora replay.jsonl",
                          "fraction": config.data.replay_fraction, "added": len(train) - before,
                          "responses": config.data.replay_responses}
    info.update({"train_records": len(train), "eval_records": len(held_out),
                 "keyed_train_records": sum(_has_key(r) for r in train),
                 "keyed_eval_records": sum(_has_key(r) for r in held_out),
                 "train_fingerprint": fingerprint(train), "eval_fingerprint": fingerprint(held_out)})
    return DataSplit(train, held_out, info, replay=info.get("replay", {}).get("added", 0))


def load_replay(path: str = "") -> list[Record]:
    """General instruction data for ``data.replay_fraction``: the user's file, or our ``replay.jsonl``."""
    from ..data.samples import sample_data_path

    records = load_records(path or sample_data_path("replay.jsonl"))
    if not records:
        raise EduloraError(f"{path}: data.replay_file holds no records")
    return records


def mix_replay(train: list[Record], replay: list[Record], fraction: float, seed: int) -> list[Record]:
    """``train`` plus replay records making up ``fraction`` of the result (rounded), drawn seeded
    (also how a continued adapter's previous data is mixed in, ``data.previous_fraction``).

    Drawn without replacement, in passes over a fresh shuffle each, so every replay record is
    used once before any is repeated. Appended at the end: the Trainer's sampler shuffles (or
    groups by length) the whole set, so replay examples land in batches throughout training.
    """
    if not 0 <= fraction < 1:
        raise EduloraError(f"a share to mix in must be in [0, 1), got {fraction}")
    wanted = round(len(train) * fraction / (1 - fraction))
    rng = random.Random(seed)
    drawn: list[Record] = []
    while len(drawn) < wanted and replay:
        order = list(replay)
        rng.shuffle(order)
        drawn += order[: wanted - len(drawn)]
    return train + drawn


def answer_replay_with_base(split: DataSplit, tutor, max_new_tokens: int = 96,
                            batch_size: int = BASE_DECODE_ROWS) -> int:
    """Replace the replay records' replies with the base model's own (``data.replay_responses: base``).

    The drift is measured against what the base says; replies written by someone else, however good,
    move the adapter away from the base on general requests just as tutoring data does (measured on the
    demo: docs/evaluation.md). Trained on the base's own greedy replies, decoded as every edulora reply
    is, replay holds those requests where the base had them. ``tutor`` is the base network before the
    adapter is attached. Each distinct prompt is decoded once; a reply cut by ``max_new_tokens`` keeps
    its complete sentences, and a prompt the base leaves empty keeps the file's reply. Decoded in rows of
    ``BASE_DECODE_ROWS``: with no adapter attached yet a row costs little memory and each step reads the
    weights once for all rows (the drift probe's base decodes alike). Returns how many
    distinct prompts got the base's reply; the training fingerprint is recomputed.
    """
    from ..evaluation.text import whole_sentences
    from ..generation import Sampling

    if not split.replay:
        return 0
    head, replay = split.train[: -split.replay], split.train[-split.replay:]
    asked = [tutor.format.prompt_and_reference(record)[0] for record in replay]
    keys = [tutor.format.render(messages) for messages in asked]
    prompts = dict(zip(keys, asked))  # each distinct prompt once, in first-seen order
    replies = tutor.generate(list(prompts.values()), Sampling(max_new_tokens=max_new_tokens), batch_size,
                             desc="replay: the base answers")
    cut = {key: whole_sentences(r.text) if r.finish_reason == "length" else r.text for key, r in zip(prompts, replies)}
    answers = {key: text for key, text in cut.items() if text.strip()}
    split.train = head + [_with_reply(record, answers[key]) if key in answers else record
                          for record, key in zip(replay, keys)]
    split.info["replay"]["base_replies"] = len(answers)
    split.info["train_fingerprint"] = fingerprint(split.train)
    return len(answers)


def _with_reply(record: Record, reply: str) -> Record:
    """The record with its last tutor turn replaced by ``reply``; in a dialogue only that turn is learned."""
    if isinstance(record, Dialogue):
        last = max(i for i, t in enumerate(record.turns) if t.role == "assistant")
        turns = [dataclasses.replace(t, train=False) if t.role == "assistant" else t for t in record.turns[:last]]
        return dataclasses.replace(record, turns=turns + [dataclasses.replace(record.turns[last], content=reply,
                                                                              train=True)])
    return dataclasses.replace(record, response=reply)


def _has_key(record: Record) -> bool:
    return record.metadata.answer is not None or record.metadata.solution is not None


def should_scrub(setting: str) -> bool:
    """Personal details are scrubbed from data of every shape: single-turn records carry students'
    words too (a feedback export is single-turn). Only ``false``, the config's word that the data
    is already clean, turns it off; ``auto`` and ``true`` both scrub."""
    return setting != "false"


def encode(records: list[Record], fmt: PromptFormat, max_length: int) -> tuple[list[EncodedExample], dict]:
    encoded = [fmt.encode(r, max_length) for r in records]
    stats = {"examples": len(encoded), "tokens": sum(len(e.input_ids) for e in encoded),
             "trainable_tokens": sum(e.trainable_tokens for e in encoded),
             "truncated": sum(e.truncated for e in encoded)}
    if encoded and stats["trainable_tokens"] == 0:
        raise EduloraError("every label is masked: no tutor text is left to learn from (is max_length too small?)")
    return encoded, stats


class ExampleDataset(torch.utils.data.Dataset):
    """Encoded examples as dicts, the shape the Trainer's length-grouped sampler reads."""

    def __init__(self, examples: list[EncodedExample]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}


class Collator:
    """Micro-batches as tensors (``formatting.collate_examples``); a class so DataLoader workers can pickle it."""

    def __init__(self, pad_token_id: int, packing: bool, pad_to_multiple_of: int = 1):
        self.pad_token_id, self.packing, self.pad_to_multiple_of = pad_token_id, packing, pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict:
        examples = [EncodedExample(i["input_ids"], i["labels"]) for i in items]
        return collate_examples(examples, self.pad_token_id, self.packing, self.pad_to_multiple_of)
