"""The Hugging Face backend: batched, timed ``model.generate`` over prompts encoded as in training.

Prompts are encoded by :func:`finqa_dsl.core.chat.encode_prompt` (as in training), sorted longest first (an
out-of-memory error shows in the first batch, and batches hold prompts of similar length), left-padded with an
attention mask (generate derives position ids from it), and decoded from the new tokens only. Generation stops
at the chat template's end-of-turn token and at eos.

Decoding follows :class:`GenerationSettings`: the sampling values and repetition penalty in the model's own
``generation_config`` are overridden, so greedy is plain greedy on every model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from finqa_dsl.core.chat import encode_prompt, pad_token_id, stop_token_ids
from finqa_dsl.inference.backend import Generation, GenerationSettings


def generation_config(model, tokenizer, settings: GenerationSettings) -> GenerationConfig:
    """The GenerationConfig for ``settings``. Values set here override the model's generation_config; the
    sampling values are set only when sampling (top_k=0: no top-k cut)."""
    sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams, do_sample=settings.do_sample,
        repetition_penalty=1.0, eos_token_id=stop_token_ids(tokenizer, model.generation_config.eos_token_id),
        pad_token_id=pad_token_id(tokenizer), **(sampling if settings.do_sample else {}),
    )


def generate(model, tokenizer, records: Sequence, settings: GenerationSettings,
             progress_bar: bool = True) -> Iterator[tuple[Any, Generation]]:
    """Yield ``(record, Generation)`` for every record (``.id``, ``.prompt``), batch after batch, longest
    prompts first, with a progress bar in examples/s unless ``progress_bar`` is false."""
    config = generation_config(model, tokenizer, settings)
    stops = set(config.eos_token_id)
    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    order = sorted(range(len(records)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    model.eval()
    with tqdm(total=len(records), unit="ex", desc="generate", disable=not progress_bar) as progress, \
            torch.inference_mode():
        for start in range(0, len(order), settings.batch_size):
            members = order[start:start + settings.batch_size]
            began = time.perf_counter()
            input_ids, attention_mask = _left_pad([encoded[i] for i in members], config.pad_token_id)
            output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                    generation_config=config)
            new = output[:, input_ids.shape[1]:].tolist()
            lengths = [_length_to_stop(ids, stops) for ids in new]
            texts = [tokenizer.decode(ids[:n], skip_special_tokens=True).strip()
                     for ids, n in zip(new, lengths, strict=True)]
            latency_ms = (time.perf_counter() - began) * 1000
            for i, text, n in zip(members, texts, lengths, strict=True):
                yield records[i], Generation(text, n, latency_ms, settings.latency_mode, len(members))
            progress.update(len(members))


class HFBackend:
    """:class:`~finqa_dsl.inference.backend.Backend` over a loaded transformers model and its tokenizer
    (``progress_bar=False``: no tqdm bar, as on the other processes of a multi-process run)."""

    def __init__(self, model, tokenizer, progress_bar: bool = True):
        self.model, self.tokenizer, self.progress_bar = model, tokenizer, progress_bar

    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
        return generate(self.model, self.tokenizer, records, settings, self.progress_bar)


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, longest - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, longest - len(ids):] = 1
    return input_ids, attention_mask


def _length_to_stop(ids: list[int], stops: set[int]) -> int:
    """Tokens generated up to and including the first stop token (all of them when none stops)."""
    for position, token in enumerate(ids):
        if token in stops:
            return position + 1
    return len(ids)
