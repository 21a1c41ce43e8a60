"""Model loading on CPU: full fine-tune, LoRA and 4-bit QLoRA on tiny random models saved to disk, adapter
and full-model reload for evaluation, per-family attention, pad tokens of the real tokenizers of the driver's
and the study's models, precision checks."""

from __future__ import annotations

import json

import bitsandbytes as bnb
import pytest
import torch
from conftest import save_tiny_model, tiny_config
from transformers import (
    AutoTokenizer,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
)

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.loading import (
    check_precision,
    default_attn_implementation,
    load_model,
    load_tokenizer,
    prepare_for_inference,
    resolve_compute_dtype,
)
from finqa_dsl.models.options import ModelOptions, parse_target_modules

VOCAB = 128
TEXT_SIZES = {"vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    return str(save_tiny_model(folder, "llama", **TEXT_SIZES, max_position_embeddings=64))


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, VOCAB, (2, 12), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids}


def train_one_step(model, batch) -> dict[str, torch.Tensor]:
    """One AdamW step; returns the trainable weights as they were before it. Asserts a finite loss."""
    model.train()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    before = {name: p.detach().clone() for name, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2, weight_decay=0.0)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    return before


def changed(model, before: dict[str, torch.Tensor]) -> set[str]:
    params = dict(model.named_parameters())
    return {name for name, old in before.items() if not torch.equal(params[name].detach(), old)}


def lora_b(names) -> set[str]:
    return {name for name in names if "lora_B" in name}


