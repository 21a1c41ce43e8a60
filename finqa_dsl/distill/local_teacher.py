"""A local Hugging Face model as the teacher, through the project's batched generation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from finqa_dsl.core.prompts import render_prompt
from finqa_dsl.core.python_code import END_PYTHON_MARKER
from finqa_dsl.distill.chat_client import LENGTH, ChatReply, ChatRequest
from finqa_dsl.inference.hf_backend import HFBackend
from finqa_dsl.inference.interface import GenerationSettings
from finqa_dsl.models.loading import load_model, load_tokenizer


@dataclass(frozen=True)
class _Record:
    id: str
    prompt: str


class LocalTeacher:
    """Answers chat requests with a local model (hub id or folder), greedy, ``batch_size`` prompts at a time, through
    the project's inference engines (the shared few-shot prefix is encoded once). A reply ends at the code's end
    marker; one that reaches ``max_new_tokens`` without it is the failure ``length``, as an endpoint's would be."""

    def __init__(self, model_name: str, *, max_new_tokens: int = 512, batch_size: int = 8):
        self.tokenizer = load_tokenizer(model_name)
        self.generate = HFBackend(load_model(model_name), self.tokenizer)  # auto: the shots' prefix encoded once
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size,
                                           stop_strings=(END_PYTHON_MARKER,))

    def __call__(self, requests: Sequence[ChatRequest]) -> Iterator[ChatReply]:
        records = [_Record(r.id, render_prompt(r.messages, self.tokenizer)) for r in requests]
        prompts = {record.id: record.prompt for record in records}
        for record, generation in self.generate(records, self.settings):
            cut = (generation.new_tokens >= self.settings.max_new_tokens
                   and not generation.text.rstrip().endswith(END_PYTHON_MARKER))
            usage = {"prompt_tokens": len(self.tokenizer(prompts[record.id], add_special_tokens=False).input_ids),
                     "completion_tokens": generation.new_tokens, "seconds": generation.latency_ms / 1000,
                     "finish_reason": "length" if cut else "stop"}
            if cut:
                yield ChatReply(record.id, generation.text, LENGTH, **usage,
                                message=f"the reply reached the token limit (max_new_tokens "
                                        f"{self.settings.max_new_tokens}) before {END_PYTHON_MARKER}")
            else:
                yield ChatReply(record.id, generation.text, None, **usage)
