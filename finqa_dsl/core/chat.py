"""How a tokenizer frames a conversation: chat template or plain text, prompt encoding, a prompt and its target
as one labelled sequence, end-of-turn and pad tokens. Training, inference and activation collection all use
these, so they tokenise prompts and targets the same way."""

from __future__ import annotations

import functools

_PROBE = "FINQA-PROBE-7c1e"  # assistant text whose continuation in a rendered chat is the end-of-turn marker
IGNORE_INDEX = -100  # label of a token that carries no loss (the value torch's cross-entropy ignores)


def uses_chat_template(tokenizer) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def encode_prompt(prompt: str | list[str], tokenizer) -> list[int] | list[list[int]]:
    """Token ids of a rendered prompt (or of each of a list). A chat template writes its own special
    tokens (Gemma's <bos>), so none are added; a plain prompt gets the tokenizer's usual ones
    (Mistral's <s>). Training and inference should both encode prompts with this."""
    return encode_text(prompt, tokenizer, add_special_tokens=not uses_chat_template(tokenizer))


def encode_for_training(tokenizer, prompt: str, target: str,
                        max_length: int | None = None) -> tuple[list[int], list[int]] | None:
    """``(input_ids, labels)`` of ``encode_prompt(prompt) + tokens(target) + [end-of-turn]``, labels
    ``IGNORE_INDEX`` on the prompt (the loss covers the target and the marker that closes the assistant turn, so
    the model learns to stop); None when the sequence is longer than ``max_length``: dropped, never cut (cutting
    the target would teach the model not to stop, cutting the prompt would remove the chat template's start)."""
    prompt_ids = encode_prompt(prompt, tokenizer)
    target_ids = [*tokenizer(target, add_special_tokens=False)["input_ids"], end_of_turn_id(tokenizer)]
    input_ids = prompt_ids + target_ids
    if max_length is not None and len(input_ids) > max_length:
        return None
    return input_ids, [IGNORE_INDEX] * len(prompt_ids) + target_ids


def encode_text(text: str | list[str], tokenizer, *, add_special_tokens: bool) -> list[int] | list[list[int]]:
    if isinstance(text, list) and not text:
        return []  # tokenizers reject an empty batch
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def end_of_turn_token(tokenizer) -> str:
    """The token that closes an assistant turn in the tokenizer's chat template (``<|im_end|>`` for Qwen2.5
    and SmolLM2, ``<end_of_turn>`` for Gemma-3); ``eos_token`` without a chat template, or when the template
    writes no special token right after the assistant's text."""
    if not uses_chat_template(tokenizer):
        return tokenizer.eos_token
    conversation = [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": _PROBE}]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    after = rendered[rendered.rindex(_PROBE) + len(_PROBE):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if ids and ids[0] in tokenizer.added_tokens_decoder:
        return tokenizer.convert_ids_to_tokens(ids[0])
    return tokenizer.eos_token


@functools.cache
def end_of_turn_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(end_of_turn_token(tokenizer))


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, or its eos id when it has none (Mistral)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def stop_token_ids(tokenizer, model_eos: int | list[int] | None = None) -> list[int]:
    """Where generation stops: the end-of-turn token, the tokenizer's eos and the model's own eos id(s) (its
    ``generation_config.eos_token_id``), without duplicates."""
    model_eos = [] if model_eos is None else [model_eos] if isinstance(model_eos, int) else list(model_eos)
    ids = [end_of_turn_id(tokenizer), tokenizer.eos_token_id, *model_eos]
    return list(dict.fromkeys(i for i in ids if i is not None))
