"""The continuous-batching engine: transformers' ``ContinuousBatchingManager`` (paged KV cache, finished
sequences leave the batch and queued prompts join it, blocks of a shared prefix are shared).

Prompts are encoded as in training and all queued at once; each result is yielded as soon as its request
finishes, so the predictions file streams and resumes as with the static engine. Stop strings are applied to
the returned tokens by the same :class:`~finqa_dsl.inference.stopping.StopRule` (the manager stops at the stop
tokens only). ``latency_ms`` is the request's time in flight (admitted to last token, sharing every step with
the other requests in flight); ``batch_size`` is the most requests in one step (``settings.batch_size``);
``share_ms`` is the wall time from the previous result (or the start) to this one; ``logprob`` sums transformers'
own per-token log-probabilities (after temperature and top-p when sampling, where the other engines take the
model's raw distribution). Grammar-constrained decoding is refused here
(:data:`~finqa_dsl.inference.interface.ENGINES`): the manager takes no per-request logits processor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm
from transformers import ContinuousBatchingConfig

from finqa_dsl.core.chat import encode_prompt
from finqa_dsl.inference.engines.static import generation_config, stop_rule
from finqa_dsl.inference.interface import IN_FLIGHT, Generation, GenerationSettings

PAGE_TOKENS = 256  # transformers' default page size


def cache_config(encoded: list[list[int]], settings: GenerationSettings) -> ContinuousBatchingConfig:
    """A paged cache sized for ``settings.batch_size`` requests of the longest prompt plus ``max_new_tokens``.
    Left to itself the manager takes 90% of the device's free memory; on a CPU that is the host's RAM, and every
    step's attention mask spans the whole cache."""
    in_flight = min(settings.batch_size, len(encoded))
    pages = -(-(max(map(len, encoded)) + settings.max_new_tokens) // PAGE_TOKENS)
    return ContinuousBatchingConfig(page_size=PAGE_TOKENS, num_blocks=in_flight * pages + 1,
                                    max_batch_tokens=max(map(len, encoded)) + in_flight,
                                    max_requests_per_batch=settings.batch_size, return_logprobs=True)


def generate(model, tokenizer, records: Sequence,
             settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
    """Yield ``(record, Generation)`` for every record, in the order the requests finish."""
    if not records:
        return
    config = generation_config(model, tokenizer, settings)
    config.stop_strings = None  # applied below by the stop rule
    rule = stop_rule(model, tokenizer, settings)
    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    batching = cache_config(encoded, settings)
    model.eval()
    with model.continuous_batching_context_manager(generation_config=config, continuous_batching_config=batching,
                                                   warmup=False) as manager, \
            tqdm(total=len(records), unit="ex", desc="generate") as progress:
        request_ids = manager.add_requests(encoded, max_new_tokens=settings.max_new_tokens)
        by_request = dict(zip(request_ids, records, strict=True))
        previous = time.perf_counter()
        while by_request:
            result = manager.get_result(timeout=1)
            if result is None:
                if not manager.is_running():
                    raise RuntimeError(f"continuous batching stopped with {len(by_request)} prompts unfinished")
                continue
            if not result.is_finished():
                continue
            if result.error:
                raise RuntimeError(f"continuous batching failed on a prompt: {result.error}")
            ids = result.generated_tokens
            n = rule.length(ids, tokenizer)
            text = tokenizer.decode(ids[:n], skip_special_tokens=True).strip()
            began, ended = result.lifespan
            now = time.perf_counter()
            yield by_request.pop(result.request_id), Generation(text, n, (ended - began) * 1000, IN_FLIGHT,
                                                                settings.batch_size, (now - previous) * 1000,
                                                                sum(result.logprobs[:n]))
            previous = now
            progress.update(1)
