"""Completion-only training data, batching without padding waste, and the HF Trainer run.

A training sequence is ``encode_prompt(prompt) + tokens(target) + [end-of-turn]``; labels are -100 on the
prompt, so the loss covers the target and the marker that closes the assistant turn (the model learns to
stop). The sequence is built by :func:`finqa_dsl.core.chat.encode_for_training` (activation collection encodes
with it too), its prompt by :func:`finqa_dsl.core.chat.encode_prompt`, the one function that inference and
prompt-length budgeting use too.

An example longer than ``max_length`` is dropped and counted, never cut: cutting the target would teach the
model not to stop, and cutting the prompt from the left would remove the chat template's BOS, system turn and
instruction. Fitting prompts into a token budget is done earlier, piece by piece, by
``build_prompt_records(max_prompt_tokens=...)``.

Batching: the default pads each batch to its longest sequence and groups batches by length
(``train_sampling_strategy="group_by_length"``). ``padding_free=True`` flattens a batch into one row with
restarting ``position_ids``; for eager and sdpa attention transformers >= 5 derives a block-diagonal causal
mask from them (tested: same loss as the padded batch), provided no KV cache is passed, so the collator sends
``use_cache=False``. That mask still costs attention over the whole flattened row (quadratic in the batch's
tokens), so it lost to length-grouped padding in scripts/benchmark_training.py (SmolLM2-135M, CPU, sdpa,
batch 8: 104 vs 54 tokens/s; naive max-length padding 20). It should pay off with flash attention's varlen
kernels on a GPU (not measured here).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from finqa_dsl.core.chat import IGNORE_INDEX, encode_for_training, pad_token_id
from finqa_dsl.core.io import JsonlAppender, atomic_write_jsonl, atomic_write_text, read_jsonl_tolerant
from finqa_dsl.models.batching import pad
from finqa_dsl.runs import files as run_files
from finqa_dsl.training.options import TARGET_ONLY
from finqa_dsl.training.target_loss import trainer_class

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodingStats:
    """What :func:`build_train_dataset` kept, for reports."""

    examples: int
    kept: int
    over_length: int  # dropped: prompt + target + end-of-turn longer than max_length
    max_length: int | None
    longest_kept: int  # tokens
    target_tokens: int  # labelled tokens over the kept examples

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_train_dataset(records: Sequence, tokenizer,
                        max_length: int | None) -> tuple[Dataset, EncodingStats]:
    """Columns ``id``, ``input_ids``, ``labels``, ``length`` for the records (``.id``, ``.prompt``,
    ``.target``) that fit ``max_length``; the others are dropped and counted (logged as a warning)."""
    rows: dict[str, list] = {"id": [], "input_ids": [], "labels": [], "length": []}
    for record in records:
        encoded = encode_for_training(tokenizer, record.prompt, record.target, max_length)
        if encoded is None:
            continue
        rows["id"].append(record.id)
        rows["input_ids"].append(encoded[0])
        rows["labels"].append(encoded[1])
        rows["length"].append(len(encoded[0]))
    stats = EncodingStats(
        examples=len(records), kept=len(rows["id"]), over_length=len(records) - len(rows["id"]),
        max_length=max_length, longest_kept=max(rows["length"], default=0),
        target_tokens=sum(sum(label != IGNORE_INDEX for label in labels) for labels in rows["labels"]),
    )
    if stats.over_length:
        logger.warning("%d of %d examples are longer than max_length=%s tokens and were left out",
                       stats.over_length, stats.examples, max_length)
    return Dataset.from_dict(rows), stats


@dataclass(frozen=True)
class CompletionCollator:
    """Batches of ``input_ids``/``labels`` features.

    Padded (default): right-padded to the longest sequence in the batch (or up to a multiple of
    ``pad_to_multiple_of``), with an attention mask; labels padded with -100.
    Padding-free: the batch flattened into one row with ``position_ids`` restarting at 0 for each sequence
    and no attention mask, from which transformers builds a block-diagonal causal mask; the first label of
    each sequence is -100 so no token predicts across a boundary. ``use_cache=False`` is part of the batch
    because a KV cache disables that block-diagonal mask (sequences would attend to each other).
    """

    pad_token_id: int
    padding_free: bool = False
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if self.padding_free:
            return self._flatten(features)
        input_ids, attention_mask = pad([feature["input_ids"] for feature in features], self.pad_token_id,
                                        side="right", multiple_of=self.pad_to_multiple_of)
        labels, _ = pad([feature["labels"] for feature in features], IGNORE_INDEX, side="right",
                        multiple_of=self.pad_to_multiple_of)
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}

    @staticmethod
    def _flatten(features: list[dict[str, Any]]) -> dict[str, Any]:
        input_ids, labels, position_ids = [], [], []
        for feature in features:
            input_ids.extend(feature["input_ids"])
            labels.extend([IGNORE_INDEX, *feature["labels"][1:]])
            position_ids.extend(range(len(feature["input_ids"])))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([position_ids], dtype=torch.long),
            "use_cache": False,
        }


class RunLogCallback(TrainerCallback):
    """Writes every Trainer log into the run folder as it arrives (appended, flushed):
    ``metrics.jsonl`` (the log dict with ``step`` and ``epoch``), ``train_loss.log`` and ``eval_loss.log``
    (``step epoch value``, tab-separated, one line per log).

    After a resume from a checkpoint, the first log of the resumed run removes the lines of the interrupted
    run from that step on, so the files hold one history without duplicates.
    """

    _LOSS_FILES = ((run_files.TRAIN_LOSS_LOG, "loss"), (run_files.EVAL_LOSS_LOG, "eval_loss"))

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._trimmed = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if not self._trimmed:
            self._drop_entries_from(state.global_step)
            self._trimmed = True
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        with JsonlAppender(self.folder / run_files.METRICS) as appender:
            appender.write(row)
        for name, key in self._LOSS_FILES:
            if key in logs:
                path = self.folder / name
                new = not path.exists() or path.stat().st_size == 0
                with open(path, "a", encoding="utf-8") as handle:
                    if new:
                        handle.write(f"step\tepoch\t{key}\n")
                    handle.write(f"{state.global_step}\t{state.epoch}\t{logs[key]}\n")
                    handle.flush()
                    os.fsync(handle.fileno())

    def _drop_entries_from(self, step: int) -> None:
        metrics_path = self.folder / run_files.METRICS
        rows = read_jsonl_tolerant(metrics_path)
        if any(row.get("step", 0) >= step for row in rows):
            atomic_write_jsonl(metrics_path, (row for row in rows if row.get("step", 0) < step))
        for name, _ in self._LOSS_FILES:
            path = self.folder / name
            if not path.exists():
                continue
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [line for line in lines[1:] if line.endswith("\n") and int(line.split("\t")[0]) < step]
            if len(kept) != len(lines) - 1:
                atomic_write_text(path, "".join(lines[:1] + kept))


def train_and_evaluate(model, tokenizer, training_args, folder: str | os.PathLike, timing, *,
                       train_records: Sequence | None, eval_records: Sequence | None,
                       max_length: int | None, padding_free: bool = False,
                       loss_implementation: str = TARGET_ONLY) -> dict[str, Any]:
    """Train on ``train_records`` (when given; resuming from ``training_args.resume_from_checkpoint``, else
    from the last checkpoint an interrupted run left in ``training_args.output_dir``), save
    the model and tokenizer to ``<folder>/final_model``, then evaluate the loss on ``eval_records`` (when
    given). Timed as the ``train`` and ``eval`` phases of ``timing``. Batches come in the order that
    ``training_args.train_sampling_strategy`` says (the driver's plan groups padded batches by length). The loss
    is computed as ``loss_implementation`` says (:mod:`finqa_dsl.training.target_loss`). Returns the Trainer's
    metrics, the encoding counts and ``loss_implementation``: the loss that actually ran."""
    results: dict[str, Any] = {}
    train_dataset = eval_dataset = None
    if train_records is not None:
        train_dataset, stats = build_train_dataset(train_records, tokenizer, max_length)
        results["train_encoding"] = stats.as_dict()
    if eval_records is not None:
        eval_dataset, stats = build_train_dataset(eval_records, tokenizer, max_length)
        results["eval_encoding"] = stats.as_dict()
    trainer_type, results["loss_implementation"] = trainer_class(loss_implementation, model, training_args)
    logger.info("Loss: %s", results["loss_implementation"])
    trainer = trainer_type(
        model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=CompletionCollator(pad_token_id(tokenizer), padding_free=padding_free),
        processing_class=tokenizer, callbacks=[RunLogCallback(folder)],
    )
    if train_dataset is not None:
        checkpoint = training_args.resume_from_checkpoint or _last_checkpoint(training_args.output_dir)
        if checkpoint:
            logger.info("Resuming training from %s", checkpoint)
        with timing.phase("train"):
            output = trainer.train(resume_from_checkpoint=checkpoint)
        results.update(output.metrics)
        trainer.save_model(str(Path(folder) / run_files.FINAL_MODEL))
    if eval_dataset is not None:
        with timing.phase("eval"):
            results.update(trainer.evaluate())
    logger.info("Training results: %s", json.dumps(results, default=str))
    return results


def _last_checkpoint(output_dir: str) -> str | None:
    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
