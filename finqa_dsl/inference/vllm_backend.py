"""The vLLM backend: vLLM's offline engine (continuous batching, paged attention) for test inference on an
NVIDIA GPU, with a LoRA adapter served through vLLM's LoRA support instead of being merged.

Prompts are encoded exactly as for the HF backend (:func:`finqa_dsl.core.chat.encode_prompt`) and passed as
token ids, decoding is greedy unless sampling is asked for, and generation stops at the same stop tokens, so
the predictions file and metrics have the same meaning. Records are generated in chunks so that finished
predictions reach the (streamed, resumable) predictions file as the run goes. Beam search is refused: use
the HF backend for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from finqa_dsl.core.chat import encode_prompt, stop_token_ids
from finqa_dsl.core.errors import UsageError
from finqa_dsl.inference.backend import BATCH_WALL_TIME, Generation, GenerationSettings
from finqa_dsl.models.extras import require_gpu_extra

CHUNK = 256  # records per vLLM call: finished predictions are written after each chunk


def check_vllm_available() -> None:
    """:class:`UsageError` unless vLLM is installed and an NVIDIA GPU is visible."""
    require_gpu_extra("vllm",
                      missing="--inference_backend vllm needs vLLM: pip install -e '.[vllm]' (Linux with an NVIDIA "
                              "GPU), or use --inference_backend hf.",
                      no_gpu="--inference_backend vllm needs an NVIDIA GPU, and none is visible; use "
                             "--inference_backend hf.")


class VLLMBackend:
    """:class:`~finqa_dsl.inference.backend.Backend` over ``vllm.LLM``; ``adapter_dir`` adds a LoRA adapter."""

    def __init__(self, base_model: str, tokenizer, *, adapter_dir: str | None = None, lora_rank: int = 16,
                 dtype: str = "auto", seed: int = 0, max_model_len: int | None = None):
        check_vllm_available()
        from transformers import GenerationConfig
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self.tokenizer = tokenizer
        self.llm = LLM(model=base_model, tokenizer=base_model, dtype=dtype, seed=seed, max_model_len=max_model_len,
                       enable_lora=adapter_dir is not None, max_lora_rank=max(lora_rank, 8))
        self.lora = LoRARequest("finetuned", 1, adapter_dir) if adapter_dir else None
        model_eos = GenerationConfig.from_pretrained(base_model).eos_token_id
        self.stops = stop_token_ids(tokenizer, model_eos)

    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
        from vllm import SamplingParams

        if settings.num_beams > 1:
            raise UsageError("--inference_backend vllm does not do beam search here; use --inference_backend hf.")
        params = SamplingParams(
            n=1, max_tokens=settings.max_new_tokens, stop_token_ids=self.stops, skip_special_tokens=True,
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p if settings.do_sample else 1.0,
        )
        for start in range(0, len(records), CHUNK):
            chunk = records[start:start + CHUNK]
            prompts = [{"prompt_token_ids": ids} for ids in encode_prompt([r.prompt for r in chunk], self.tokenizer)]
            began = time.perf_counter()
            outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=True)
            latency_ms = (time.perf_counter() - began) * 1000
            for record, output in zip(chunk, outputs, strict=True):
                completion = output.outputs[0]
                yield record, Generation(completion.text.strip(), len(completion.token_ids), latency_ms,
                                         BATCH_WALL_TIME, len(chunk), latency_ms / len(chunk))
