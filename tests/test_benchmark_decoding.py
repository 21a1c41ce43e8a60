"""scripts/benchmark_decoding.py in its smallest mode, on the tiny random Llama (as the other benchmarks in
tests/test_scripts_as_run.py): what it reports besides seconds, never how fast."""

from __future__ import annotations

import pytest
from test_scripts_as_run import last_json, run_script, without_the_default_model


@pytest.mark.slow
def test_benchmark_decoding_small_keeps_constrained_generations_well_formed(tmp_path):
    out = run_script("benchmark_decoding", "--num_examples", "3", "--max_new_tokens", "12", "--batch_size", "2",
                     "--repeats", "1", "--num_samples", "2", env=without_the_default_model(tmp_path))
    result = last_json(out.stdout)
    assert (result["examples"], result["model"]) == (3, "tiny-random-llama")
    for engine in ("prefix", "static"):
        (run,) = result["constrained"][engine]["repetitions"]
        constrained = run["constrained"]
        # only a program cut at the token limit may be ill-formed under the grammar
        assert sum(constrained["ill_formed"].values()) == constrained["ill_formed_at_token_limit"]
        assert set(constrained["grammar_seconds"]) == {"tokenizer", "matchers", "masks"}
        assert run["well_formed_changed"] == len(run["changed"]) <= run["unconstrained_well_formed"] <= 3
    samples = result["self_consistency"]
    assert (samples["n1"]["generations"], samples["n2"]["generations"]) == (3, 6)
