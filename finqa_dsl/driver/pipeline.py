"""One run of the driver: data -> prompts -> (train) -> (eval) -> (test inference, scoring) -> reports."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import Example, load_examples
from finqa_dsl.core.dsl import clean_generation
from finqa_dsl.core.io import atomic_write_json, atomic_write_jsonl, read_jsonl_tolerant
from finqa_dsl.core.metrics import latency_stats, score_prediction, summarize
from finqa_dsl.core.prompts import build_prompt_records, select_few_shot
from finqa_dsl.driver.arguments import (
    OUTPUT_ROOT,
    DataArguments,
    GenerationArguments,
    ModelArguments,
    RunArguments,
    validate,
)
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs.folder import resolve_run_folder
from finqa_dsl.runs.plots import plot_latency_histogram, plot_loss_curves
from finqa_dsl.runs.timing import Timing
from finqa_dsl.runs.wandb_reporter import WandbReporter

logger = logging.getLogger(__name__)


def run(model_args: ModelArguments, data_args: DataArguments, gen_args: GenerationArguments,
        run_args: RunArguments, training_args) -> Path:
    """Execute the run that the parsed command line describes; return its run folder."""
    validate(model_args, data_args, gen_args, run_args, training_args)
    from finqa_dsl.models.loading import (
        check_precision,
        load_model,
        load_tokenizer,
        prepare_for_inference,
        resolve_model_name,
    )

    check_precision(bf16=training_args.bf16, fp16=training_args.fp16, torch_dtype=model_args.torch_dtype,
                    compute_dtype=model_args.bnb_4bit_compute_dtype if model_args.peft == "qlora" else None)

    model_name = resolve_model_name(model_args.model_name)
    all_args = {**_flat_args(model_args, data_args, gen_args, run_args, training_args),
                "resolved_model_name": str(model_name)}
    name = run_args.output_folder or default_folder_name(model_name, data_args)
    folder = resolve_run_folder(OUTPUT_ROOT, name, all_args)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / run_files.ARGS, {**all_args, "resolved_output_dir": str(folder)})
    logger.info("Run folder: %s", folder)
    _configure_training_output(training_args, folder, run_args)

    tokenizer = load_tokenizer(model_name)
    context_config = ContextConfig(
        input_mode=data_args.input_mode,
        text_distractors=data_args.noisy_text_distractors,
        table_distractors=data_args.noisy_table_distractors,
        seed=data_args.noisy_context_seed,
    )
    few_shot = _few_shot_examples(data_args, context_config)

    def records_for(path: str, limit: int, max_prompt_tokens: int | None):
        examples = _first(load_examples(path), limit)
        records, stats = build_prompt_records(
            examples, target_field=data_args.target_field, context_config=context_config,
            tokenizer=tokenizer, max_prompt_tokens=max_prompt_tokens, few_shot=few_shot,
            instruction=data_args.task_instruction or None,
        )
        return examples, records, stats

    prompt_budget = model_args.max_seq_length - gen_args.generation_max_new_tokens
    timing = Timing()
    model = load_model(
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
    wandb = WandbReporter(run_args.wandb_project, run_args.wandb_mode, run_args.wandb_run_name or folder.name,
                          folder, all_args)
    if training_args.do_train or training_args.do_eval:
        from finqa_dsl.training.trainer import train_and_evaluate

        train = records_for(data_args.train_file, data_args.max_train_samples, prompt_budget) \
            if training_args.do_train else None
        evaluation = records_for(data_args.eval_file, data_args.max_eval_samples, prompt_budget) \
            if training_args.do_eval else None
        results = train_and_evaluate(
            model, tokenizer, training_args, folder, timing,
            train_records=train and train[1], eval_records=evaluation and evaluation[1],
            max_length=model_args.max_seq_length, padding_free=run_args.padding_free,
        )
        atomic_write_json(folder / run_files.TRAIN_METRICS, {
            **results, **{k: v for k, v in timing.values.items() if k.startswith(("train", "eval"))},
            "train_prompt_truncation": train and train[2].as_dict(),
            "eval_prompt_truncation": evaluation and evaluation[2].as_dict(),
        })
        plot_loss_curves(folder)
    if run_args.do_test:
        examples, records, truncation = records_for(data_args.test_file, data_args.max_test_samples, prompt_budget)
        model = prepare_for_inference(model)
        with timing.phase("test_inference"):
            generation_stats = _generate_test_predictions(model, tokenizer, examples, records, gen_args,
                                                          data_args.target_field, folder)
        metrics, latencies = _write_test_metrics(folder, data_args, gen_args, generation_stats, truncation, timing)
        wandb.log({f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float)})
        wandb.log_latency_histogram(latencies)
    timing_values = timing.write(folder)
    wandb.log({f"timing/{k}": v for k, v in timing_values.items()})
    wandb.finish()
    return folder


def default_folder_name(model_name: str | os.PathLike, data_args: DataArguments) -> str:
    """``<model>-input_<mode>-output_<target>`` as the seed's run folders are named."""
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


