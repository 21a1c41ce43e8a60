"""Grammar-constrained decoding (``--constrained_decoding``) in the HF engines: a random model writes only
programs the DSL can run; the rows' grammars follow them as the prefix engine lets rows leave and join; the real
default model's greedy programs are unchanged wherever they were already well-formed; engines that cannot
constrain refuse.
"""

from __future__ import annotations

import pytest
from conftest import tiny_model

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.dsl import Reason, clean_generation, execute, tokenize
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.prompts import build_prompt_records, select_few_shot
from finqa_dsl.core.targets import get_target
from finqa_dsl.inference.hf_backend import HFBackend
from finqa_dsl.inference.interface import GenerationSettings
from tests.test_finetune_e2e import SAMPLE

NOT_WELL_FORMED = (Reason.MALFORMED, Reason.UNKNOWN_OP, Reason.EMPTY, Reason.BAD_REFERENCE)
STOPS = get_target("program").stop_strings


def _records(tokenizer, n: int, k: int = 0):
    examples = load_examples(SAMPLE / "test.json")[:n]
    few_shot = select_few_shot(load_examples(SAMPLE / "train.json"), k, target_field="program",
                               context_config=ContextConfig()) if k else []
    records, _ = build_prompt_records(examples, target_field="program", context_config=ContextConfig(),
                                      tokenizer=tokenizer, few_shot=few_shot, with_grammar=True)
    return records, {example.id: example for example in examples}


def _generate(model, tokenizer, records, **settings):
    settings = GenerationSettings(**{"max_new_tokens": 40, "stop_strings": STOPS, **settings})
    return {record.id: generation for record, generation in HFBackend(model, tokenizer)(records, settings)}


def _reason(generation, example) -> Reason | None:
    return execute(tokenize(clean_generation(generation.text)), example.table).reason


@pytest.fixture(scope="module")
def random_model(default_tokenizer):
    return tiny_model("llama", vocab_size=len(default_tokenizer), initializer_range=0.5,
                      max_position_embeddings=4096, eos_token_id=default_tokenizer.eos_token_id).eval()


def test_a_random_model_writes_only_programs_the_dsl_can_run(random_model, default_tokenizer):
    records, examples = _records(default_tokenizer, 6)
    free = _generate(random_model, default_tokenizer, records, engine="static", batch_size=3)
    assert all(_reason(free[r.id], examples[r.id]) in NOT_WELL_FORMED for r in records), "the model writes garbage"
    for engine in ("static", "prefix"):
        constrained = _generate(random_model, default_tokenizer, records, engine=engine, batch_size=3,
                                constrained=True, max_new_tokens=120)
        finished = [g for g in constrained.values() if g.new_tokens < 120]
        assert finished, "some programs must end within the budget"
        for record in records:
            generation = constrained[record.id]
            if generation.new_tokens < 120:  # a program cut by the budget keeps its whole steps (official)
                assert _reason(generation, examples[record.id]) not in NOT_WELL_FORMED, (engine, generation.text)


def test_rows_keep_their_own_grammar_as_rows_leave_and_join(random_model, default_tokenizer):
    """Six prompts through two rows of the prefix engine (finished rows leave every 2 tokens, waiting prompts
    join) and of the static engine give each prompt what it gets alone: every matcher follows its own row."""
    records, _ = _records(default_tokenizer, 6)
    alone = _generate(random_model, default_tokenizer, records, engine="static", batch_size=1, constrained=True)
    texts = {g.text for g in alone.values()}
    assert len(texts) > 1
    for engine in ("prefix", "static"):
        together = _generate(random_model, default_tokenizer, records, engine=engine, batch_size=2,
                             constrained=True, exit_every=2)
        assert {k: g.text for k, g in together.items()} == {k: g.text for k, g in alone.items()}, engine


def test_sampling_under_a_grammar_stays_in_it(random_model, default_tokenizer):
    records, examples = _records(default_tokenizer, 4)
    sampled = _generate(random_model, default_tokenizer, records, engine="prefix", batch_size=4, constrained=True,
                        do_sample=True, temperature=1.5, max_new_tokens=120)
    for record in records:
        if sampled[record.id].new_tokens < 120:
            assert _reason(sampled[record.id], examples[record.id]) not in NOT_WELL_FORMED


@pytest.mark.slow
def test_the_real_default_model_keeps_its_well_formed_greedy_programs(default_model, default_tokenizer):
    """Few-shot, the real default model writes programs that run for most sample questions: constrained greedy
    decoding must give exactly those programs, and well-formed ones where it did not. (The grammar is stricter
    than the DSL's form: a word where a number goes, or a row the table lacks, does not run and is refused.)"""
    records, examples = _records(default_tokenizer, 8, k=4)
    free = _generate(default_model, default_tokenizer, records, engine="prefix", batch_size=8, max_new_tokens=48)
    constrained = _generate(default_model, default_tokenizer, records, engine="prefix", batch_size=8,
                            max_new_tokens=48, constrained=True)
    ran = [r.id for r in records if free[r.id].new_tokens < 48 and _reason(free[r.id], examples[r.id]) is None]
    assert len(ran) >= 3
    assert {k: constrained[k].text for k in ran} == {k: free[k].text for k in ran}
    assert all(_reason(constrained[r.id], examples[r.id]) not in NOT_WELL_FORMED for r in records
               if constrained[r.id].new_tokens < 48)


def test_engines_that_cannot_constrain_refuse(random_model, default_tokenizer):
    records, _ = _records(default_tokenizer, 1)
    with pytest.raises(UsageError, match="continuous cannot constrain"):
        _generate(random_model, default_tokenizer, records, engine="continuous", constrained=True)
    with pytest.raises(UsageError, match="beam search"):
        _generate(random_model, default_tokenizer, records, engine="static", constrained=True, num_beams=2)
