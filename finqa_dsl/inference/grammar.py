"""Grammar-constrained decoding for the HF engines (``--constrained_decoding``), with llguidance.

Each row of a batch follows its own record's grammar (:attr:`Target.grammar
<finqa_dsl.core.targets.Target.grammar>`: a program grammar names the example's own table rows): llguidance's
``LLMatcher`` walks the grammar token by token and gives, before each token, the bitmask of the tokens that keep
the text in the grammar (stop tokens only once the text is complete). :class:`RowGrammars` keeps one matcher per
record while its row decodes; :meth:`RowGrammars.processor` is the ``LogitsProcessor`` of one ``model.generate``
call over the rows in flight. It feeds each matcher the tokens its row produced since it last looked, so rows may
leave and join between calls (the prefix engine) and a call may continue rows begun by another. It runs before
the sampling warpers (transformers applies the caller's processors first), so sampling draws among allowed tokens.
A row whose text is complete (its matcher stopped) is left unmasked: generate pads it until the batch ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import llguidance
import llguidance.hf
import torch
from transformers import LogitsProcessor

_BITS = torch.arange(32, dtype=torch.int32)


class RowGrammars:
    """The matchers of the records in flight, created when a row first decodes and dropped when it leaves."""

    def __init__(self, tokenizer, grammars: Sequence[str | None], stop_ids: Sequence[int], vocab_size: int):
        if any(grammar is None for grammar in grammars):
            raise ValueError("constrained decoding needs a grammar for every record")
        self.grammars = grammars
        self.tokenizer = _llguidance_tokenizer(tokenizer, vocab_size, tuple(stop_ids))
        self.vocab_size = vocab_size
        self.matchers: dict[int, _RowMatcher] = {}

    def processor(self, members: Sequence[int], produced: Sequence[int], prompt_width: int) -> LogitsProcessor:
        """The processor of a generate call over rows of these record indices (``members``), which had produced
        ``produced`` tokens each before the call, over inputs ``prompt_width`` tokens wide."""
        rows = [self._matcher(member) for member in members]
        return _GrammarProcessor(rows, list(produced), prompt_width, self.vocab_size)

    def left(self, member: int) -> None:
        """Forget the matcher of a row that finished."""
        self.matchers.pop(member, None)

    def _matcher(self, member: int) -> _RowMatcher:
        if member not in self.matchers:
            grammar = llguidance.LLMatcher.grammar_from_lark(self.grammars[member])
            matcher = llguidance.LLMatcher(self.tokenizer, grammar)
            if matcher.is_error():
                raise ValueError(f"grammar of record {member} is not valid: {matcher.get_error()}")
            self.matchers[member] = _RowMatcher(matcher)
        return self.matchers[member]


@lru_cache(maxsize=4)
def _llguidance_tokenizer(tokenizer, vocab_size: int, stop_ids: tuple[int, ...]) -> llguidance.LLTokenizer:
    """llguidance's view of ``tokenizer`` (0.3 to 0.6 s to build on the 2-core CPU), built once per tokenizer for
    every engine call of a run (BENCHMARKS.md)."""
    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=list(stop_ids))


class _RowMatcher:
    """A matcher and how many of its row's generated tokens it has consumed."""

    def __init__(self, matcher: llguidance.LLMatcher):
        self.matcher, self.consumed = matcher, 0

    def catch_up(self, row_ids: torch.Tensor, generated: int) -> None:
        """Consume the row's generated tokens (the last ``generated`` of ``row_ids``) not consumed yet."""
        missing = generated - self.consumed
        if missing > 0 and not self.matcher.is_stopped():
            self.matcher.consume_tokens(row_ids[row_ids.shape[0] - missing:].tolist())
        self.consumed = generated

    @property
    def done(self) -> bool:
        return self.matcher.is_stopped() or self.matcher.is_error()


class _GrammarProcessor(LogitsProcessor):
    def __init__(self, rows: list[_RowMatcher], produced: list[int], prompt_width: int, vocab_size: int):
        self.rows, self.produced, self.prompt_width = rows, produced, prompt_width
        self.bitmask = torch.full(((len(rows)), (vocab_size + 31) // 32), -1, dtype=torch.int32)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        new = input_ids.shape[1] - self.prompt_width
        ids = input_ids.cpu()
        self.bitmask.fill_(-1)
        for index, row in enumerate(self.rows):
            row.catch_up(ids[index], self.produced[index] + new)
            if not row.done:
                row.matcher.unsafe_compute_mask_ptr(self.bitmask[index].data_ptr(), self.bitmask.shape[1] * 4)
        allowed = ((self.bitmask.unsqueeze(-1) >> _BITS) & 1).view(len(self.rows), -1)[:, :scores.shape[1]]
        return scores.masked_fill(allowed.to(scores.device) == 0, float("-inf"))
