"""finqa_dsl.core.context on real FinQA examples: gold / all / noisy_gold contexts, table rendering, drop order."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from finqa_dsl.core.context import (
    INPUT_MODES,
    Context,
    ContextConfig,
    build_context,
    render_table_row,
    table_row_sentences,
)
from finqa_dsl.core.data import DatasetError, load_examples


@pytest.fixture(scope="module")
def examples(real_finqa_dir):
    return load_examples(real_finqa_dir / "train.json") + load_examples(real_finqa_dir / "dev.json")


@pytest.fixture(scope="module")
def by_id(examples):
    return {example.id: example for example in examples}


def document_position(key: str, n_pre_text: int) -> tuple[int, int]:
    """Where a gold_inds key sits in the document: pre_text, then table rows, then post_text."""
    kind, index = key.split("_")
    if kind == "table":
        return 1, int(index)
    return (0, int(index)) if int(index) < n_pre_text else (2, int(index))


def keys(context: Context) -> list[str]:
    return [piece.key for piece in context.pieces]


def test_gold_context_is_the_evidence_in_document_order(examples):
    for example in examples:
        context = build_context(example, ContextConfig("gold"))
        expected = sorted(example.gold_inds, key=lambda key: document_position(key, len(example.pre_text)))
        shows_rows = any(key.startswith("table_") for key in expected)
        if shows_rows and "table_0" not in expected:
            expected.insert(sum(key.startswith("text_") and int(key[5:]) < len(example.pre_text)
                                for key in expected), "table_0")
        assert keys(context) == expected, example.id
        for piece in context.pieces:
            assert piece.evidence == (piece.key in example.gold_inds)
            assert not piece.distractor
            if piece.kind == "text":
                assert piece.text == example.gold_inds[piece.key]  # the sentence itself


def test_gold_context_of_a_mixed_example(by_id):
    example = by_id["BLK/2013/page_123.pdf-2"]  # evidence in pre_text, table and post_text
    context = build_context(example, ContextConfig("gold"))
    assert keys(context) == ["text_1", "table_0", "table_1", "text_12"]
    assert [piece.section for piece in context.pieces] == ["pre_text", "table", "table", "post_text"]
    assert context.render().split("\n") == [
        example.pre_text[1], "", render_table_row(example.table[0]), render_table_row(example.table[1]), "",
        example.post_text[12 - len(example.pre_text)],
    ]


def test_all_context_is_the_whole_document(examples):
    for example in examples[:50]:
        context = build_context(example, ContextConfig("all"))
        assert context.render() == "\n\n".join(
            block for block in ("\n".join(example.pre_text), "\n".join(map(render_table_row, example.table)),
                                "\n".join(example.post_text)) if block
        )
        assert {piece.key for piece in context.pieces if piece.evidence} == set(example.gold_inds)


def test_table_rows_are_rendered_verbatim_with_pipes(by_id):
    example = by_id["AAL/2018/page_13.pdf-2"]
    assert build_context(example, ContextConfig("gold")).render() == (
        "| year | gallons | average priceper gallon | aircraft fuelexpense "
        "| percent of totaloperating expenses |\n"
        "| 2018 | 4447 | $ 2.23 | $ 9896 | 23.6% ( 23.6 % ) |"
    )
    assert render_table_row(("", "2018", "2017")) == "|  | 2018 | 2017 |"  # an empty cell stays visible


def test_sentences_are_finqas_own_row_text(examples):
    """FinQA wrote each table row's gold_inds text with its row template: ``sentences`` renders the same
    words (the released text has since been split apart at punctuation, e.g. ``march 31 ,``)."""
    compared = 0
    for example in examples:
        context = build_context(example, ContextConfig("gold", table_format="sentences"))
        table_evidence = {key for key in example.gold_inds if key.startswith("table_")}
        assert {piece.key for piece in context.pieces if piece.kind == "table"} == table_evidence  # no header
        for piece in context.pieces:
            if piece.kind == "table":
                assert piece.text.replace(" ", "") == example.gold_inds[piece.key].replace(" ", ""), example.id
                compared += 1
    assert compared > 500


def test_sentences_name_row_and_column_for_every_cell(by_id):
    example = by_id["AAL/2018/page_13.pdf-2"]
    assert build_context(example, ContextConfig("gold", table_format="sentences")).render() == (
        "year the 2018 of gallons is 4447 ; the 2018 of average priceper gallon is $ 2.23 ; "
        "the 2018 of aircraft fuelexpense is $ 9896 ; the 2018 of percent of totaloperating expenses is "
        "23.6% ( 23.6 % ) ;"
    )
    assert table_row_sentences(("", "2018"), ("sales", "$  12")) == "the sales of 2018 is $ 12 ;"


def test_table_operations_find_their_row_name_as_a_whole_cell(examples):
    """The gold programs name a row by its exact first cell; the model sees it between pipes."""
    checked = 0
    for example in examples:
        rendered = "\n" + build_context(example, ContextConfig("all")).render()
        for row_name in re.findall(r"table_\w+\(([^,]+), none\)", example.program):
            assert f"\n| {row_name} |" in rendered, (example.id, row_name)
            checked += 1
    assert checked > 10


def test_noisy_gold_adds_the_requested_distractors_in_document_order(examples):
    config = ContextConfig("noisy_gold", text_distractors=3, table_distractors=2, seed=5)
    for example in examples:
        context = build_context(example, config)
        gold = build_context(example, ContextConfig("gold"))
        evidence = {piece.key for piece in gold.pieces if piece.evidence}
        assert {piece.key for piece in context.pieces if piece.evidence} == evidence
        n_text = len(example.pre_text) + len(example.post_text)
        free_text = n_text - sum(key.startswith("text_") for key in evidence)
        evidence_rows = sum(key.startswith("table_") and key != "table_0" for key in evidence)
        free_rows = len(example.table) - 1 - evidence_rows
        distractors = [piece for piece in context.pieces if piece.distractor]
        assert sum(piece.kind == "text" for piece in distractors) == min(3, free_text)
        assert sum(piece.kind == "table" for piece in distractors) == min(2, free_rows)
        assert not any(piece.evidence and piece.distractor for piece in context.pieces)
        order = [document_position(key, len(example.pre_text)) for key in keys(context)]
        assert order == sorted(order), example.id
        if any(piece.kind == "table" for piece in context.pieces):
            assert context.pieces[[p.kind for p in context.pieces].index("table")].is_header, example.id
        assert not any(piece.is_header and piece.distractor for piece in context.pieces)


def test_noisy_gold_is_pinned_per_seed_and_id(by_id):
    example = by_id["AAL/2018/page_13.pdf-2"]
    assert keys(build_context(example, ContextConfig("noisy_gold", 3, 1, seed=0))) == [
        "text_0", "table_0", "table_1", "table_3", "text_6", "text_7"]
    assert keys(build_context(example, ContextConfig("noisy_gold", 3, 1, seed=1))) == [
        "table_0", "table_1", "table_3", "text_4", "text_14", "text_18"]


def test_noisy_gold_samples_depend_on_seed_and_nest_as_counts_grow(examples):
    different = 0
    for example in examples[:100]:
        small = set(keys(build_context(example, ContextConfig("noisy_gold", 2, 1, seed=0))))
        large = set(keys(build_context(example, ContextConfig("noisy_gold", 4, 2, seed=0))))
        assert small <= large
        different += small != set(keys(build_context(example, ContextConfig("noisy_gold", 2, 1, seed=1))))
    assert different > 50


def test_noisy_gold_is_the_same_in_another_process_with_another_hash_seed(examples, tmp_path):
    """Sampling uses sha256, not Python's salted hash(): another interpreter picks the same pieces."""
    config = ContextConfig("noisy_gold", 3, 1, seed=11)
    here = [keys(build_context(example, config)) for example in examples[:30]]
    script = (
        "import json, sys\n"
        "from finqa_dsl.core.context import ContextConfig, build_context\n"
        "from finqa_dsl.core.data import load_examples\n"
        "examples = load_examples(sys.argv[1])[:30]\n"
        "config = ContextConfig('noisy_gold', 3, 1, seed=11)\n"
        "print(json.dumps([[p.key for p in build_context(e, config).pieces] for e in examples]))\n"
    )
    for hash_seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", script, examples[0].source], capture_output=True,
                                text=True, check=True, env={"PYTHONHASHSEED": hash_seed, "PATH": ""})
        assert result.stdout.strip() == str(here).replace("'", '"')


