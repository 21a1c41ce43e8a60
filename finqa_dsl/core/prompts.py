"""Prompts and targets: instruction + question + context as chat messages, rendered with the tokenizer's
chat template (generation prompt included) or as plain ``Question:/Context:/Answer:`` text.

A tokenizer is only ever passed in; this module imports no transformers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from itertools import accumulate

from finqa_dsl.core.chat import encode_prompt, encode_text, uses_chat_template
from finqa_dsl.core.context import Context, ContextConfig, build_context
from finqa_dsl.core.data import DatasetError, Example
from finqa_dsl.core.targets import get_target

ANSWER_CUE = "Answer:\n"  # ends a plain-text prompt; the target follows on the next line


@dataclass(frozen=True)
class Exemplar:
    """A solved example shown before the question (few-shot)."""

    id: str
    question: str
    context: str
    target: str


@dataclass(frozen=True)
class PromptRecord:
    """A rendered prompt (generation prompt included) and its target, ready to train on or generate from."""

    id: str
    question: str
    context: str
    prompt: str
    target: str
    truncated: bool = False
    dropped_pieces: int = 0
    over_length: bool = False  # still longer than max_prompt_tokens with every droppable piece dropped
    prompt_tokens: int | None = None  # counted only when max_prompt_tokens is set
    grammar: str | None = None  # its well-formed answers (Target.grammar), when asked for

    def as_row(self) -> dict:
        """The dataset row written by scripts/make_noisy_gold_dataset.py."""
        return {"id": self.id, "question": self.question, "context": self.context, "prompt": self.prompt,
                "target": self.target}


@dataclass(frozen=True)
class TruncationStats:
    """How many prompts had context dropped to fit ``max_prompt_tokens``, for reports."""

    examples: int
    truncated: int = 0  # examples with context dropped
    dropped_pieces: int = 0
    dropped_distractors: int = 0
    over_length: int = 0  # examples still too long with every droppable piece dropped
    max_prompt_tokens: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def build_messages(question: str, context_text: str, target_field: str, few_shot: Sequence[Exemplar] = (),
                   *, use_system_role: bool = True, instruction: str | None = None) -> list[dict]:
    """Chat messages: the instruction (as a system message, or leading the first user message), the
    few-shot exemplars as earlier user/assistant turns, then the question. ``instruction`` replaces the
    built-in one of ``target_field``."""
    turns: list[dict] = []
    for exemplar in few_shot:
        turns.append({"role": "user", "content": _user_content(exemplar.question, exemplar.context)})
        turns.append({"role": "assistant", "content": exemplar.target})
    turns.append({"role": "user", "content": _user_content(question, context_text)})
    instruction = instruction or get_target(target_field).instruction
    if use_system_role:
        return [{"role": "system", "content": instruction}, *turns]
    turns[0] = {"role": "user", "content": f"{instruction}\n\n{turns[0]['content']}"}
    return turns


def render_prompt(messages: list[dict], tokenizer=None) -> str:
    """The chat template with ``add_generation_prompt=True`` when the tokenizer has one; otherwise plain
    text: instruction, then each turn as ``Question: ...`` / ``Context:`` / ``Answer:`` lines."""
    if uses_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = []
    for message in messages:
        if message["role"] == "user":
            parts.append(f"{message['content']}\n{ANSWER_CUE}")
        else:
            parts.append(f"{message['content']}\n\n")
    return "".join(parts)


def exemplar(example: Example, target_field: str, context_config: ContextConfig) -> Exemplar:
    """``example`` solved, as a few-shot turn: its context for ``context_config`` and its target."""
    context = build_context(example, context_config).render()
    return Exemplar(example.id, example.question, context, get_target(target_field).gold_text(example))


def select_few_shot(examples: Sequence[Example], k: int, *, target_field: str, context_config: ContextConfig,
                    seed: int = 0) -> list[Example]:
    """``k`` examples (e.g. of the train file) in order of sha256(seed:id), skipping those that lack the
    target or the evidence ``context_config`` needs."""
    chosen: list[Example] = []
    ranked = sorted(examples, key=lambda example: hashlib.sha256(f"{seed}:{example.id}".encode()).digest())
    for example in ranked:
        if len(chosen) == k:
            break
        try:
            exemplar(example, target_field, context_config)
        except DatasetError:
            continue
        chosen.append(example)
    if len(chosen) < k:
        raise ValueError(
            f"only {len(chosen)} of {len(examples)} examples can be few-shot exemplars for target_field "
            f"'{target_field}' and input_mode '{context_config.input_mode}'; {k} requested"
        )
    return chosen


def build_prompt_records(
    examples: Sequence[Example], *, target_field: str, context_config: ContextConfig, tokenizer=None,
    max_prompt_tokens: int | None = None, few_shot: Sequence[Example] = (), use_system_role: bool = True,
    instruction: str | None = None, with_grammar: bool = False,
) -> tuple[list[PromptRecord], TruncationStats]:
    """Prompt and target for every example, with ``few_shot`` examples (see ``select_few_shot``) solved
    before the question; an example is never its own exemplar. With ``max_prompt_tokens`` (needs
    ``tokenizer``) a prompt that is too long loses the fewest context pieces, in ``Context.drop_order()``,
    that make it fit; the instruction, exemplars, question and gold evidence are never cut, and a prompt
    that cannot fit is kept at its shortest and counted as over-length. ``with_grammar``: each record carries the
    target's grammar for its example (constrained decoding)."""
    if max_prompt_tokens is not None and tokenizer is None:
        raise ValueError("max_prompt_tokens needs a tokenizer to count prompt tokens")
    if max_prompt_tokens is not None and max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
    shots = [exemplar(example, target_field, context_config) for example in few_shot]

    def prompt_for(example: Example, context: Context) -> str:
        exemplars = [shot for shot in shots if shot.id != example.id]
        messages = build_messages(example.question, context.render(), target_field, exemplars,
                                  use_system_role=use_system_role, instruction=instruction)
        return render_prompt(messages, tokenizer)

    target_kind = get_target(target_field)
    targets = [target_kind.gold_text(example) for example in examples]
    full_contexts = [build_context(example, context_config) for example in examples]
    prompts = [prompt_for(example, context) for example, context in zip(examples, full_contexts, strict=True)]
    fitted: list[tuple[Context, str, int | None]] = [
        (context, prompt, None) for context, prompt in zip(full_contexts, prompts, strict=True)
    ]
    if max_prompt_tokens is not None:
        lengths = [len(ids) for ids in encode_prompt(prompts, tokenizer)]
        fitted = [(context, prompt, tokens)
                  for (context, prompt, _), tokens in zip(fitted, lengths, strict=True)]
        over = [i for i, tokens in enumerate(lengths) if tokens > max_prompt_tokens]
        shortened = _shorten([fitted[i] for i in over], [partial(prompt_for, examples[i]) for i in over],
                             max_prompt_tokens, tokenizer)
        for i, result in zip(over, shortened, strict=True):
            fitted[i] = result

    records, truncated, dropped, dropped_distractors, over_length = [], 0, 0, 0, 0
    rows = zip(examples, full_contexts, fitted, targets, strict=True)
    for example, full, (context, prompt, tokens), target in rows:
        kept = set(context.pieces)
        n_dropped = len(full.pieces) - len(kept)
        is_over = tokens is not None and tokens > max_prompt_tokens
        truncated += n_dropped > 0
        dropped += n_dropped
        dropped_distractors += sum(piece.distractor and piece not in kept for piece in full.pieces)
        over_length += is_over
        records.append(PromptRecord(example.id, example.question, context.render(), prompt, target,
                                    truncated=n_dropped > 0, dropped_pieces=n_dropped, over_length=is_over,
                                    prompt_tokens=tokens,
                                    grammar=target_kind.grammar(example) if with_grammar else None))
    return records, TruncationStats(len(records), truncated, dropped, dropped_distractors, over_length,
                                    max_prompt_tokens)


