"""One run of the driver: data -> prompts -> (train) -> (eval) -> (test inference, scoring) -> reports."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import Example
from finqa_dsl.core.io import atomic_write_json, atomic_write_jsonl, read_jsonl_tolerant
from finqa_dsl.core.metrics import inference_totals, prediction_row_fields, summarize
from finqa_dsl.core.prompts import build_prompt_records
from finqa_dsl.driver.arguments import (
    OUTPUT_ROOT,
    DataArguments,
    GenerationArguments,
    ModelArguments,
    RunArguments,
    resolve_eval_type,
    validate,
)
from finqa_dsl.driver.inputs import check_prompts_fit, load_splits
from finqa_dsl.inference.hf_backend import HFBackend
from finqa_dsl.inference.predictions_file import finished_rows
from finqa_dsl.models.source import check_model_source
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs.folder import resolve_run_folder
from finqa_dsl.runs.plots import plot_latency_histogram, plot_loss_curves
from finqa_dsl.runs.processes import from_main_process, process_state
from finqa_dsl.runs.timing import Timing
from finqa_dsl.runs.wandb_reporter import WandbReporter
from finqa_dsl.sandbox import Sandbox
from finqa_dsl.sandbox.generations import execute_generations

logger = logging.getLogger(__name__)


def run(model_args: ModelArguments, data_args: DataArguments, gen_args: GenerationArguments,
        run_args: RunArguments, training_args) -> Path:
    """Execute the run that the parsed command line describes; return its run folder.

    Flags, dataset files, the model source, the prompts and a resumed predictions file are all checked before
    the run folder is made and before any model loads. Under several processes every process calls it: the main
    process chooses the run folder and writes every run file; test inference is split across the processes
    (:mod:`finqa_dsl.inference.distributed`).
    """
    validate(model_args, data_args, gen_args, run_args, training_args)
    eval_type = resolve_eval_type(run_args, data_args, training_args)
    state = process_state(training_args)
    main = state.is_main_process
    from finqa_dsl.models.loading import (
        check_precision,
        load_model,
        load_tokenizer,
        prepare_for_inference,
        resolve_model_name,
    )

    check_precision(bf16=training_args.bf16, fp16=training_args.fp16, torch_dtype=model_args.torch_dtype,
                    compute_dtype=model_args.bnb_4bit_compute_dtype if model_args.peft == "qlora" else None)

    context_config = ContextConfig(
        input_mode=data_args.input_mode,
        text_distractors=data_args.noisy_text_distractors,
        table_distractors=data_args.noisy_table_distractors,
        seed=data_args.noisy_context_seed,
    )
    splits = load_splits(data_args, context_config, do_train=training_args.do_train, do_eval=training_args.do_eval,
                         do_test=run_args.do_test)
    model_name = resolve_model_name(model_args.model_name)
    check_model_source(model_name)
    tokenizer = load_tokenizer(model_name)

    def records_for(examples: list[Example] | None, flag: str, path: str):
        if examples is None:
            return None
        records, stats = build_prompt_records(
            examples, target_field=data_args.target_field, context_config=context_config,
            tokenizer=tokenizer, max_prompt_tokens=model_args.max_seq_length - gen_args.generation_max_new_tokens,
            few_shot=splits.few_shot, instruction=data_args.task_instruction or None,
        )
        check_prompts_fit(records, stats, flag, path,
                          max_seq_length=model_args.max_seq_length, max_new_tokens=gen_args.generation_max_new_tokens)
        return examples, records, stats

    train = records_for(splits.train, "--train_file", data_args.train_file)
    evaluation = records_for(splits.eval, "--eval_file", data_args.eval_file)
    test = records_for(splits.test, "--test_file", data_args.test_file)

    all_args = {**_flat_args(model_args, data_args, gen_args, run_args, training_args),
                "resolved_model_name": str(model_name)}
    name = run_args.output_folder or default_folder_name(model_name, data_args)

    def create_run_folder() -> Path:
        folder = resolve_run_folder(OUTPUT_ROOT, name, all_args)
        if test is not None:
            resumed = finished_rows(folder / run_files.TEST_PREDICTIONS, {record.id for record in test[1]})
            if resumed:
                logger.info("Resuming test inference: %d of %d examples already in %s", len(resumed), len(test[1]),
                            folder / run_files.TEST_PREDICTIONS)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / run_files.ARGS, {**all_args, "resolved_output_dir": str(folder)})
        return folder

    folder = from_main_process(state, create_run_folder)
    logger.info("Run folder: %s", folder)
    _configure_training_output(training_args, folder, run_args)

    timing = Timing()
    _seed(training_args)
    needs_hf_model = training_args.do_train or training_args.do_eval or gen_args.inference_backend == "hf"
    model = None if not needs_hf_model else load_model(
        model_name, peft=model_args.peft if training_args.do_train else "none",
        lora_r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        lora_target_modules=model_args.lora_target_modules,
        bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=model_args.bnb_4bit_compute_dtype,
        bnb_4bit_use_double_quant=model_args.bnb_4bit_use_double_quant,
        torch_dtype=model_args.torch_dtype, attn_implementation=model_args.attn_implementation,
        gradient_checkpointing=training_args.gradient_checkpointing and training_args.do_train,
        quantize_4bit=model_args.peft == "qlora",
    )
    wandb = WandbReporter(run_args.wandb_project if main else None, run_args.wandb_mode,
                          run_args.wandb_run_name or folder.name, folder, all_args)
    if training_args.do_train or training_args.do_eval:
        from finqa_dsl.training.trainer import train_and_evaluate

        results = train_and_evaluate(
            model, tokenizer, training_args, folder, timing,
            train_records=train and train[1], eval_records=evaluation and evaluation[1],
            max_length=model_args.max_seq_length, padding_free=run_args.padding_free,
            loss_implementation=run_args.loss_implementation,
        )
        if main:
            atomic_write_json(folder / run_files.TRAIN_METRICS, {
                **results, **{k: v for k, v in timing.values.items() if k.startswith(("train", "eval"))},
                "train_prompt_truncation": train and train[2].as_dict(),
                "eval_prompt_truncation": evaluation and evaluation[2].as_dict(),
            })
            plot_loss_curves(folder)
    if test is not None:
        examples, records, truncation = test
        if gen_args.inference_backend == "hf":
            backend = HFBackend(prepare_for_inference(model), tokenizer)
        else:
            del model  # vLLM loads the weights itself
            trained = folder / run_files.FINAL_MODEL if training_args.do_train else Path(model_name)
            backend = _vllm_backend(trained, tokenizer, model_args, training_args.seed)
        with timing.phase("test_inference"):
            generation_stats = _generate_test_predictions(backend, examples, records, gen_args,
                                                          data_args.target_field, folder, state)
        if main:
            metrics, latencies = _write_test_metrics(folder, data_args, gen_args, generation_stats, truncation,
                                                     timing, eval_type)
            wandb.log({f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float)})
            wandb.log_latency_histogram(latencies)
    if main:
        timing_values = timing.write(folder, world_size=state.num_processes)
        wandb.log({f"timing/{k}": v for k, v in timing_values.items()})
        wandb.finish()
    return folder


def default_folder_name(model_name: str | os.PathLike, data_args: DataArguments) -> str:
    """``<model>-input_<mode>-output_<target>`` as the FinQA fine-tuning driver's run folders are named."""
    model = Path(str(model_name).rstrip("/")).name.lower().replace(".", "-")
    return f"{model}-input_{data_args.input_mode}-output_{data_args.target_field}"


