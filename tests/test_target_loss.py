"""The target-only loss equals each family's own full-logit loss, in value and gradients, through the Trainer.

Tiny random models of every class in HEAD_FORWARDS with the real tokenizers of the models the driver and the
study used (the default model's for Llama), real FinQA questions and programs encoded as in training, padded and
padding-free batches, full fine-tune, LoRA, QLoRA (bitsandbytes 4-bit on CPU), gradient checkpointing and tied
embeddings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO_ROOT, SAMPLE, real_tokenizer, tiny_config, tiny_model
from transformers import (
    Gemma2ForCausalLM,
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    MistralForCausalLM,
    Qwen2ForCausalLM,
    Qwen3ForCausalLM,
    SiglipVisionConfig,
    Trainer,
    TrainingArguments,
)

from finqa_dsl.core.chat import IGNORE_INDEX, encode_for_training, pad_token_id
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.loading import load_model
from finqa_dsl.models.options import ModelOptions
from finqa_dsl.runs.timing import Timing
from finqa_dsl.training.options import check_loss_implementation
from finqa_dsl.training.target_loss import (
    HEAD_FORWARDS,
    OutputHead,
    TargetLossTrainer,
    target_token_loss,
    trainer_class,
)
from finqa_dsl.training.trainer import CompletionCollator, train_and_evaluate

# hidden and projection sizes are multiples of 64: bitsandbytes' CPU 4-bit kernels need it (QLoRA case)
SHAPE = dict(hidden_size=64, intermediate_size=128, num_key_value_heads=4, max_position_embeddings=2048)
GEMMA = dict(query_pre_attn_scalar=16, sliding_window=8, final_logit_softcapping=30.0)
# class -> (family of conftest.tiny_model, its config overrides); each family is tested with its real tokenizer
FAMILIES = {
    LlamaForCausalLM: ("llama", dict(tie_word_embeddings=True)),
    Qwen2ForCausalLM: ("qwen2", dict(tie_word_embeddings=True)),
    Qwen3ForCausalLM: ("qwen3", {}),
    MistralForCausalLM: ("mistral", dict(tie_word_embeddings=False)),
    Gemma3ForCausalLM: ("gemma3", GEMMA),
    Gemma2ForCausalLM: ("gemma2", GEMMA),
}


def _model(model_class, tokenizer):
    family, overrides = FAMILIES[model_class]
    model = tiny_model(family, vocab_size=len(tokenizer), attn_implementation="eager", **SHAPE, **overrides)
    assert type(model) is model_class
    return model


@pytest.fixture(scope="module")
def features_for(real_finqa_dir):
    """Training features of three real FinQA questions (prompt) and programs (target) for a tokenizer."""
    examples = load_examples(real_finqa_dir / "dev.json")[:3]

    def features(tokenizer) -> list[dict]:
        encoded = [encode_for_training(tokenizer, example.question, example.program) for example in examples]
        return [{"input_ids": ids, "labels": labels} for ids, labels in encoded]

    return features


def _batch(tokenizer, features, padding_free: bool) -> dict:
    return CompletionCollator(pad_token_id(tokenizer), padding_free=padding_free)(features)


def _loss_and_grads(model, batch: dict, loss_implementation: str, tmp_path: Path, num_items_in_batch=None):
    """The loss of ``batch`` as the Trainer of ``loss_implementation`` computes it, and the gradients of the
    trainable parameters (the Trainer's own compute_loss: the model's loss for ``full``)."""
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer_type, used = trainer_class(loss_implementation, model, args)
    assert used == loss_implementation
    trainer = trainer_type(model=model, args=args)
    model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items_in_batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _assert_same(model, batch: dict, tmp_path: Path, num_items_in_batch=None) -> None:
    full_loss, full_grads = _loss_and_grads(model, batch, "full", tmp_path, num_items_in_batch)
    head_inputs = []
    head = OutputHead.of(model).projection
    handle = head.register_forward_hook(lambda module, args, output: head_inputs.append(args[0].shape))
    try:
        loss, grads = _loss_and_grads(model, batch, "target_only", tmp_path, num_items_in_batch)
    finally:
        handle.remove()
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=0)
    assert grads.keys() == full_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    targets = int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())
    # the forward projected no position; the loss projected exactly the target positions
    assert head_inputs[0][-2] == 0 and [shape[0] for shape in head_inputs[1:]] == [targets]


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding_free"])
@pytest.mark.parametrize("model_class", list(FAMILIES), ids=lambda c: c.__name__)
def test_full_fine_tune_loss_and_gradients_equal_the_full_logit_loss(model_class, padding_free, features_for,
                                                                   shared_models_dir, tmp_path):
    tokenizer = real_tokenizer(FAMILIES[model_class][0])
    model = _model(model_class, tokenizer).train()
    batch = _batch(tokenizer, features_for(tokenizer), padding_free)
    # padding-free: the Trainer's num_items_in_batch of a 3-micro-batch accumulation (sum / all their tokens)
    num_items = torch.tensor(3 * int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())) if padding_free else None
    _assert_same(model, batch, tmp_path, num_items)


def test_every_known_head_forward_is_tested():
    tested = {cls.__name__ for cls in FAMILIES} | {Gemma3ForConditionalGeneration.__name__}
    assert tested == set(HEAD_FORWARDS)


@pytest.mark.parametrize(("peft", "gradient_checkpointing"), [("lora", True), ("qlora", False)])
def test_lora_and_qlora_loss_and_gradients_equal_the_full_logit_loss(peft, gradient_checkpointing, features_for,
                                                                     tmp_path):
    tokenizer = real_tokenizer("llama")
    folder = tmp_path / "tiny"
    _model(LlamaForCausalLM, tokenizer).save_pretrained(folder)
    model = load_model(str(folder), ModelOptions(peft=peft, lora_dropout=0.0, torch_dtype="float32",
                       gradient_checkpointing=gradient_checkpointing)).train()
    assert model.base_model.model.model.gradient_checkpointing is gradient_checkpointing
    _assert_same(model, _batch(tokenizer, features_for(tokenizer), padding_free=False), tmp_path)


def test_gemma3_for_conditional_generation_text_batch(features_for, shared_models_dir, tmp_path):
    """Gemma-3 4B's class (vision tower beside the text model); its forward does not soft-cap."""
    tokenizer = real_tokenizer("gemma3")
    torch.manual_seed(0)
    text = tiny_config("gemma3", vocab_size=len(tokenizer), **SHAPE, **GEMMA)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    config = Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4)
    config._attn_implementation = "eager"
    model = Gemma3ForConditionalGeneration(config).train()
    assert OutputHead.of(model).softcap is None
    _assert_same(model, _batch(tokenizer, features_for(tokenizer), padding_free=False), tmp_path)


