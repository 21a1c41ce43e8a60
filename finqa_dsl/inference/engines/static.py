"""The Hugging Face static engine, and the decoding loop that it shares with the prefix engine.

Prompts are encoded by :func:`finqa_dsl.core.chat.encode_prompt` (as in training), sorted longest first (an
out-of-memory error shows in the first batch, and batches hold prompts of similar length), left-padded with an
attention mask (generate derives position ids from it), generated into a cache that grows in place
(:mod:`.kv_cache`), and decoded from the new tokens only. Generation stops at the chat
template's end-of-turn token, at eos and at the target's stop strings (:mod:`finqa_dsl.inference.stopping`).

:func:`decode`: finished rows leave. Generate runs ``settings.exit_every`` tokens at a time, and between calls the
rows that stopped are yielded and dropped from the batch and its KV cache, so the others decode without them
(BENCHMARKS.md); the prefix engine (:mod:`.prefix`) also adds waiting prompts in their
place (:meth:`Rows.joined`). Greedy outputs are those of one uninterrupted call and of one prompt at a time: each
call continues from the kept rows' tokens and cache.

Decoding follows :class:`GenerationSettings`: the sampling values and repetition penalty in the model's own
``generation_config`` are overridden, so greedy is plain greedy on every model.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import Cache, GenerationConfig, LogitsProcessorList, StoppingCriteriaList, StopStringCriteria

from finqa_dsl.core.chat import encode_prompt, pad_token_id
from finqa_dsl.inference.engines.kv_cache import growing_cache, stacked
from finqa_dsl.inference.engines.token_logprobs import TokenLogprobs
from finqa_dsl.inference.grammar import RowGrammars
from finqa_dsl.inference.interface import Generation, GenerationSettings
from finqa_dsl.inference.stopping import StopRule, stop_token_ids
from finqa_dsl.models.batching import pad


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


def row_grammars(model, tokenizer, records: Sequence, settings: GenerationSettings) -> RowGrammars | None:
    """The records' grammars (``record.grammar``) when ``settings`` ask for constrained decoding, else None."""
    if not settings.constrained:
        return None
    return RowGrammars(tokenizer, [record.grammar for record in records], stop_token_ids(model, tokenizer),
                       model.get_output_embeddings().weight.shape[0])


