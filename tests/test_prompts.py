"""finqa_dsl.core.prompts with the real Qwen2.5, Gemma-3 and Mistral tokenizers and real FinQA examples."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from finqa_dsl.core.chat import encode_prompt
from finqa_dsl.core.context import ContextConfig, build_context
from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.dsl import OPERATIONS
from finqa_dsl.core.prompts import (
    ANSWER_CUE,
    Exemplar,
    build_messages,
    build_prompt_records,
    render_prompt,
    select_few_shot,
)
from finqa_dsl.core.targets import TARGET_FIELDS, canonical_number, get_target

QWEN, GEMMA, MISTRAL = MODELS = ("qwen2.5-0.5b-instruct", "gemma-3-1b-it", "mistral-7b-instruct-v0.3")
GOLD, ALL = ContextConfig("gold"), ContextConfig("all")
BUDGET = 1200


@pytest.fixture(scope="module")
def tokenizers(shared_models_dir):
    return {name: AutoTokenizer.from_pretrained(shared_models_dir / name) for name in MODELS}


@pytest.fixture(scope="module")
def train(real_finqa_dir):
    return load_examples(real_finqa_dir / "train.json")


@pytest.fixture(scope="module")
def dev(real_finqa_dir):
    return load_examples(real_finqa_dir / "dev.json")


@pytest.fixture(scope="module")
def test_split(real_finqa_dir):
    return load_examples(real_finqa_dir / "test.json")


def test_targets(train):
    example = train[0]
    assert get_target("program").gold_text(example) == "divide(9896, 23.6%)"
    assert get_target("numerical").gold_text(example) == "41932.20339"
    assert get_target("answer").gold_text(example) == "41932"
    code = get_target("code").gold_text(example)
    assert code.startswith("```python\n") and "\nans = " in code
    with pytest.raises(ValueError, match="target_field must be one of program, numerical, answer, code"):
        get_target("python").gold_text(example)
    assert TARGET_FIELDS == ("program", "numerical", "answer", "code")
    assert len({get_target(name).instruction for name in TARGET_FIELDS}) == len(TARGET_FIELDS)


@pytest.mark.parametrize(("value", "text"), [
    (94.0, "94"), (0.14464, "0.14464"), (1e-05, "0.00001"), (-0.5, "-0.5"), (-0.0, "0"),
    (1e16, "10000000000000000"), (41932.20339, "41932.20339"), ("yes", "yes"), ("no", "no"),
])
def test_canonical_number(value, text):
    assert canonical_number(value) == text


def test_numerical_targets_read_back_as_exe_ans(train, dev, test_split):
    for example in [*train, *dev, *test_split]:
        text = get_target("numerical").gold_text(example)
        if isinstance(example.exe_ans, float):
            assert "e" not in text and not text.endswith(".0")
            assert float(text) == example.exe_ans
        else:
            assert text == example.exe_ans in ("yes", "no")


def test_answer_target_needs_qa_answer(test_split):
    reduced = next(example for example in test_split if example.answer is None)
    with pytest.raises(DatasetError, match=f"record {reduced.id}: field 'qa.answer': an answer, required by"):
        get_target("answer").gold_text(reduced)


def test_program_instruction_names_every_operation():
    for operation in OPERATIONS:
        assert operation in get_target("program").instruction


def test_messages_with_and_without_system_role():
    shot = Exemplar("X/2019/page_1.pdf-1", "what was it?", "| a | 1 |", "add(1, 2)")
    messages = build_messages("how much?", "some context", "numerical", [shot])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == get_target("numerical").instruction
    assert messages[1]["content"] == "Question: what was it?\nContext:\n| a | 1 |"
    assert messages[2]["content"] == "add(1, 2)"
    assert messages[3]["content"] == "Question: how much?\nContext:\nsome context"
    folded = build_messages("how much?", "some context", "numerical", [shot], use_system_role=False)
    assert [m["role"] for m in folded] == ["user", "assistant", "user"]
    assert folded[0]["content"] == f"{get_target('numerical').instruction}\n\n{messages[1]['content']}"


def test_qwen_chat_template(tokenizers, train):
    context = build_context(train[0], GOLD).render()
    prompt = render_prompt(build_messages(train[0].question, context, "program"), tokenizers[QWEN])
    assert prompt.startswith(f"<|im_start|>system\n{get_target('program').instruction}<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith(f"{context}<|im_end|>\n<|im_start|>assistant\n")
    assert "You are Qwen" not in prompt  # our system message replaces the template's default


def test_gemma_folds_the_system_message_into_the_first_user_turn(tokenizers, train):
    tokenizer = tokenizers[GEMMA]
    context = build_context(train[0], GOLD).render()
    with_system = render_prompt(build_messages(train[0].question, context, "program"), tokenizer)
    single_user = render_prompt(build_messages(train[0].question, context, "program", use_system_role=False),
                                tokenizer)
    assert with_system == single_user
    assert with_system.startswith(f"<bos><start_of_turn>user\n{get_target('program').instruction}\n\nQuestion: ")
    assert with_system.endswith("<end_of_turn>\n<start_of_turn>model\n")


def test_mistral_without_chat_template_gets_the_plain_format(tokenizers, train):
    tokenizer = tokenizers[MISTRAL]
    assert not tokenizer.chat_template
    context = build_context(train[0], GOLD).render()
    prompt = render_prompt(build_messages(train[0].question, context, "program"), tokenizer)
    assert prompt == (f"{get_target('program').instruction}\n\nQuestion: {train[0].question}\nContext:\n{context}\n"
                      f"{ANSWER_CUE}")
    assert render_prompt(build_messages(train[0].question, context, "program")) == prompt  # no tokenizer


@pytest.mark.parametrize("model", MODELS)
def test_prompt_tokens_are_a_prefix_of_prompt_plus_target(tokenizers, train, model):
    """The prompt ends on a token boundary, so a target appended for training starts on a fresh token,
    and special tokens are added once (Gemma's <bos> comes from its template, Mistral's <s> is added)."""
    tokenizer = tokenizers[model]
    records, _ = build_prompt_records(train[:20], target_field="program", context_config=GOLD,
                                      tokenizer=tokenizer)
    for record in records:
        prompt_ids = encode_prompt(record.prompt, tokenizer)
        assert encode_prompt(record.prompt + record.target, tokenizer)[: len(prompt_ids)] == prompt_ids
        assert prompt_ids.count(tokenizer.bos_token_id) == (model != "qwen2.5-0.5b-instruct")


def test_few_shot_exemplars_are_chosen_deterministically_and_usable(test_split):
    answer_shots = select_few_shot(test_split, 5, target_field="answer", context_config=ALL)
    assert answer_shots == select_few_shot(test_split, 5, target_field="answer",
                                           context_config=ALL)
    assert all(shot.answer is not None for shot in answer_shots)
    gold_shots = select_few_shot(test_split, 5, target_field="program", context_config=GOLD)
    assert all(shot.gold_inds is not None for shot in gold_shots)
    assert select_few_shot(test_split, 5, target_field="program", context_config=GOLD,
                           seed=1) != gold_shots
    with pytest.raises(ValueError, match="only 3 of 3 examples can be few-shot exemplars"):
        select_few_shot(test_split[:3], 4, target_field="program", context_config=ALL)


@pytest.mark.parametrize("model", ["qwen2.5-0.5b-instruct", "mistral-7b-instruct-v0.3"])
def test_few_shot_turns_come_before_the_question(tokenizers, train, dev, model):
    shots = select_few_shot(train, 2, target_field="program", context_config=GOLD)
    records, _ = build_prompt_records(dev[:3], target_field="program", context_config=GOLD,
                                      tokenizer=tokenizers[model], few_shot=shots)
    for record in records:
        questions = [*(shot.question for shot in shots), record.question]
        positions = [record.prompt.index(question) for question in questions]
        assert positions == sorted(positions)
        for shot in shots:
            end_of_turn = "<|im_end|>" if model.startswith("qwen") else "\n\n"
            assert f"{shot.program}{end_of_turn}" in record.prompt
    own, _ = build_prompt_records(shots, target_field="program", context_config=GOLD,
                                  few_shot=shots)
    assert own[0].prompt.count(shots[1].question) == 1 and own[0].prompt.count(shots[0].question) == 1


@pytest.fixture(scope="module")
def truncated_all(tokenizers, dev):
    records, stats = build_prompt_records(dev[:60], target_field="program", context_config=ALL,
                                          tokenizer=tokenizers[QWEN], max_prompt_tokens=BUDGET)
    return dev[:60], records, stats


def test_truncation_fits_the_budget_and_keeps_question_and_evidence(truncated_all):
    examples, records, stats = truncated_all
    assert 0 < stats.truncated < len(records) and stats.over_length == 0
    for example, record in zip(examples, records, strict=True):
        assert record.prompt_tokens <= BUDGET
        assert f"Question: {example.question}\n" in record.prompt
        lines = record.context.split("\n")
        for piece in build_context(example, ALL).pieces:
            if piece.evidence:
                assert piece.text in lines
    assert stats.truncated == sum(record.truncated for record in records)
    assert stats.dropped_pieces == sum(record.dropped_pieces for record in records) > stats.truncated
    assert stats.as_dict()["max_prompt_tokens"] == BUDGET


def test_truncation_drops_the_fewest_pieces(tokenizers, truncated_all):
    tokenizer = tokenizers[QWEN]
    examples, records, _ = truncated_all
    for example, record in [(e, r) for e, r in zip(examples, records, strict=True) if r.truncated][:5]:
        full = build_context(example, ALL)
        kept = full.truncated(record.dropped_pieces)
        assert kept.render() == record.context
        one_more = full.truncated(len(full.drop_order()) - len(kept.drop_order()) - 1)
        longer = render_prompt(build_messages(example.question, one_more.render(), "program"), tokenizer)
        assert len(encode_prompt(longer, tokenizer)) > BUDGET


def test_noisy_gold_truncation_drops_distractors_first(tokenizers, dev):
    config = ContextConfig("noisy_gold", text_distractors=6, table_distractors=3)
    records, stats = build_prompt_records(dev[:40], target_field="program", context_config=config,
                                          tokenizer=tokenizers[GEMMA], max_prompt_tokens=600)
    assert stats.truncated > 0 and stats.over_length == 0
    for example, record in zip(dev[:40], records, strict=True):
        kept = record.context.split("\n")
        pieces = build_context(example, config).pieces
        assert all(piece.text in kept for piece in pieces if not piece.distractor and not piece.is_header)
    assert stats.dropped_distractors >= stats.dropped_pieces - stats.truncated  # at most a header each


def test_a_prompt_that_cannot_fit_is_kept_minimal_and_counted(tokenizers, dev):
    records, stats = build_prompt_records(dev[:5], target_field="numerical", context_config=GOLD,
                                          tokenizer=tokenizers[GEMMA], max_prompt_tokens=50)
    assert stats.over_length == 5 and all(record.over_length for record in records)
    for example, record in zip(dev[:5], records, strict=True):
        assert record.context == build_context(example, GOLD).render()  # evidence kept
        assert record.prompt_tokens > 50


def test_records_without_a_budget_are_not_counted(train):
    records, stats = build_prompt_records(train[:3], target_field="numerical", context_config=GOLD)
    assert [record.prompt_tokens for record in records] == [None] * 3
    assert stats.as_dict() == {"examples": 3, "truncated": 0, "dropped_pieces": 0, "dropped_distractors": 0,
                               "over_length": 0, "max_prompt_tokens": None}
    assert records[0].as_row() == {"id": train[0].id, "question": train[0].question,
                                   "context": build_context(train[0], GOLD).render(),
                                   "prompt": records[0].prompt, "target": "41932.20339"}
    with pytest.raises(ValueError, match="max_prompt_tokens needs a tokenizer"):
        build_prompt_records(train[:3], target_field="program", context_config=GOLD,
                             max_prompt_tokens=100)


def test_task_instruction_replaces_the_built_in_one():
    messages = build_messages("what is x?", "| x | 1 |", "program", instruction="Write the program.")
    assert messages[0] == {"role": "system", "content": "Write the program."}
    assert get_target("program").instruction not in str(messages)
