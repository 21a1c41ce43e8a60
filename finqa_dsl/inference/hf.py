"""The Hugging Face static engine: batched, timed ``model.generate`` over prompts encoded as in training.

Prompts are encoded by :func:`finqa_dsl.core.chat.encode_prompt` (as in training), sorted longest first (an
out-of-memory error shows in the first batch, and batches hold prompts of similar length), left-padded with an
attention mask (generate derives position ids from it), generated into a cache that grows in place
(:mod:`finqa_dsl.inference.kv_cache`), and decoded from the new tokens only. Generation stops
at the chat template's end-of-turn token, at eos and at the target's stop strings
(:mod:`finqa_dsl.inference.stopping`).

Finished rows leave their batch: generate runs ``settings.exit_every`` tokens at a time, and between calls the rows
that stopped are yielded and dropped from the batch and its KV cache, so the others decode without them and a
batch no longer costs as many row-steps as its longest generation times its size (BENCHMARKS.md). Greedy outputs
are those of one uninterrupted call: each call continues from the kept rows' tokens and cache.

Decoding follows :class:`GenerationSettings`: the sampling values and repetition penalty in the model's own
``generation_config`` are overridden, so greedy is plain greedy on every model.
:mod:`finqa_dsl.inference.prefix_cache` reuses :func:`batched` with a shared-prefix cache.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import Cache, GenerationConfig

from finqa_dsl.core.chat import encode_prompt, pad_token_id
from finqa_dsl.inference.backend import Generation, GenerationSettings
from finqa_dsl.inference.kv_cache import growing_cache
from finqa_dsl.inference.stopping import StopRule, stop_token_ids

# prepare(prompts' token ids, pad id) -> the batch's input ids, attention mask and the KV cache they start from
BatchInputs = Callable[[list[list[int]], int], tuple[torch.Tensor, torch.Tensor, Cache | None]]


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
    prompts first, each as soon as it leaves its batch, with a progress bar in examples/s."""

    def prepare(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, Cache]:
        return *left_pad(prompts, pad_id), growing_cache(model)

    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    return batched(model, tokenizer, records, encoded, settings, prepare)


def batched(model, tokenizer, records: Sequence, encoded: list[list[int]], settings: GenerationSettings,
            prepare: BatchInputs, *, setup_seconds: float = 0.0) -> Iterator[tuple[Any, Generation]]:
    """Sort the encoded prompts longest first, generate each batch from ``prepare``'s inputs, cut at the stop
    rule, decode and time. A row's ``latency_ms`` runs from its batch's start until it left the batch, its
    ``share_ms`` is its even part of every generate call it was in; ``setup_seconds`` (work done once for all
    batches before this call) counts as part of the first batch."""
    config = generation_config(model, tokenizer, settings)
    rule = stop_rule(model, tokenizer, settings)
    order = sorted(range(len(records)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    model.eval()
    with tqdm(total=len(records), unit="ex", desc="generate") as progress, torch.inference_mode():
        for start in range(0, len(order), settings.batch_size):
            members = order[start:start + settings.batch_size]
            began = time.perf_counter() - setup_seconds
            setup_seconds = 0.0
            input_ids, attention_mask, cache = prepare([encoded[i] for i in members], config.pad_token_id)
            rows = generate_leaving(model, tokenizer, input_ids.to(device), attention_mask.to(device), cache,
                                    config, rule, settings.exit_every, began)
            for row, ids, left_at, share in rows:
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                yield records[members[row]], Generation(text, len(ids), (left_at - began) * 1000,
                                                        settings.latency_mode, len(members), share * 1000)
                progress.update(1)


def generate_leaving(model, tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache: Cache | None,
                     config: GenerationConfig, rule: StopRule, exit_every: int,
                     began: float) -> Iterator[tuple[int, list[int], float, float]]:
    """Yield ``(row, generated ids up to the stop, time.perf_counter() when it left, its share of the seconds
    since ``began``)`` for every row of the batch as it finishes. Generation runs ``exit_every`` new tokens per
    ``model.generate`` call (0, or beam search: one call); after each call the rows that stopped leave, and the
    others continue from their tokens and their rows of the returned cache. Each call's time (the first one's
    from ``began``) is split evenly among the rows in it, so the shares add up to the batch's wall time."""
    prompt_length, produced, alive = input_ids.shape[1], 0, list(range(input_ids.shape[0]))
    shares, call_began = [0.0] * len(alive), began
    step = copy.copy(config)
    step.return_dict_in_generate = True
    while alive:
        step.max_new_tokens = config.max_new_tokens - produced
        if exit_every and config.num_beams == 1:
            step.max_new_tokens = min(exit_every, step.max_new_tokens)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, cache=cache,
                                generation_config=step, tokenizer=tokenizer)
        left_at = time.perf_counter()
        for row in alive:
            shares[row] += (left_at - call_began) / len(alive)
        call_began = left_at
        new = output.sequences.shape[1] - input_ids.shape[1]
        produced += new
        last_call = new < step.max_new_tokens or produced >= config.max_new_tokens  # all stopped, or the limit
        kept = []
        for index, row in enumerate(alive):
            ids = output.sequences[index, prompt_length:].tolist()
            if last_call or rule.stopped(ids, tokenizer):
                yield row, ids[:rule.length(ids, tokenizer)], left_at, shares[row]
            else:
                kept.append(index)
        if not kept:
            return
        cache = output.cache
        if len(kept) < len(alive):
            cache.batch_select_indices(torch.tensor(kept, device=input_ids.device))
        input_ids = output.sequences[kept]
        attention_mask = torch.cat([attention_mask[kept], attention_mask.new_ones(len(kept), new)], 1)
        alive = [alive[index] for index in kept]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded on the left to the longest, and their attention mask."""
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, longest - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, longest - len(ids):] = 1
    return input_ids, attention_mask