def _first(examples: list[Example], limit: int) -> list[Example]:
    return examples[:limit] if limit else examples


def _few_shot_examples(data_args: DataArguments, context_config: ContextConfig) -> list[Example]:
    if not data_args.few_shot_k:
        return []
    return select_few_shot(load_examples(data_args.train_file), data_args.few_shot_k,
                           target_field=data_args.target_field, context_config=context_config)


def _generate_test_predictions(model, tokenizer, examples, records, gen_args: GenerationArguments,
                               target_field: str, folder: Path):
    from finqa_dsl.inference.backend import GenerationSettings
    from finqa_dsl.inference.engines import HFBackend
    from finqa_dsl.inference.predictions_file import generate_to_file
    from finqa_dsl.inference.stopping import stop_strings_for

    by_id = {example.id: example for example in examples}

    def score(record, generation: str) -> dict[str, Any]:
        example = by_id[record.id]
        parsed = clean_generation(generation) if target_field == "program" else generation.strip()
        return {"parsed_prediction": parsed, "target": record.target, "gold_program": example.program,
                "gold_exe_ans": example.exe_ans, "gold_answer": example.answer,
                **score_prediction(generation, example, target_field)}

    settings = GenerationSettings(
        max_new_tokens=gen_args.generation_max_new_tokens, num_beams=gen_args.generation_num_beams,
        temperature=gen_args.generation_temperature, top_p=gen_args.generation_top_p,
        do_sample=gen_args.generation_do_sample, batch_size=gen_args.inference_batch_size,
        engine=gen_args.inference_engine, stop_strings=stop_strings_for(target_field),
    )
    return generate_to_file(HFBackend(model, tokenizer), records, folder / run_files.TEST_PREDICTIONS,
                            settings=settings, annotate=score)


def _write_test_metrics(folder: Path, data_args: DataArguments, gen_args: GenerationArguments,
                        generation_stats, truncation, timing: Timing) -> tuple[dict[str, Any], list[float]]:
    """Write test_metrics.json, the latency file and histogram; return the metrics and the latencies."""
    rows = read_jsonl_tolerant(folder / run_files.TEST_PREDICTIONS)
    latencies = [row["latency_ms"] for row in rows]
    latency_mode = rows[0]["latency_mode"] if rows else "per_example"
    atomic_write_jsonl(folder / run_files.TEST_LATENCIES,
                       ({"id": row["id"], "latency_ms": row["latency_ms"]} for row in rows))
    stats = latency_stats(latencies)
    metrics: dict[str, Any] = {
        **summarize(rows, data_args.target_field),
        "inference_total_seconds": timing.values["test_inference_duration_seconds"],
        **{f"inference_latency_ms_{key}": value for key, value in stats.items() if key != "total"},
        "inference_latency_mode": latency_mode,
        "inference_batch_size": gen_args.inference_batch_size,
        "inference_examples_resumed": generation_stats.skipped,
        "inference_new_tokens": generation_stats.new_tokens,
        "latency_file": str(folder / run_files.TEST_LATENCIES),
        "output_jsonl": str(folder / run_files.TEST_PREDICTIONS),
        "prompts_truncated": truncation.truncated,
        "prompts_over_length": truncation.over_length,
        "target_field": data_args.target_field,
        "input_mode": data_args.input_mode,
        "test_file": data_args.test_file,
        **{k: v for k, v in dataclasses.asdict(gen_args).items() if k.startswith("generation_")},
    }
    atomic_write_json(folder / run_files.TEST_METRICS, metrics)
    plot_latency_histogram(latencies, folder, mode=latency_mode)
    return metrics, latencies