def _shorten(over: list[tuple[Context, str, int]], prompt_fors: list[Callable[[Context], str]], limit: int,
             tokenizer) -> list[tuple[Context, str, int]]:
    """For each over-long (context, prompt, tokens): the context with the fewest pieces dropped (in
    ``drop_order``) whose prompt fits, or with every droppable piece dropped when none fits.

    Each search starts from a guess and needs about two exact counts; the counts of all searches are
    made together, one batch per round."""
    tried = [{0: item} for item in over]  # per prompt: pieces dropped -> (context, prompt, tokens)
    guesses = _guesses(over, limit, tokenizer)
    searches = [_fewest_dropped(guess, len(context.drop_order()))
                for (context, _, _), guess in zip(over, guesses, strict=True)]
    chosen = [0] * len(over)
    probes = {j: probe for j, search in enumerate(searches) if (probe := next(search, None)) is not None}
    while probes:
        for j, k in probes.items():
            shorter = over[j][0].truncated(k)
            tried[j][k] = (shorter, prompt_fors[j](shorter))
        encoded = encode_prompt([tried[j][k][1] for j, k in probes.items()], tokenizer)
        next_probes = {}
        for (j, k), ids in zip(probes.items(), encoded, strict=True):
            tried[j][k] = (*tried[j][k], len(ids))
            try:
                next_probes[j] = searches[j].send(len(ids) <= limit)
            except StopIteration as done:
                chosen[j] = done.value
        probes = next_probes
    return [tried[j][k] for j, k in enumerate(chosen)]


def _guesses(over: list[tuple[Context, str, int]], limit: int, tokenizer) -> list[int]:
    """Per prompt, how many pieces to drop judging by the token counts of the pieces alone (+1 newline)."""
    contexts = [context for context, _, _ in over]
    orders = [context.drop_order() for context in contexts]
    texts = [context.pieces[i].text for context, order in zip(contexts, orders, strict=True) for i in order]
    piece_tokens = iter([len(ids) + 1 for ids in encode_text(texts, tokenizer, add_special_tokens=False)])
    guesses = []
    for (_, _, tokens), order in zip(over, orders, strict=True):
        saved = list(accumulate(next(piece_tokens) for _ in order))
        guesses.append(next((k for k, s in enumerate(saved, start=1) if tokens - s <= limit), len(order)))
    return guesses


def _fewest_dropped(guess: int, n: int) -> Generator[int, bool, int]:
    """Exponential search, from ``guess``, for the fewest of ``n`` droppable pieces to drop: yields a
    count to try and is sent whether that prompt fits (dropping more never makes it longer). Returns n
    when even that does not fit. A right guess costs two tries: it fits, one fewer does not."""
    low, high = 0, n + 1  # dropping `low` does not fit (0: the full prompt); dropping `high` fits
    probe, step, last, bisecting = min(max(guess, 1), n), 1, None, False
    while high - low > 1:
        fits = yield probe
        if fits:
            high = probe
        else:
            low = probe
        bisecting = bisecting or (last is not None and fits != last)
        last = fits
        if bisecting:
            probe = (low + high) // 2
        else:
            probe, step = (probe - step if fits else probe + step), step * 2
        probe = min(max(probe, low + 1), high - 1)
    return min(high, n)


def _user_content(question: str, context_text: str) -> str:
    return f"Question: {question}\nContext:\n{context_text}"
