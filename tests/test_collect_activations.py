"""scripts/collect_activations.py on tiny random Llamas with the default model's real tokenizer: the shards
hold exactly what each model computes at the hooked site, paired on the same token ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SAMPLE, real_tokenizer, save_tiny_model
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, LlamaForCausalLM

from finqa_dsl.core.chat import encode_for_training, encode_prompt, end_of_turn_id
from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.prompts import build_prompt_records
from finqa_dsl.diffing.shards import ActivationShards
from scripts import collect_activations

TRAIN = SAMPLE / "train.json"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-layer random Llama (base) and a LoRA adapter on it with random weights (fine-tuned)."""
    tokenizer = real_tokenizer("llama")
    base_dir, adapter_dir = tmp_path_factory.mktemp("tiny-base"), tmp_path_factory.mktemp("tiny-adapter")
    save_tiny_model(base_dir, "llama", tokenizer, max_position_embeddings=4096, tie_word_embeddings=True)
    lora = get_peft_model(LlamaForCausalLM.from_pretrained(base_dir),
                          LoraConfig(r=4, target_modules=["down_proj", "o_proj"], init_lora_weights=False))
    lora.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    return base_dir, adapter_dir


def _collect(base_dir, ft_dir, out, *flags) -> int:
    return collect_activations.main(["--base_model", str(base_dir), "--ft_model", str(ft_dir), "--data_file",
                                     str(TRAIN), "--num_examples", "3", "--batch_size", "2", "--output_dir",
                                     str(out), *flags])


def _collected(models, out: Path, *flags) -> ActivationShards:
    assert _collect(*models, out, *flags) == 0
    return ActivationShards(out)


def _sample_records(models, n: int) -> tuple:
    """The base model's tokenizer and the prompt records of the sample's first ``n`` examples, as collected."""
    tokenizer = AutoTokenizer.from_pretrained(models[0])
    records, _ = build_prompt_records(load_examples(TRAIN)[:n], target_field="program",
                                      context_config=ContextConfig(), tokenizer=tokenizer)
    return tokenizer, records


def _hidden_states(folder: Path, input_ids: list[int]) -> tuple[torch.Tensor, ...]:
    from finqa_dsl.models.loading import load_model, prepare_for_inference

    model = prepare_for_inference(load_model(str(folder)))
    with torch.no_grad():
        return model(torch.tensor([input_ids]), output_hidden_states=True).hidden_states


@pytest.mark.slow
def test_residual_activations_are_each_models_hidden_states_on_the_same_tokens(models, tmp_path):
    shards = _collected(models, tmp_path / "acts", "--layer", "0", "--site", "resid", "--dtype", "float32",
                        "--rows_per_shard", "500")
    assert shards.manifest["complete"] and shards.d_model == 32 and len(shards.shard_rows) > 1
    rows = {name: torch.cat([shards.load_shard(i)[name] for i in range(len(shards.shard_rows))])
            for name in ("activations", "token_ids", "example_ids", "positions")}
    assert sorted(set(rows["example_ids"].tolist())) == [0, 1, 2]
    assert len(shards.manifest["metadata"]["example_ids"]) == 3
    first = rows["example_ids"] == 0
    positions = rows["positions"][first]
    assert positions[0] == 1 and torch.equal(positions, torch.arange(1, len(positions) + 1))  # first token skipped
    tokenizer, records = _sample_records(models, 1)
    input_ids, _ = encode_for_training(tokenizer, records[0].prompt, records[0].target)  # as training sees it
    assert rows["token_ids"][first].tolist() == input_ids[1:] and input_ids[-1] == end_of_turn_id(tokenizer)
    base_hidden, ft_hidden = (_hidden_states(folder, input_ids)[1][0, 1:] for folder in models)
    torch.testing.assert_close(rows["activations"][first][:, 0], base_hidden, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rows["activations"][first][:, 1], ft_hidden, atol=1e-4, rtol=1e-4)
    assert (base_hidden - ft_hidden).norm() > 1e-2 * base_hidden.norm()  # the adapter changed something


@pytest.mark.slow
def test_completion_positions_of_the_models_own_generation_at_the_mlp(models, tmp_path):
    shards = _collected(models, tmp_path / "acts", "--layer", "-1", "--recipe", "generation", "--max_new_tokens", "4",
                        "--positions", "completion")
    shard = shards.load_shard(0)
    assert shard["activations"].dtype == torch.bfloat16
    # Only the completion: from the prompt's length to the end-of-turn token that closes the generation
    # (the generated text is encoded as training encodes a target, so its token count may differ from 4).
    tokenizer, records = _sample_records(models, 3)
    for example, record in enumerate(records):
        mine = shard["example_ids"] == example
        assert shard["positions"][mine].min() == len(encode_prompt(record.prompt, tokenizer))
        assert shard["token_ids"][mine][-1] == end_of_turn_id(tokenizer)
    assert shards.rows == len(shard["example_ids"])


def test_user_errors_come_before_any_model_loads(models, tmp_path, capsys):
    base_dir, adapter_dir = models
    assert _collect(base_dir, adapter_dir, tmp_path / "a", "--layer", "2") == 2
    assert "--layer 2 is out of range" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert _collect(base_dir, adapter_dir, tmp_path / "full", "--layer", "0") == 2
    assert "is not empty" in capsys.readouterr().err
    assert collect_activations.main(["--ft_model", str(adapter_dir), "--data_file", str(tmp_path / "none.json"),
                                     "--layer", "0", "--output_dir", str(tmp_path / "b")]) == 2
    assert "none.json" in capsys.readouterr().err
