"""Build the context a model reads for ``--input_mode gold | all | noisy_gold``.

A context is an ordered tuple of pieces in document order: pre_text sentences, then table rows, then
post_text sentences. Each piece is one line and carries its gold_inds key (``text_N`` indexes
pre_text + post_text, ``table_N`` indexes table rows with 0 = header) and its flags (evidence,
distractor, kind), so truncation can drop distractors first and never drop evidence.

Table rendering (``table_format``, the same for every mode). ``pipe``, the default: one row per line,
cells copied verbatim from the normalised ``table`` field and separated by pipes, e.g.
``| net revenue | $ 5735 | $ 5829 |``. Why:

* The normalised ``table`` is what the gold programs and the executor use: literals are written as
  the cell's number (``5735`` for ``$ 5735``, commas already removed, unlike ``table_ori``'s
  ``$5,735``), and table operations name a row by its exact first cell (``table_sum(net revenue,
  none)``). Verbatim cells let the model copy both character for character.
* FinQA's own row sentences (``the 2018 of gallons is 4447 ;``, the gold_inds text) repeat the
  column name for every cell: about 2.1x the tokens of the pipe rows on the real tables (375 vs
  182 Qwen2.5 tokens per table on average), and they blur where the row name ends.
* Leading and trailing pipes keep an empty cell visible (38% of real header rows start with an
  empty cell), and unlike tabs they survive every tokenizer and chat template unchanged.
* One row per line makes a row the unit that evidence, distractors and truncation work on. The
  header row is shown whenever any other table row is, so column names are never lost.

``sentences``: FinQA's own row template (``table_row_to_text`` of its retriever and generator, which
wrote the gold_inds text): ``the net revenue of 2018 is $ 5735 ; the net revenue of 2017 is $ 5829 ;``,
one row per line, after the header's first cell when it has one. Every number sits next to its row
and column names, which a small model reads more easily than a column position; the header row then
adds nothing and is shown only when it is evidence itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from finqa_dsl.core.data import DatasetError, Example

INPUT_MODES = ("gold", "all", "noisy_gold")
TABLE_FORMATS = ("pipe", "sentences")
HEADER_KEY = "table_0"


@dataclass(frozen=True)
class ContextConfig:
    """Which evidence to show and how tables read; the distractor counts and seed matter for
    ``noisy_gold`` only."""

    input_mode: str = "gold"
    text_distractors: int = 3
    table_distractors: int = 1
    seed: int = 0
    table_format: str = "pipe"

    def __post_init__(self) -> None:
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {', '.join(INPUT_MODES)}, got {self.input_mode!r}")
        if self.text_distractors < 0 or self.table_distractors < 0:
            raise ValueError("distractor counts must be >= 0")
        if self.table_format not in TABLE_FORMATS:
            raise ValueError(f"table_format must be one of {', '.join(TABLE_FORMATS)}, got {self.table_format!r}")


@dataclass(frozen=True)
class ContextPiece:
    """One line of context: a text sentence or a rendered table row."""

    section: str  # "pre_text", "table" or "post_text"
    key: str  # its gold_inds key: "text_N" or "table_N"
    text: str
    evidence: bool = False  # named by the example's gold_inds
    distractor: bool = False  # added as noise by noisy_gold

    @property
    def kind(self) -> str:
        return "table" if self.section == "table" else "text"

    @property
    def is_header(self) -> bool:
        return self.key == HEADER_KEY


@dataclass(frozen=True)
class Context:
    """Ordered context pieces; ``render()`` gives the text, ``truncated(n)`` drops the first n droppable."""

    pieces: tuple[ContextPiece, ...]

    def render(self) -> str:
        """One piece per line, a blank line between pre_text, table and post_text."""
        lines: list[str] = []
        for number, piece in enumerate(self.pieces):
            if number and piece.section != self.pieces[number - 1].section:
                lines.append("")
            lines.append(piece.text)
        return "\n".join(lines)

    def drop_order(self) -> tuple[int, ...]:
        """Indices of droppable pieces, first to drop first: distractors, then non-evidence text,
        then non-evidence table rows, each from the end of the document. Evidence is never listed;
        the header goes with the last other table row (see ``truncated``)."""
        last_first = range(len(self.pieces) - 1, -1, -1)
        plain = [i for i in last_first if not self.pieces[i].evidence and not self.pieces[i].is_header]
        distractors = [i for i in plain if self.pieces[i].distractor]
        text = [i for i in plain if not self.pieces[i].distractor and self.pieces[i].kind == "text"]
        rows = [i for i in plain if not self.pieces[i].distractor and self.pieces[i].kind == "table"]
        return tuple(distractors + text + rows)

    def truncated(self, n_dropped: int) -> Context:
        """This context without the first ``n_dropped`` pieces of ``drop_order()`` (and without a
        non-evidence header once no other table row is left)."""
        dropped = set(self.drop_order()[:n_dropped])
        kept = [piece for i, piece in enumerate(self.pieces) if i not in dropped]
        if any(self.pieces[i].kind == "table" for i in dropped) and not any(
            piece.kind == "table" and not piece.is_header for piece in kept
        ):
            kept = [piece for piece in kept if not piece.is_header or piece.evidence]
        return Context(tuple(kept))


def render_table_row(cells: tuple[str, ...] | list[str]) -> str:
    """``| cell | cell |`` with every cell verbatim."""
    return "| " + " | ".join(cells) + " |"


def table_row_sentences(header: tuple[str, ...] | list[str], cells: tuple[str, ...] | list[str]) -> str:
    """FinQA's row template: ``[header[0] ]the ROW of COLUMN is CELL ; ...``, runs of spaces collapsed."""
    text = f"{header[0]} " if header and header[0] else ""
    pairs = zip(header[1:], cells[1:], strict=False)  # a row longer or shorter than the header: as FinQA zips
    text += "".join(f"the {cells[0]} of {column} is {cell} ; " for column, cell in pairs)
    return " ".join(text.split())