def _flat_args(*groups) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for group in groups:
        values = group.to_dict() if hasattr(group, "to_dict") else dataclasses.asdict(group)
        flat.update(values)
    return json.loads(json.dumps(flat, default=str))


def _configure_training_output(training_args, folder: Path, run_args: RunArguments) -> None:
    training_args.output_dir = str(folder / run_files.CHECKPOINTS)
    if run_args.wandb_project and run_args.wandb_mode != "disabled":
        os.environ["WANDB_PROJECT"] = run_args.wandb_project
        os.environ["WANDB_MODE"] = run_args.wandb_mode
        os.environ.setdefault("WANDB_DIR", str(folder))
        reporters = [training_args.report_to] if isinstance(training_args.report_to, str) \
            else list(training_args.report_to or [])
        training_args.report_to = [r for r in reporters if r not in ("none", "wandb")] + ["wandb"]
        training_args.run_name = run_args.wandb_run_name or folder.name


def _seed(training_args) -> None:
    """Seed as the Trainer does, but before the model is built: a fresh LoRA's initial weights are random."""
    from transformers.trainer_utils import enable_full_determinism, set_seed

    (enable_full_determinism if training_args.full_determinism else set_seed)(training_args.seed)


def _vllm_backend(model_path: Path, tokenizer, model_args: ModelArguments, seed: int):
    from finqa_dsl.inference.vllm_backend import VLLMBackend
    from finqa_dsl.models.source import adapter_base, is_adapter_dir

    if is_adapter_dir(str(model_path)):
        return VLLMBackend(adapter_base(str(model_path)), tokenizer, adapter_dir=str(model_path),
                           lora_rank=model_args.lora_r, dtype=model_args.torch_dtype, seed=seed)
    return VLLMBackend(str(model_path), tokenizer, dtype=model_args.torch_dtype, seed=seed)