@pytest.mark.parametrize("mode", ["gold", "noisy_gold"])
def test_gold_modes_need_gold_inds(real_finqa_dir, mode):
    test = load_examples(real_finqa_dir / "test.json")
    reduced = next(example for example in test if example.gold_inds is None)
    with pytest.raises(DatasetError) as error:
        build_context(reduced, ContextConfig(mode))
    assert str(error.value).startswith(
        f"{real_finqa_dir / 'test.json'}: record {reduced.id}: field 'qa.gold_inds': "
        f"gold evidence, required by input_mode '{mode}'"
    )
    assert not any(piece.evidence for piece in build_context(reduced, ContextConfig("all")).pieces)


def test_drop_order_distractors_then_text_then_rows_never_evidence(by_id):
    example = by_id["BLK/2013/page_123.pdf-2"]
    context = build_context(example, ContextConfig("noisy_gold", 2, 1, seed=3))
    order = [context.pieces[i] for i in context.drop_order()]
    assert [piece.distractor for piece in order] == [True] * 3
    assert not any(piece.evidence or piece.is_header for piece in order)

    full = build_context(example, ContextConfig("all"))
    order = [full.pieces[i] for i in full.drop_order()]
    kinds = [piece.kind for piece in order]
    assert kinds == sorted(kinds, key=["text", "table"].index)  # all text before any table row
    assert len(order) == len(full.pieces) - len(example.gold_inds) - 1  # all but evidence and the header
    text_keys = [int(piece.key[5:]) for piece in order if piece.kind == "text"]
    assert text_keys == sorted(text_keys, reverse=True)  # from the end of the document