def build_context(example: Example, config: ContextConfig) -> Context:
    """The context of ``example`` for ``config.input_mode`` (see the module docstring)."""
    n_text = len(example.pre_text) + len(example.post_text)
    all_keys = [f"text_{i}" for i in range(n_text)] + [f"table_{i}" for i in range(len(example.table))]
    evidence = set(example.gold_inds or ())
    distractors: set[str] = set()
    if config.input_mode == "all":
        shown = set(all_keys)
    else:
        if example.gold_inds is None:
            raise DatasetError.for_field(
                example.source, example.id, "qa.gold_inds",
                f"gold evidence, required by input_mode '{config.input_mode}' (use input_mode 'all' "
                "for records without it)",
            )
        if config.input_mode == "noisy_gold":
            candidates = [key for key in all_keys if key not in evidence and key != HEADER_KEY]
            text = [key for key in candidates if key.startswith("text_")]
            rows = [key for key in candidates if key.startswith("table_")]
            distractors = _sample(text, config.text_distractors, config, example) | _sample(
                rows, config.table_distractors, config, example
            )
        shown = evidence | distractors
    sentences = config.table_format == "sentences"
    if any(key.startswith("table_") for key in shown) and example.table and not sentences:
        shown.add(HEADER_KEY)

    def rendered(section: str, content) -> str:
        if section != "table":
            return content
        return table_row_sentences(example.table[0], content) if sentences else render_table_row(content)

    return Context(tuple(
        ContextPiece(section, key, rendered(section, content), evidence=key in evidence, distractor=key in distractors)
        for section, key, content in _document_lines(example) if key in shown
    ))


def _document_lines(example: Example):
    """(section, gold_inds key, sentence or table row) for every line of the document, in order."""
    yield from (("pre_text", f"text_{i}", sentence) for i, sentence in enumerate(example.pre_text))
    yield from (("table", f"table_{i}", row) for i, row in enumerate(example.table))
    start = len(example.pre_text)
    yield from (("post_text", f"text_{i}", sentence) for i, sentence in enumerate(example.post_text, start))


def _sample(candidates: list[str], n: int, config: ContextConfig, example: Example) -> set[str]:
    """The ``n`` candidates ranked first by sha256 of (seed, example id, key): deterministic across runs,
    processes and Python versions, and the picks for n are a subset of the picks for n + 1."""
    def rank(key: str) -> bytes:
        return hashlib.sha256(f"{config.seed}:{example.id}:{key}".encode()).digest()

    return set(sorted(candidates, key=rank)[:n])