def test_chunked_loss_recomputes_each_chunk_and_keeps_the_gradients(features_for, shared_models_dir):
    tokenizer = real_tokenizer("gemma3")
    model = _model(Gemma3ForCausalLM, tokenizer).train()
    batch = _batch(tokenizer, features_for(tokenizer), padding_free=False)
    head = OutputHead.of(model)

    def loss_and_grads(chunk_tokens):
        model.zero_grad(set_to_none=True)
        rows = []
        handle = head.projection.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
        with head.capturing_input() as captured:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = target_token_loss(head, captured[0], batch["labels"], chunk_tokens=chunk_tokens)
        loss.backward()
        handle.remove()
        return loss.detach(), [p.grad.clone() for p in model.parameters()], rows[1:]

    loss, grads, rows = loss_and_grads(chunk_tokens=None)  # one chunk
    chunked_loss, chunked_grads, chunked_rows = loss_and_grads(chunk_tokens=7)
    targets = int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())
    assert rows == [targets] and max(chunked_rows) == 7 and len(chunked_rows) > -(-targets // 7)  # recomputed
    torch.testing.assert_close(chunked_loss, loss, rtol=1e-5, atol=0)
    for grad, chunked_grad in zip(grads, chunked_grads, strict=True):
        torch.testing.assert_close(chunked_grad, grad, rtol=1e-4, atol=1e-6)


def test_a_batch_without_targets_gives_the_full_loss_value():
    model = tiny_model("llama", vocab_size=128, **SHAPE).train()
    batch = {"input_ids": torch.tensor([[5, 6, 7]]), "labels": torch.full((1, 3), IGNORE_INDEX)}
    head = OutputHead.of(model)
    with head.capturing_input() as captured:
        model(input_ids=batch["input_ids"])
    loss = target_token_loss(head, captured[0], batch["labels"], num_items_in_batch=4)
    assert loss.item() == model(**batch, num_items_in_batch=4).loss.item() == 0.0
    loss.backward()  # connected to the graph, as the model's own loss is


def test_an_unknown_model_class_trains_with_the_full_loss(caplog):
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2))
    assert OutputHead.of(model) is None
    assert trainer_class("target_only", model, TrainingArguments(output_dir="unused", use_cpu=True)) == (
        Trainer, "full")
    assert "full-logit" in caplog.text
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        TargetLossTrainer(model=model, args=TrainingArguments(output_dir="unused", use_cpu=True, report_to=[]))