def test_truncated_keeps_evidence_and_drops_the_header_with_the_last_row(by_id):
    example = by_id["AAL/2018/page_13.pdf-2"]
    context = build_context(example, ContextConfig("noisy_gold", 3, 1, seed=0))
    assert context.truncated(0) == context
    assert keys(context.truncated(1)) == ["text_0", "table_0", "table_1", "table_3", "text_6"]
    assert keys(context.truncated(len(context.drop_order()))) == ["table_0", "table_1"]

    no_table_evidence = build_context(example, ContextConfig("all")).truncated(10**6)
    assert keys(no_table_evidence) == ["table_0", "table_1"]  # table_1 is evidence, so the header stays


def test_header_goes_when_no_other_row_is_left(examples):
    example = next(e for e in examples if not any(key.startswith("table_") for key in e.gold_inds))
    everything_dropped = build_context(example, ContextConfig("all")).truncated(10**6)
    assert not any(piece.kind == "table" for piece in everything_dropped.pieces)
    assert keys(everything_dropped) == sorted(example.gold_inds, key=lambda key: int(key[5:]))


def test_config_is_checked():
    assert INPUT_MODES == ("gold", "all", "noisy_gold")
    with pytest.raises(ValueError, match="input_mode must be one of gold, all, noisy_gold"):
        ContextConfig("oracle")
    with pytest.raises(ValueError, match=">= 0"):
        ContextConfig("noisy_gold", text_distractors=-1)
    with pytest.raises(ValueError, match="table_format must be one of pipe, sentences"):
        ContextConfig("gold", table_format="markdown")
