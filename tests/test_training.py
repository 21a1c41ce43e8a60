"""Completion-only encoding on the real tokenizers of the driver's and the study's models and real FinQA prompts;
batching; run-folder logs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_model
from transformers import AutoTokenizer, LlamaForCausalLM, TrainerState, TrainingArguments

from finqa_dsl.core.chat import IGNORE_INDEX, encode_for_training, encode_prompt, end_of_turn_token
from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.prompts import build_prompt_records
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs.timing import Timing
from finqa_dsl.training.trainer import (
    CompletionCollator,
    RunLogCallback,
    build_train_dataset,
    train_and_evaluate,
)

END_OF_TURN = {
    "qwen2.5-0.5b-instruct": "<|im_end|>",
    "gemma-3-1b-it": "<end_of_turn>",
    "mistral-7b-instruct-v0.3": "</s>",  # no chat template: eos
}


@pytest.fixture(scope="module", params=sorted(END_OF_TURN))
def tokenizer(request, shared_models_dir):
    return AutoTokenizer.from_pretrained(shared_models_dir / request.param)


@pytest.fixture(scope="module")
def qwen(shared_models_dir):
    return AutoTokenizer.from_pretrained(shared_models_dir / "qwen2.5-0.5b-instruct")


@pytest.fixture(scope="module")
def examples(real_finqa_dir):
    return load_examples(real_finqa_dir / "dev.json")[:12]


def _records(examples, tokenizer, target_field="program"):
    return build_prompt_records(examples, target_field=target_field, context_config=ContextConfig(),
                                tokenizer=tokenizer)[0]


def _name(tokenizer) -> str:
    return tokenizer.name_or_path.rstrip("/").rsplit("/", 1)[-1]


def test_end_of_turn_token_comes_from_the_chat_template(tokenizer):
    assert end_of_turn_token(tokenizer) == END_OF_TURN[_name(tokenizer)]


@pytest.mark.parametrize("target_field", ["program", "numerical", "answer"])
def test_labelled_tokens_decode_to_exactly_target_and_end_of_turn(tokenizer, examples, target_field):
    for record in _records(examples, tokenizer, target_field):
        input_ids, labels = encode_for_training(tokenizer, record.prompt, record.target)
        labelled = [label for label in labels if label != IGNORE_INDEX]
        assert tokenizer.decode(labelled) == record.target + END_OF_TURN[_name(tokenizer)]
        first = labels.index(labelled[0])
        assert labels[first:] == input_ids[first:]  # one contiguous labelled tail, equal to the inputs


def test_prompt_tokens_are_the_inference_encoding_with_a_single_bos(tokenizer, examples):
    for record in _records(examples, tokenizer):
        input_ids, labels = encode_for_training(tokenizer, record.prompt, record.target)
        prompt_ids = encode_prompt(record.prompt, tokenizer)
        assert input_ids[:len(prompt_ids)] == prompt_ids
        assert labels[:len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
        assert labels[len(prompt_ids)] != IGNORE_INDEX
        if tokenizer.bos_token_id is None:
            continue
        assert input_ids[0] == tokenizer.bos_token_id
        assert input_ids.count(tokenizer.bos_token_id) == 1


def test_build_train_dataset_drops_and_counts_over_length_examples(qwen, examples):
    records = _records(examples, qwen)
    lengths = sorted(len(encode_for_training(qwen, r.prompt, r.target)[0]) for r in records)
    limit = lengths[len(lengths) // 2]
    dataset, stats = build_train_dataset(records, qwen, max_length=limit)
    expected_kept = sum(length <= limit for length in lengths)
    assert (stats.examples, stats.kept, stats.over_length) == (len(records), expected_kept,
                                                               len(records) - expected_kept)
    assert len(dataset) == expected_kept and stats.longest_kept <= limit
    assert dataset["length"] == [len(ids) for ids in dataset["input_ids"]]
    assert stats.target_tokens == sum(sum(x != IGNORE_INDEX for x in labels) for labels in dataset["labels"])
    assert encode_for_training(qwen, records[0].prompt, records[0].target, max_length=5) is None


def test_padded_batch_pads_to_the_longest_member_or_a_multiple():
    features = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    batch = CompletionCollator(pad_token_id=0)(features)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert CompletionCollator(pad_token_id=0, pad_to_multiple_of=8)(features)["input_ids"].shape == (2, 8)


def _tiny_llama(attn_implementation: str, vocab_size: int = 300, seed: int = 0) -> LlamaForCausalLM:
    return tiny_model("llama", vocab_size=vocab_size, seed=seed, attn_implementation=attn_implementation)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_padding_free_batch_gives_the_padded_batch_loss(attn_implementation):
    model = _tiny_llama(attn_implementation).train()  # config.use_cache is True, as in a loaded model
    generator = torch.Generator().manual_seed(1)
    features = []
    for length, prompt in ((9, 4), (15, 6), (4, 2)):
        ids = torch.randint(0, 300, (length,), generator=generator).tolist()
        features.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    padded = model(**CompletionCollator(pad_token_id=0)(features)).loss
    flat_batch = CompletionCollator(pad_token_id=0, padding_free=True)(features)
    assert flat_batch["input_ids"].shape == (1, 28) and "attention_mask" not in flat_batch
    torch.testing.assert_close(model(**flat_batch).loss, padded, rtol=1e-5, atol=1e-6)


def _state(step: int, epoch: float) -> TrainerState:
    state = TrainerState()
    state.global_step, state.epoch = step, epoch
    return state


def test_run_log_callback_appends_logs_and_replaces_the_lines_a_resume_repeats(tmp_path):
    callback = RunLogCallback(tmp_path)
    logs = ((10, {"loss": 2.0}), (20, {"loss": 1.5}), (20, {"eval_loss": 1.7}), (30, {"loss": 1.2}))
    for step, values in logs:
        callback.on_log(None, _state(step, step / 40), None, logs=values)
    resumed = RunLogCallback(tmp_path)  # resumed from the step-20 checkpoint: step 30 comes again
    resumed.on_log(None, _state(30, 0.75), None, logs={"loss": 1.1})
    rows = [json.loads(line) for line in (tmp_path / run_files.METRICS).read_text().splitlines()]
    assert [(row["step"], row.get("loss", row.get("eval_loss"))) for row in rows] == [
        (10, 2.0), (20, 1.5), (20, 1.7), (30, 1.1)]
    assert rows[0]["epoch"] == 0.25
    assert (tmp_path / run_files.TRAIN_LOSS_LOG).read_text().splitlines() == [
        "step\tepoch\tloss", "10\t0.25\t2.0", "20\t0.5\t1.5", "30\t0.75\t1.1"]
    assert (tmp_path / run_files.EVAL_LOSS_LOG).read_text().splitlines() == ["step\tepoch\teval_loss",
                                                                             "20\t0.5\t1.7"]


def _short_record(tokenizer, id_, question, target):
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                           add_generation_prompt=True)
    return SimpleNamespace(id=id_, question=question, prompt=prompt, target=target)


@pytest.mark.parametrize("padding_free", [False, True])
def test_train_and_evaluate_writes_logs_and_final_model(tmp_path, qwen, padding_free):
    model = _tiny_llama("sdpa", vocab_size=len(qwen))
    initial = {name: weight.clone() for name, weight in model.state_dict().items()}
    records = [_short_record(qwen, str(i), f"what is {i} + {i}?", f"add({i}, {i})") for i in range(6)]
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), per_device_train_batch_size=3,
                             max_steps=2, logging_steps=1, eval_strategy="no", report_to=[],
                             save_strategy="no", use_cpu=True, disable_tqdm=True)
    timing = Timing()
    results = train_and_evaluate(model, qwen, args, tmp_path, timing, train_records=records,
                                 eval_records=records[:2], max_length=4096, padding_free=padding_free)
    assert args.train_sampling_strategy == "random", "the arguments are read, not changed"
    assert results["train_encoding"]["kept"] == 6 and "eval_loss" in results
    assert {"train_duration_seconds", "eval_duration_seconds"} <= set(timing.values)
    assert len((tmp_path / run_files.TRAIN_LOSS_LOG).read_text().splitlines()) == 3  # header + 2 steps
    assert len((tmp_path / run_files.EVAL_LOSS_LOG).read_text().splitlines()) == 2
    # the final model is the trained one (not the initial weights), and its tokenizer encodes as the run's did
    saved = LlamaForCausalLM.from_pretrained(tmp_path / run_files.FINAL_MODEL).state_dict()
    trained = model.state_dict()
    assert saved.keys() == trained.keys() and all(torch.equal(saved[name], trained[name]) for name in trained)
    assert any(not torch.equal(initial[name], trained[name]) for name in trained)
    text = records[0].prompt + records[0].target
    assert AutoTokenizer.from_pretrained(tmp_path / run_files.FINAL_MODEL)(text)["input_ids"] == qwen(text)["input_ids"]


def test_rerun_resumes_from_the_last_checkpoint_without_duplicate_log_lines(tmp_path, qwen):
    records = [_short_record(qwen, str(i), f"what is {i} + 1?", f"add({i}, const_1)") for i in range(4)]

    def run(folder, max_steps: int, model_seed: int) -> LlamaForCausalLM:
        args = TrainingArguments(output_dir=str(folder / "checkpoints"), per_device_train_batch_size=2,
                                 max_steps=max_steps, logging_steps=1, save_steps=1, learning_rate=1e-3,
                                 lr_scheduler_type="constant", report_to=[], use_cpu=True, disable_tqdm=True)
        model = _tiny_llama("sdpa", vocab_size=len(qwen), seed=model_seed)
        train_and_evaluate(model, qwen, args, folder, Timing(), train_records=records, eval_records=None,
                           max_length=None)
        return model  # trained in place

    uninterrupted = run(tmp_path / "uninterrupted", max_steps=2, model_seed=0)
    run(tmp_path / "resumed", max_steps=1, model_seed=0)  # an interrupted run: its checkpoint-1 is there
    interrupted_log = (tmp_path / "resumed" / run_files.TRAIN_LOSS_LOG).read_text().splitlines()
    # Another initial model: only the checkpoint's weights, optimizer moments and data position can make the
    # rerun's second step land where the uninterrupted run's did.
    resumed = run(tmp_path / "resumed", max_steps=2, model_seed=1)
    for (name, expected), (_, actual) in zip(uninterrupted.named_parameters(), resumed.named_parameters(),
                                             strict=True):
        torch.testing.assert_close(actual, expected, msg=name)
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    lines = (tmp_path / "resumed" / run_files.TRAIN_LOSS_LOG).read_text().splitlines()
    assert lines[:2] == interrupted_log, "step 1 is the interrupted run's, not a second one"
    assert [line.split("\t")[0] for line in lines] == ["step", "1", "2"]
    assert lines == (tmp_path / "uninterrupted" / run_files.TRAIN_LOSS_LOG).read_text().splitlines()
