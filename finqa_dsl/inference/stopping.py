"""When a generation is complete: stop tokens (end of turn, eos) and a target's stop strings.

A target's stop strings (:attr:`finqa_dsl.core.targets.Target.stop_strings`) are texts after which nothing can
change what is parsed. For every target today that is the end-of-turn markers written as plain text
(``clean_generation`` in :mod:`finqa_dsl.core.dsl` cuts the text at them), so stopping there changes nothing that
is scored. "End of the program" has no safe textual rule beyond that: a newline or ``EOF`` can be followed by
more text that ``clean_generation`` keeps (and scores as part of the program), and a code block's closing fence
looks like its opening one, so stopping there would change parsed predictions.

Every engine cuts its token ids with :meth:`StopRule.length`, so an engine that cannot stop on a string mid-batch
(continuous batching) still returns exactly what one that can returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from finqa_dsl.core import chat


def stop_token_ids(model, tokenizer) -> list[int]:
    """End-of-turn, the tokenizer's eos and the model's own eos ids (:func:`finqa_dsl.core.chat.stop_token_ids`)."""
    return chat.stop_token_ids(tokenizer, model.generation_config.eos_token_id)


@dataclass(frozen=True)
class StopRule:
    """Stop at the first of ``token_ids`` or right after the first token that completes one of ``strings``."""

    token_ids: tuple[int, ...]
    strings: tuple[str, ...] = ()

    def length(self, ids: Sequence[int], tokenizer) -> int:
        """Tokens of ``ids`` up to and including the stop (all of them when nothing stops)."""
        n = next((i + 1 for i, token in enumerate(ids) if token in self.token_ids), len(ids))
        before = n - 1 if n and ids[n - 1] in self.token_ids else n  # the text before a stop token
        if not self.strings or not self._written(ids[:before], tokenizer):
            return n
        return next(i for i in range(1, before + 1) if self._written(ids[:i], tokenizer))

    def stopped(self, ids: Sequence[int], tokenizer) -> bool:
        """Whether ``ids`` hold a stop (a stop token, or the text of a stop string)."""
        return any(token in self.token_ids for token in ids) or bool(self.strings) and self._written(ids, tokenizer)

    def _written(self, ids: Sequence[int], tokenizer) -> bool:
        """Whether the text of ``ids`` holds a stop string. Special tokens count as their text, as in
        transformers' stop-string criteria (``<|endoftext|>`` is one token for some tokenizers)."""
        text = tokenizer.decode(ids, skip_special_tokens=False)
        return any(s in text for s in self.strings)
