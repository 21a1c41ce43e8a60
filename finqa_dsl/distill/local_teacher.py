"""A local Hugging Face model as the teacher, through the project's batched generation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from finqa_dsl.core.prompts import render_prompt
from finqa_dsl.distill.chat_client import ChatRequest
from finqa_dsl.inference.hf_backend import HFBackend
from finqa_dsl.inference.interface import GenerationSettings
from finqa_dsl.models.loading import load_model, load_tokenizer


@dataclass(frozen=True)
class _Record:
    id: str
    prompt: str


class LocalTeacher:
    """Answers chat requests with a local model (hub id or folder), greedy, ``batch_size`` prompts at a time, through
    the project's inference engines (the shared few-shot prefix is encoded once)."""

    def __init__(self, model_name: str, *, max_new_tokens: int = 512, batch_size: int = 8):
        self.tokenizer = load_tokenizer(model_name)
        self.generate = HFBackend(load_model(model_name), self.tokenizer)  # auto: the shots' prefix encoded once
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)

    def __call__(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[ChatRequest, str]]:
        by_id = {request.id: request for request in requests}
        records = [_Record(r.id, render_prompt(r.messages, self.tokenizer)) for r in requests]
        for record, generation in self.generate(records, self.settings):
            yield by_id[record.id], generation.text