@pytest.mark.slow
def test_training_and_eval_through_the_trainer_match_the_full_loss(features_for, tmp_path):
    """Two optimiser steps of two accumulated micro-batches (num_items_in_batch), then evaluation."""
    tokenizer = real_tokenizer("llama")
    records = [SimpleNamespace(id=str(i), prompt=f"What is {i} plus {i * 3}?", target=f"add({i}, {i * 3})")
               for i in range(8)]

    def run(loss_implementation: str) -> tuple[dict, dict]:
        model = _model(LlamaForCausalLM, tokenizer)
        args = TrainingArguments(output_dir=str(tmp_path / loss_implementation), per_device_train_batch_size=2,
                                 gradient_accumulation_steps=2, max_steps=2, logging_steps=1, learning_rate=1e-2,
                                 optim="sgd", eval_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                                 disable_tqdm=True, seed=0)
        results = train_and_evaluate(model, tokenizer, args, tmp_path / loss_implementation, Timing(),
                                     train_records=records, eval_records=records[:3], max_length=None,
                                     loss_implementation=loss_implementation)
        return results, dict(model.named_parameters())

    full, full_weights = run("full")
    target, target_weights = run("target_only")
    assert (full["loss_implementation"], target["loss_implementation"]) == ("full", "target_only")
    for key in ("train_loss", "eval_loss"):
        assert target[key] == pytest.approx(full[key], rel=1e-5)
    for name, weight in target_weights.items():
        torch.testing.assert_close(weight, full_weights[name], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_torchrun_ddp_training_matches_the_full_loss(tmp_path):
    """The driver under torchrun (2 CPU processes, DDP over gloo): same losses and weights as the full loss."""
    tokenizer = real_tokenizer("llama")
    folder = tmp_path / "tiny"
    _model(LlamaForCausalLM, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    def run(loss_implementation: str) -> tuple[list, dict]:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(REPO_ROOT / "scripts" / "finetune.py"), "--model_name", str(folder), "--do_train",
                   "--train_file", str(SAMPLE / "train.json"), "--max_train_samples", "8",
                   "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
                   "--max_steps", "2", "--logging_steps", "1", "--optim", "sgd", "--learning_rate", "1e-2",
                   "--report_to", "none", "--save_strategy", "no", "--use_cpu", "--torch_dtype", "float32",
                   "--loss_implementation", loss_implementation, "--output_folder", loss_implementation]
        subprocess.run(command, cwd=tmp_path, check=True, timeout=600)
        run_folder = tmp_path / "__output__" / loss_implementation
        metrics = json.loads((run_folder / "train_metrics.json").read_text())
        assert metrics["loss_implementation"] == loss_implementation
        logged = [json.loads(line) for line in (run_folder / "metrics.jsonl").read_text().splitlines()]
        model = LlamaForCausalLM.from_pretrained(run_folder / "final_model")
        return [row["loss"] for row in logged if "loss" in row], dict(model.named_parameters())

    full_losses, full_weights = run("full")
    losses, weights = run("target_only")
    assert losses == pytest.approx(full_losses, rel=1e-5) and len(losses) == 2
    for name, weight in weights.items():
        torch.testing.assert_close(weight, full_weights[name], rtol=1e-5, atol=1e-7)


def test_loss_implementation_flag_errors_name_the_flag():
    check_loss_implementation("target_only")
    with pytest.raises(UsageError, match="--loss_implementation 'fast' is not one of: target_only, full, liger"):
        check_loss_implementation("fast")
    with pytest.raises(UsageError, match="--use_liger_kernel"):
        check_loss_implementation("target_only", use_liger_kernel=True)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="--loss_implementation liger"):
            check_loss_implementation("liger")
