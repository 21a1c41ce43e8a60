"""A base model and its fine-tuned version answering the same prompt: both generations, executed and scored.

With an adapter folder as the fine-tuned model and no other base given, the model is loaded once and the
base's answer comes from the same weights with the adapter switched off (``PeftModel.disable_adapter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import Example
from finqa_dsl.core.prompts import build_messages, build_prompt_records, render_prompt
from finqa_dsl.core.targets import Target, get_target
from finqa_dsl.inference.engines.static import generate
from finqa_dsl.inference.interface import GenerationSettings
from finqa_dsl.models.hub import model_source
from finqa_dsl.models.loading import adapter_base, is_adapter_dir, load_model, load_tokenizer
from finqa_dsl.models.source import check_model_source
from finqa_dsl.sandbox.generations import CodeRunner, code_runner


@dataclass(frozen=True)
class Prompt:
    id: str
    question: str
    prompt: str


def prompt_for_example(example: Example, tokenizer, target_field: str, context_config: ContextConfig) -> Prompt:
    record = build_prompt_records([example], target_field=target_field, context_config=context_config,
                                  tokenizer=tokenizer)[0][0]
    return Prompt(record.id, record.question, record.prompt)


def prompt_for_question(question: str, context: str, tokenizer, target_field: str) -> Prompt:
    return Prompt("question", question, render_prompt(build_messages(question, context, target_field), tokenizer))


def answer(model, tokenizer, prompt: Prompt, settings: GenerationSettings, target: Target,
           example: Example | None, run_code: CodeRunner | None) -> dict[str, Any]:
    """One greedy generation for ``prompt``, parsed, executed (code by ``run_code``, in the sandbox) and scored
    against ``example`` (executed only, without one)."""
    (_, generation), = generate(model, tokenizer, [prompt], settings)
    row: dict[str, Any] = {row_keys.GENERATION: generation.text, row_keys.NEW_TOKENS: generation.new_tokens,
                           row_keys.LATENCY_MS: round(generation.latency_ms, 1),
                           row_keys.PARSED_PREDICTION: target.parse(generation.text)}
    execution = run_code([generation.text])[0] if run_code else None
    if example is not None:
        row.update(target.score(generation.text, example, execution))
    else:
        row.update(target.execute_alone(generation.text, execution))
    return row


def compare(finetuned: str, base: str | None, *, example: Example | None, question: str | None = None,
            context: str = "", target_field: str = "program", context_config: ContextConfig | None = None,
            max_new_tokens: int = 128) -> dict[str, Any]:
    """Both models' answers to one example (or to ``question`` with ``context``), with the gold when known. Either
    model may be a folder or a Hub id (an adapter's id is fetched and its base read from it)."""
    finetuned = model_source(finetuned, "finetuned_model")
    check_model_source(finetuned, "finetuned_model")
    base = base and model_source(base, "--base_model")
    if base:
        check_model_source(base, "--base_model")
    base = base or (adapter_base(finetuned) if is_adapter_dir(finetuned) else None)
    if base is None:
        raise ValueError("the fine-tuned model is not an adapter folder: name its base model too")
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=1)
    config = context_config or ContextConfig(input_mode="gold")

    def prompt_with(tokenizer) -> Prompt:  # each model gets the prompt in its own chat template
        return prompt_for_example(example, tokenizer, target_field, config) if example is not None \
            else prompt_for_question(question, context, tokenizer, target_field)

    target = get_target(target_field)
    tokenizer = load_tokenizer(finetuned)
    prompt = prompt_with(tokenizer)
    tuned_model = load_model(finetuned)
    with code_runner(target) as run_code:
        if is_adapter_dir(finetuned) and base == adapter_base(finetuned):
            with tuned_model.disable_adapter():
                base_row = answer(tuned_model, tokenizer, prompt, settings, target, example, run_code)
        else:
            base_tokenizer = load_tokenizer(base)
            base_row = answer(load_model(base), base_tokenizer, prompt_with(base_tokenizer), settings, target,
                              example, run_code)
        tuned_row = answer(tuned_model, tokenizer, prompt, settings, target, example, run_code)
    result = {row_keys.ID: prompt.id, row_keys.QUESTION: prompt.question, row_keys.PROMPT: prompt.prompt,
              row_keys.TARGET_FIELD: target_field,
              "base_model": base, "finetuned_model": finetuned, "base": base_row, "finetuned": tuned_row}
    if example is not None:
        result.update({row_keys.GOLD_PROGRAM: example.program, row_keys.GOLD_EXE_ANS: example.exe_ans,
                       row_keys.GOLD_ANSWER: example.answer})
    return result