def generate(model, tokenizer, records: Sequence,
             settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
    """Yield ``(record, Generation)`` for every record (``.id``, ``.prompt``), batch after batch, longest prompts
    first, each as soon as it leaves its batch, with a progress bar in examples/s. A row's ``latency_ms`` runs
    from its batch's start until it left the batch."""
    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    queue = longest_first(encoded)
    device = next(model.parameters()).device
    batch_of: dict[int, int] = {}  # record index -> members of its batch

    def admit(rows: Rows | None) -> Rows | None:
        """The next batch, once the running one has left."""
        if rows or not queue:
            return rows
        members = [queue.popleft() for _ in range(min(settings.batch_size, len(queue)))]
        batch_of.update(dict.fromkeys(members, len(members)))
        input_ids, attention_mask = pad([encoded[i] for i in members], pad_token_id(tokenizer), side="left")
        return Rows.admitted_at(time.perf_counter(), members, input_ids.to(device), attention_mask.to(device),
                                growing_cache(model))

    yield from streamed(model, tokenizer, records, settings, admit, settings.latency_mode, batch_of.__getitem__)


def longest_first(encoded: list[list[int]]) -> deque[int]:
    """Indices of the encoded prompts, longest first."""
    return deque(sorted(range(len(encoded)), key=lambda i: -len(encoded[i])))


def streamed(model, tokenizer, records: Sequence, settings: GenerationSettings,
             admit: Callable[[Rows | None], Rows | None], latency_mode: str,
             batch_size: Callable[[int], int]) -> Iterator[tuple[Any, Generation]]:
    """:func:`decode` the rows that ``admit`` brings, and yield ``(record, Generation)`` for each as it finishes,
    with a progress bar in examples/s; ``batch_size(record index)`` is what its row reports."""
    config = generation_config(model, tokenizer, settings)
    rule = stop_rule(model, tokenizer, settings)
    grammars = row_grammars(model, tokenizer, records, settings)
    model.eval()
    with tqdm(total=len(records), unit="ex", desc="generate") as progress, torch.inference_mode():
        for member, ids, latency, share, logprob in decode(model, tokenizer, config, rule, settings.exit_every,
                                                           admit, grammars):
            text = tokenizer.decode(ids, skip_special_tokens=True).strip()
            yield records[member], Generation(text, len(ids), latency * 1000, latency_mode, batch_size(member),
                                              share * 1000, logprob)
            progress.update(1)


@dataclass
class Rows:
    """Prompts decoding together: their left-padded tokens, attention mask and KV cache (which holds every token
    but the last once decoding started), and per row its record's index, its new tokens so far, when it was
    admitted (time.perf_counter()), its share of the seconds spent on the batch since and the log-probabilities
    of its new tokens (:mod:`.token_logprobs`; empty under beam search). Under cascade attention
    (:mod:`.cascade_attention`) the tokens, mask and cache are those after the ``offset`` tokens of the shared
    prefix."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    cache: Cache
    members: list[int]
    produced: list[int]
    admitted: list[float]
    shares: list[float]
    logprobs: list[list[float]]
    offset: int = 0

    @classmethod
    def admitted_at(cls, began: float, members: list[int], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    cache: Cache, offset: int = 0) -> Rows:
        """New rows whose preparation began at ``began``."""
        return cls(input_ids, attention_mask, cache, members, [0] * len(members), [began] * len(members),
                   [0.0] * len(members), [[] for _ in members], offset)

    def positions(self) -> dict:
        """``position_ids`` for ``model.generate`` when the rows start after ``offset`` tokens (else generate
        derives them from the attention mask)."""
        return {"position_ids": self.offset + self.attention_mask.cumsum(1) - 1} if self.offset else {}

    def __len__(self) -> int:
        return len(self.members)

    def continued(self, output, kept: list[int]) -> Rows | None:
        """The ``kept`` rows after a generate call that returned ``output``, or None if none is kept."""
        if not kept:
            return None
        new = output.sequences.shape[1] - self.input_ids.shape[1]
        if len(kept) < len(self):
            output.cache.batch_select_indices(torch.tensor(kept, device=self.input_ids.device))
        mask = self.attention_mask[kept]
        return Rows(output.sequences[kept], torch.cat([mask, mask.new_ones(len(kept), new)], 1), output.cache,
                    *([values[k] for k in kept] for values in (self.members, self.produced, self.admitted,
                                                                self.shares, self.logprobs)), self.offset)

    def joined(self, new: Rows, model, pad_id: int) -> Rows:
        """These rows and ``new`` ones in one batch, right-aligned; columns that are padding in every row go."""
        width = int(max(self.attention_mask.sum(1).max(), new.attention_mask.sum(1).max()))
        input_ids = torch.cat([_fit(rows.input_ids, width, pad_id) for rows in (self, new)])
        attention_mask = torch.cat([_fit(rows.attention_mask, width, 0) for rows in (self, new)])
        return Rows(input_ids, attention_mask, stacked([self.cache, new.cache], model, width - 1),
                    *(old + added for old, added in ((self.members, new.members), (self.produced, new.produced),
                                                     (self.admitted, new.admitted), (self.shares, new.shares),
                                                     (self.logprobs, new.logprobs))),
                    self.offset)


def _fit(rows: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    """``rows`` right-aligned in ``width`` columns: leading columns cut or ``pad`` columns added."""
    if rows.shape[1] >= width:
        return rows[:, rows.shape[1] - width:]
    return torch.cat([rows.new_full((rows.shape[0], width - rows.shape[1]), pad), rows], 1)


def decode(model, tokenizer, config: GenerationConfig, rule: StopRule, exit_every: int,
           admit: Callable[[Rows | None], Rows | None],
           grammars: RowGrammars | None = None) -> Iterator[tuple[int, list[int], float, float, float | None]]:
    """Yield ``(record index, generated ids up to the stop, seconds from admission until it left, its share of the
    seconds spent, the summed log-probability of those ids (None under beam search))`` for every row as it
    finishes; with ``grammars``, every row keeps to its record's grammar (:mod:`finqa_dsl.inference.grammar`).
    Generation runs ``exit_every`` new tokens per ``model.generate`` call (0, or beam search: one call); after
    each call the rows that stopped leave, the others continue from
    their tokens and their rows of the returned cache, and ``admit`` (given the running rows, or None) adds rows:
    the first ones, and then any it chooses whenever rows left. The time since the previous call (or since the
    admission of rows that started with nothing running), the preparation of rows that joined included, is split
    evenly among the rows in the call, so the shares add up to the wall time."""
    step = copy.copy(config)
    step.return_dict_in_generate = True
    # built once: generate would build it (reading the whole vocabulary) at every call
    step.stop_strings, stop_strings = None, config.stop_strings
    stopping = StoppingCriteriaList([StopStringCriteria(tokenizer, stop_strings)] if stop_strings else [])
    running = None
    while rows := admit(running):
        if running is None:  # nothing was running: the time owed starts with these rows' admission
            clock = min(rows.admitted)
        step.max_new_tokens = config.max_new_tokens - min(rows.produced)
        if exit_every and config.num_beams == 1:
            step.max_new_tokens = min(exit_every, step.max_new_tokens)
        logprobs = TokenLogprobs(len(rows)) if config.num_beams == 1 else None
        processors = LogitsProcessorList([logprobs] if logprobs else [])
        if grammars:
            processors.append(grammars.processor(rows.members, rows.produced, rows.input_ids.shape[1]))
        output = model.generate(input_ids=rows.input_ids, attention_mask=rows.attention_mask, cache=rows.cache,
                                generation_config=step, stopping_criteria=stopping, logits_processor=processors,
                                **rows.positions())
        if logprobs:
            logprobs.finish(output.sequences[:, -1])
        left_at = time.perf_counter()
        share, clock = (left_at - clock) / len(rows), left_at
        new = output.sequences.shape[1] - rows.input_ids.shape[1]
        all_stopped = new < step.max_new_tokens
        kept = []
        for index, member in enumerate(rows.members):
            rows.shares[index] += share
            rows.produced[index] += new
            if logprobs:
                rows.logprobs[index] += logprobs.values[index]
            ids = output.sequences[index, -rows.produced[index]:][:config.max_new_tokens].tolist()
            if all_stopped or len(ids) == config.max_new_tokens or rule.stopped(ids, tokenizer):
                length = rule.length(ids, tokenizer)
                if grammars:
                    grammars.left(member)
                yield (member, ids[:length], left_at - rows.admitted[index], rows.shares[index],
                       sum(rows.logprobs[index][:length]) if logprobs else None)
            else:
                kept.append(index)
        running = rows.continued(output, kept)
