"""The Hugging Face static engine: batched, timed ``model.generate`` over prompts encoded as in training.

Prompts are encoded by :func:`finqa_dsl.core.chat.encode_prompt` (as in training), sorted longest first (an
out-of-memory error shows in the first batch, and batches hold prompts of similar length), left-padded with an
attention mask (generate derives position ids from it), and decoded from the new tokens only. Generation stops
at the chat template's end-of-turn token, at eos and at the target's stop strings
(:mod:`finqa_dsl.inference.stopping`); a batch runs until its last member stops.

Decoding follows :class:`GenerationSettings`: the sampling values and repetition penalty in the model's own
``generation_config`` are overridden, so greedy is plain greedy on every model.
:mod:`finqa_dsl.inference.prefix_cache` reuses :func:`batched` with a shared-prefix cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from finqa_dsl.core.chat import encode_prompt, pad_token_id
from finqa_dsl.inference.backend import Generation, GenerationSettings
from finqa_dsl.inference.stopping import StopRule, stop_token_ids

# run(prompts' token ids, generation config) -> each prompt's generated token ids (padding after a stop allowed)
BatchRunner = Callable[[list[list[int]], GenerationConfig], list[list[int]]]


def generation_config(model, tokenizer, settings: GenerationSettings) -> GenerationConfig:
    """The GenerationConfig for ``settings``. Values set here override the model's generation_config; the
    sampling values are set only when sampling (top_k=0: no top-k cut)."""
    sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams, do_sample=settings.do_sample,
        repetition_penalty=1.0, eos_token_id=stop_token_ids(model, tokenizer),
        pad_token_id=pad_token_id(tokenizer), stop_strings=list(settings.stop_strings) or None,
        **(sampling if settings.do_sample else {}),
    )


def stop_rule(model, tokenizer, settings: GenerationSettings) -> StopRule:
    return StopRule(tuple(stop_token_ids(model, tokenizer)), tuple(settings.stop_strings))


def generate(model, tokenizer, records: Sequence,
             settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
    """Yield ``(record, Generation)`` for every record (``.id``, ``.prompt``), batch after batch, longest
    prompts first, with a progress bar in examples/s."""
    device = next(model.parameters()).device

    def run(prompts: list[list[int]], config: GenerationConfig) -> list[list[int]]:
        input_ids, attention_mask = left_pad(prompts, config.pad_token_id)
        output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                generation_config=config, tokenizer=tokenizer)
        return output[:, input_ids.shape[1]:].tolist()

    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    return batched(model, tokenizer, records, encoded, settings, run)


def batched(model, tokenizer, records: Sequence, encoded: list[list[int]], settings: GenerationSettings,
            run: BatchRunner, *, setup_seconds: float = 0.0) -> Iterator[tuple[Any, Generation]]:
    """Sort the encoded prompts longest first, ``run`` each batch, cut at the stop rule, decode and time.
    ``setup_seconds`` (work done once for all batches before this call) is added to the first batch's wall
    time."""
    config = generation_config(model, tokenizer, settings)
    rule = stop_rule(model, tokenizer, settings)
    order = sorted(range(len(records)), key=lambda i: -len(encoded[i]))
    model.eval()
    with tqdm(total=len(records), unit="ex", desc="generate") as progress, torch.inference_mode():
        for start in range(0, len(order), settings.batch_size):
            members = order[start:start + settings.batch_size]
            began = time.perf_counter()
            new = run([encoded[i] for i in members], config)
            lengths = [rule.length(ids, tokenizer) for ids in new]
            texts = [tokenizer.decode(ids[:n], skip_special_tokens=True).strip()
                     for ids, n in zip(new, lengths, strict=True)]
            latency_ms = (time.perf_counter() - began + setup_seconds) * 1000
            setup_seconds = 0.0
            for i, text, n in zip(members, texts, lengths, strict=True):
                yield records[i], Generation(text, n, latency_ms, settings.latency_mode, len(members))
            progress.update(len(members))


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded on the left to the longest, and their attention mask."""
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, longest - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, longest - len(ids):] = 1
    return input_ids, attention_mask
