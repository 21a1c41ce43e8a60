"""The vLLM backend: vLLM's offline engine (continuous batching, paged attention) for test inference on an
NVIDIA GPU, with a LoRA adapter served through vLLM's LoRA support instead of being merged.

Prompts are encoded exactly as for the HF backend (:func:`finqa_dsl.core.chat.encode_prompt`) and passed as
token ids, decoding is greedy unless sampling is asked for, and generation stops at the same stop tokens and
stop strings (the stop string kept, as the HF engines keep it), so the predictions file and metrics have the
same meaning. With ``--constrained_decoding`` each prompt carries its record's Lark grammar as vLLM structured
outputs, read by the ``guidance`` backend (llguidance, the library the HF engines use); ``logprob`` is vLLM's
cumulative log-probability of the completion. Records go to vLLM ``settings.batch_size`` at a time (vLLM
schedules each call's prompts), so that finished predictions reach the (streamed, resumable) predictions file
as the run goes and batch size 1 gives single-stream latency, as with the static engine. What it does not
honour (beam search, the HF engines' knobs) is refused by
:func:`finqa_dsl.inference.interface.check_settings` (``VLLM_HONOURS``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from finqa_dsl.core.chat import encode_prompt, stop_token_ids
from finqa_dsl.inference.interface import VLLM, Generation, GenerationSettings, check_settings
from finqa_dsl.models.extras import require_gpu_extra


def check_vllm_available() -> None:
    """:class:`UsageError` unless vLLM is installed and an NVIDIA GPU is visible."""
    require_gpu_extra("vllm",
                      missing="--inference_backend vllm needs vLLM: pip install -e '.[vllm]' (Linux with an NVIDIA "
                              "GPU), or use --inference_backend hf.",
                      no_gpu="--inference_backend vllm needs an NVIDIA GPU, and none is visible; use "
                             "--inference_backend hf.")


class VLLMBackend:
    """:class:`~finqa_dsl.inference.interface.Backend` over ``vllm.LLM``; ``adapter_dir`` adds a LoRA adapter."""

    def __init__(self, base_model: str, tokenizer, *, adapter_dir: str | None = None, lora_rank: int = 16,
                 dtype: str = "auto", seed: int = 0, max_model_len: int | None = None):
        check_vllm_available()
        from transformers import GenerationConfig
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self.tokenizer = tokenizer
        self.llm = LLM(model=base_model, tokenizer=base_model, dtype=dtype, seed=seed, max_model_len=max_model_len,
                       enable_lora=adapter_dir is not None, max_lora_rank=max(lora_rank, 8),
                       structured_outputs_config={"backend": "guidance"})
        self.lora = LoRARequest("finetuned", 1, adapter_dir) if adapter_dir else None
        model_eos = GenerationConfig.from_pretrained(base_model).eos_token_id
        self.stops = stop_token_ids(tokenizer, model_eos)

    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        check_settings(VLLM, settings)

        def params(record) -> SamplingParams:
            grammar = StructuredOutputsParams(grammar=record.grammar) if settings.constrained else None
            return SamplingParams(
                n=1, max_tokens=settings.max_new_tokens, stop_token_ids=self.stops, skip_special_tokens=True,
                stop=list(settings.stop_strings), include_stop_str_in_output=True, logprobs=0,
                temperature=settings.temperature if settings.do_sample else 0.0,
                top_p=settings.top_p if settings.do_sample else 1.0, structured_outputs=grammar,
            )

        for start in range(0, len(records), settings.batch_size):
            chunk = records[start:start + settings.batch_size]
            prompts = [{"prompt_token_ids": ids} for ids in encode_prompt([r.prompt for r in chunk], self.tokenizer)]
            began = time.perf_counter()
            outputs = self.llm.generate(prompts, [params(record) for record in chunk], lora_request=self.lora,
                                        use_tqdm=True)
            latency_ms = (time.perf_counter() - began) * 1000
            for record, output in zip(chunk, outputs, strict=True):
                completion = output.outputs[0]
                yield record, Generation(completion.text.strip(), len(completion.token_ids), latency_ms,
                                         settings.latency_mode, len(chunk), latency_ms / len(chunk),
                                         completion.cumulative_logprob)