def _generate_test_predictions(backend, examples, records, gen_args: GenerationArguments, target_field: str,
                               folder: Path, state):
    """Generate, execute (programs by the DSL, code in the sandbox) and score every test record into the
    predictions file, split across the processes of ``state``."""
    from finqa_dsl.inference.distributed import generate_across_processes
    from finqa_dsl.inference.interface import GenerationSettings
    from finqa_dsl.inference.stopping import stop_strings_for

    by_id = {example.id: example for example in examples}
    settings = GenerationSettings(
        max_new_tokens=gen_args.generation_max_new_tokens, num_beams=gen_args.generation_num_beams,
        temperature=gen_args.generation_temperature, top_p=gen_args.generation_top_p,
        do_sample=gen_args.generation_do_sample, batch_size=gen_args.inference_batch_size,
        engine=gen_args.inference_engine, stop_strings=stop_strings_for(target_field),
    )
    with contextlib.ExitStack() as stack:
        sandbox = stack.enter_context(Sandbox()) if target_field == "code" else None

        def score(record, generation: str) -> dict[str, Any]:
            execution = execute_generations(sandbox, [generation])[0] if sandbox is not None else None
            return prediction_row_fields(generation, by_id[record.id], target_field, record.target, execution)

        return generate_across_processes(backend, records, folder / run_files.TEST_PREDICTIONS, settings=settings,
                                         state=state, annotate=score)


def _write_test_metrics(folder: Path, data_args: DataArguments, gen_args: GenerationArguments,
                        generation_stats, truncation, timing: Timing,
                        eval_type: str) -> tuple[dict[str, Any], list[float]]:
    """Write test_metrics.json, the latency file and histogram; return the metrics and the latencies."""
    rows = read_jsonl_tolerant(folder / run_files.TEST_PREDICTIONS)
    latencies = [row[row_keys.LATENCY_MS] for row in rows]
    latency_mode = rows[0][row_keys.LATENCY_MODE] if rows else "per_example"
    atomic_write_jsonl(folder / run_files.TEST_LATENCIES,
                       ({row_keys.ID: row[row_keys.ID], row_keys.LATENCY_MS: row[row_keys.LATENCY_MS]} for row in rows))
    metrics: dict[str, Any] = {
        **summarize(rows, data_args.target_field),
        **inference_totals(rows, generated=generation_stats.generated,
                           session_seconds=timing.values["test_inference_duration_seconds"],
                           session_new_tokens=generation_stats.new_tokens),
        "inference_latency_mode": latency_mode,
        "inference_batch_size": gen_args.inference_batch_size,
        "latency_file": str(folder / run_files.TEST_LATENCIES),
        "output_jsonl": str(folder / run_files.TEST_PREDICTIONS),
        "prompts_truncated": truncation.truncated,
        "prompts_over_length": truncation.over_length,
        "input_mode": data_args.input_mode,
        "eval_type": eval_type,
        "few_shot_k": data_args.few_shot_k,
        "inference_backend": gen_args.inference_backend,
        "test_file": data_args.test_file,
        **{k: v for k, v in dataclasses.asdict(gen_args).items() if k.startswith("generation_")},
    }
    atomic_write_json(folder / run_files.TEST_METRICS, metrics)
    plot_latency_histogram(latencies, folder, mode=latency_mode)
    return metrics, latencies