def eval_logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_qlora_nf4_double_quant_trains_on_cpu(tiny_llama_dir, batch):
    model = load_model(tiny_llama_dir, ModelOptions(peft="qlora", bnb_4bit_quant_type="nf4",
                       bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype="float32",
                       lora_r=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=True))
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 7 * TEXT_SIZES["num_hidden_layers"]  # q, k, v, o, gate, up, down
    state = four_bit[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # nested: quantised constants (double quant)
    assert not any(p.requires_grad for name, p in model.named_parameters() if "lora_" not in name)
    packed_before = four_bit[0].weight.detach().clone()

    before = train_one_step(model, batch)

    assert before and all("lora_" in name for name in before)
    assert changed(model, before) == lora_b(before)  # lora_A has no gradient while lora_B is still zero
    assert torch.equal(four_bit[0].weight.detach(), packed_before)


def test_qlora_fp4_with_default_compute_dtype(tiny_llama_dir, batch):
    model = load_model(tiny_llama_dir, ModelOptions(peft="qlora", bnb_4bit_quant_type="fp4",
                       bnb_4bit_use_double_quant=False))
    layer = next(m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert layer.weight.quant_state.quant_type == "fp4" and not layer.weight.quant_state.nested
    assert layer.compute_dtype == torch.float32  # auto on CPU
    assert changed(model, train_one_step(model, batch))


def test_lora_trains_only_the_adapter(tiny_llama_dir, batch):
    model = load_model(tiny_llama_dir, ModelOptions(peft="lora", lora_r=4, lora_alpha=8, lora_dropout=0.0))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert changed(model, train_one_step(model, batch)) == lora_b(trainable)


def test_lora_target_modules_as_a_comma_list(tiny_llama_dir):
    model = load_model(tiny_llama_dir, ModelOptions(peft="lora", lora_target_modules="q_proj, v_proj"))
    adapted = {name.split(".")[-2] for name, _ in model.named_modules() if name.endswith("lora_A")}
    assert adapted == {"q_proj", "v_proj"}


def test_full_fine_tune_updates_every_weight_and_reloads(tiny_llama_dir, batch, tmp_path):
    model = load_model(tiny_llama_dir, ModelOptions(peft="none", gradient_checkpointing=True))
    assert model.config.use_cache is False
    before = train_one_step(model, batch)
    assert len(before) == sum(1 for _ in model.parameters())
    assert changed(model, before) == set(before)
    model.save_pretrained(tmp_path / "final_model")

    reloaded = load_model(str(tmp_path / "final_model"))
    torch.testing.assert_close(eval_logits(reloaded, batch), eval_logits(model, batch), rtol=0, atol=0)


@pytest.mark.parametrize("quantize", [False, True], ids=["lora", "qlora"])
def test_saved_adapter_reloads_for_eval_with_the_same_logits(tiny_llama_dir, batch, tmp_path, quantize):
    peft = "qlora" if quantize else "lora"
    model = load_model(tiny_llama_dir, ModelOptions(peft=peft, lora_r=4, lora_alpha=8, lora_dropout=0.0))
    train_one_step(model, batch)
    model.save_pretrained(tmp_path / "adapter")
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == tiny_llama_dir

    reloaded = load_model(str(tmp_path / "adapter"), ModelOptions(peft="none", quantize_4bit=quantize))

    assert not any(p.requires_grad for p in reloaded.parameters())
    torch.testing.assert_close(eval_logits(reloaded, batch), eval_logits(model, batch), rtol=0, atol=1e-6)
    assert not torch.allclose(eval_logits(reloaded, batch), eval_logits(load_model(tiny_llama_dir), batch))


@pytest.mark.parametrize("quantize", [False, True], ids=["lora", "qlora"])
def test_prepare_for_inference_keeps_the_trained_function(tiny_llama_dir, batch, quantize):
    model = load_model(tiny_llama_dir, ModelOptions(peft="qlora" if quantize else "lora", lora_r=4, lora_alpha=8,
                       lora_dropout=0.0, gradient_checkpointing=True))
    train_one_step(model, batch)
    trained = eval_logits(model, batch)

    ready = prepare_for_inference(model)

    has_lora = any("lora_" in name for name, _ in ready.named_parameters())
    assert has_lora is quantize  # LoRA merged into a float base; a 4-bit base keeps its adapter
    assert ready.config.use_cache and not ready.training
    torch.testing.assert_close(eval_logits(ready, batch), trained, rtol=0, atol=1e-5)


def test_saved_adapter_keeps_training_with_peft_lora(tiny_llama_dir, batch, tmp_path):
    load_model(tiny_llama_dir, ModelOptions(peft="lora", lora_r=4)).save_pretrained(tmp_path / "adapter")
    model = load_model(str(tmp_path / "adapter"), ModelOptions(peft="lora"))
    assert changed(model, train_one_step(model, batch))


def test_attention_implementation_per_family(tiny_llama_dir, tmp_path):
    assert default_attn_implementation("gemma3_text") == "eager" == default_attn_implementation("gemma3")
    assert default_attn_implementation("qwen2") == "sdpa"
    assert load_model(tiny_llama_dir).config._attn_implementation == "sdpa"
    assert load_model(tiny_llama_dir, ModelOptions(attn_implementation="eager")).config._attn_implementation == "eager"


@pytest.mark.parametrize("peft", ["lora", "qlora"])
def test_gemma3_gets_eager_attention_and_lora_only_on_its_language_model(tmp_path, batch, peft):
    # The vision tower is 32 wide: too narrow for bitsandbytes' AVX-512 CPU 4-bit kernel, which the check
    # ignores because text prompts never run the tower.
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 28, "patch_size": 14}
    config = Gemma3Config(text_config=tiny_config("gemma3", **TEXT_SIZES), vision_config=vision,
                          mm_tokens_per_image=4, boi_token_index=VOCAB - 3, eoi_token_index=VOCAB - 2,
                          image_token_index=VOCAB - 1)
    Gemma3ForConditionalGeneration(config).save_pretrained(tmp_path)

    model = load_model(str(tmp_path), ModelOptions(peft=peft))

    assert model.config._attn_implementation == "eager"
    names = [name for name, _ in model.named_modules()]
    quantized = [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert any("vision_tower" in name for name in quantized) == (peft == "qlora")
    assert any("vision_tower" in name and name.endswith("q_proj") for name in names)
    adapted = [name for name in names if name.endswith("lora_A")]
    assert adapted and all("language_model" in name for name in adapted)
    assert changed(model, train_one_step(model, batch))


def test_bad_options_are_usage_errors_before_any_load():
    with pytest.raises(UsageError, match="--peft 'dora'"):
        ModelOptions(peft="dora")
    with pytest.raises(UsageError, match="--bnb_4bit_quant_type 'int4'"):
        ModelOptions(peft="qlora", bnb_4bit_quant_type="int4")
    with pytest.raises(UsageError, match="quantize_4bit=False"):
        ModelOptions(peft="qlora", quantize_4bit=False)
    with pytest.raises(UsageError, match="--lora_target_modules"):
        ModelOptions(peft="lora", lora_target_modules=" , ")
    with pytest.raises(UsageError, match="--lora_target_modules"):
        parse_target_modules(" , ")
    assert parse_target_modules("all-linear") == "all-linear"


def test_adapter_config_without_base_names_the_field(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": None}))
    with pytest.raises(UsageError, match=r"adapter_config.json: field 'base_model_name_or_path'"):
        load_model(str(tmp_path))


def test_check_precision_on_this_cpu():
    check_precision(bf16=True, torch_dtype="bfloat16", compute_dtype="bfloat16")  # CPU runs bfloat16
    check_precision(fp16=True, compute_dtype="auto")
    with pytest.raises(UsageError, match="pass one of them"):
        check_precision(bf16=True, fp16=True)
    with pytest.raises(UsageError, match="--torch_dtype 'fp8'"):
        ModelOptions(torch_dtype="fp8")
    assert resolve_compute_dtype("auto") == torch.float32
    assert resolve_compute_dtype("auto", torch_dtype="bfloat16") == torch.bfloat16


def test_check_precision_refuses_bf16_on_a_gpu_without_it(monkeypatch):
    """A pre-Ampere GPU (T4, compute capability 7.5), simulated: this machine has none."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (7, 5))
    with pytest.raises(UsageError, match=r"--bf16: the GPU Tesla T4 \(compute capability 7.5\).*--fp16"):
        check_precision(bf16=True)
    check_precision(fp16=True, compute_dtype="float16")
    assert resolve_compute_dtype("auto") == torch.float16


def test_pad_token_of_the_real_tokenizers_of_the_original_models(shared_models_dir, tmp_path):
    qwen = load_tokenizer(str(shared_models_dir / "qwen2.5-0.5b-instruct"))
    assert (qwen.pad_token, qwen.eos_token) == ("<|endoftext|>", "<|im_end|>")
    mistral = load_tokenizer(str(shared_models_dir / "mistral-7b-instruct-v0.3"))
    assert mistral.pad_token == "<unk>" != mistral.eos_token

    no_pad_no_unk = AutoTokenizer.from_pretrained(shared_models_dir / "qwen2.5-0.5b-instruct")
    no_pad_no_unk.pad_token = None
    no_pad_no_unk.save_pretrained(tmp_path)
    assert load_tokenizer(str(tmp_path)).pad_token == "<|im_end|>"  # falls back to eos


def test_adapter_folder_without_tokenizer_uses_its_base_tokenizer(shared_models_dir, tmp_path):
    base = str(shared_models_dir / "qwen2.5-0.5b-instruct")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    assert load_tokenizer(str(tmp_path)).eos_token == "<|im_end|>"
