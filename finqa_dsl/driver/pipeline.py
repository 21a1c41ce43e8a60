"""One run of the driver, as its plan says: (train) -> (eval) -> (test inference, scoring) -> reports.

:func:`execute` only reads the :class:`~finqa_dsl.driver.plan.RunPlan` that
:func:`~finqa_dsl.driver.plan.prepare` resolved; ``args.json`` is that plan.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core.io import atomic_write_json, atomic_write_jsonl, read_jsonl_tolerant
from finqa_dsl.core.metrics import inference_totals
from finqa_dsl.core.targets import get_target
from finqa_dsl.core.voting import self_consistency_metrics
from finqa_dsl.driver.plan import PromptSplit, RunPlan
from finqa_dsl.inference.hf_backend import HFBackend
from finqa_dsl.inference.predictions_file import finished_rows
from finqa_dsl.models.hub import push_folder
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs.plots import plot_latency_histogram, plot_loss_curves
from finqa_dsl.runs.processes import from_main_process
from finqa_dsl.runs.timing import Timing
from finqa_dsl.runs.wandb_reporter import WandbReporter
from finqa_dsl.sandbox.generations import code_runner

logger = logging.getLogger(__name__)


def execute(plan: RunPlan) -> Path:
    """Run ``plan``; return its run folder.

    The main process makes the run folder and writes every run file, ``args.json`` first; under several
    processes test inference is split across them (:mod:`finqa_dsl.inference.distributed`).
    """
    from finqa_dsl.models.loading import load_model, prepare_for_inference

    training, run_args = plan.training_args, plan.run_args
    main = plan.state.is_main_process
    folder = from_main_process(plan.state, lambda: _make_run_folder(plan))
    logger.info("Run folder: %s", folder)
    _report_to_wandb(plan)
    timing = Timing()
    _seed(training)
    needs_hf_model = training.do_train or training.do_eval or plan.generation_args.inference_backend == "hf"
    model = load_model(plan.model_name, plan.model_options) if needs_hf_model else None
    wandb = WandbReporter(run_args.wandb_project if main else None, run_args.wandb_mode,
                          run_args.wandb_run_name or folder.name, folder, plan.recorded())
    if training.do_train or training.do_eval:
        from finqa_dsl.training.trainer import train_and_evaluate

        results = train_and_evaluate(
            model, plan.tokenizer, training, folder, timing,
            train_records=plan.train and plan.train.records, eval_records=plan.eval and plan.eval.records,
            max_length=plan.model_args.max_seq_length, padding_free=run_args.padding_free,
            loss_implementation=run_args.loss_implementation,
        )
        if main:
            atomic_write_json(folder / run_files.TRAIN_METRICS, {
                **results, **{k: v for k, v in timing.values.items() if k.startswith(("train", "eval"))},
                "train_prompt_truncation": plan.train and plan.train.truncation.as_dict(),
                "eval_prompt_truncation": plan.eval and plan.eval.truncation.as_dict(),
            })
            plot_loss_curves(folder)
        if main and plan.hub_repo and training.do_train:
            private = training.hub_private_repo is not False
            logger.info("Pushed %s to %s", folder / run_files.FINAL_MODEL,
                        push_folder(folder / run_files.FINAL_MODEL, plan.hub_repo, private=private))
    if plan.test is not None:
        if plan.generation_args.inference_backend == "hf":
            backend = HFBackend(prepare_for_inference(model), plan.tokenizer)
        else:
            del model  # vLLM loads the weights itself
            trained = folder / run_files.FINAL_MODEL if training.do_train else Path(plan.model_name)
            backend = _vllm_backend(trained, plan)
        with timing.phase("test_inference"):
            generation_stats = _generate_test_predictions(backend, plan.test, plan)
        if main:
            metrics, latencies = _write_test_metrics(plan, generation_stats, timing)
            wandb.log({f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float)})
            wandb.log_latency_histogram(latencies)
    if main:
        timing_values = timing.write(folder, world_size=plan.state.num_processes)
        wandb.log({f"timing/{k}": v for k, v in timing_values.items()})
        wandb.finish()
    return folder


def _make_run_folder(plan: RunPlan) -> Path:
    """Make the plan's run folder and write ``args.json`` into it; say how much of a resumed run is done."""
    if plan.test is not None:
        resumed = finished_rows(plan.folder / run_files.TEST_PREDICTIONS, {r.id for r in plan.test.records})
        if resumed:
            logger.info("Resuming test inference: %d of %d examples already in %s", len(resumed),
                        len(plan.test.records), plan.folder / run_files.TEST_PREDICTIONS)
    plan.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan.folder / run_files.ARGS, plan.recorded())
    return plan.folder


def _report_to_wandb(plan: RunPlan) -> None:
    """W&B's own settings, for the Trainer's reporter (the plan's ``report_to`` names it when asked)."""
    run_args = plan.run_args
    if run_args.wandb_project and run_args.wandb_mode != "disabled":
        os.environ["WANDB_PROJECT"] = run_args.wandb_project
        os.environ["WANDB_MODE"] = run_args.wandb_mode
        os.environ.setdefault("WANDB_DIR", str(plan.folder))


def _seed(training_args) -> None:
    """Seed as the Trainer does, but before the model is built: a fresh LoRA's initial weights are random."""
    from transformers.trainer_utils import enable_full_determinism, set_seed

    (enable_full_determinism if training_args.full_determinism else set_seed)(training_args.seed)


def _vllm_backend(model_path: Path, plan: RunPlan):
    from finqa_dsl.inference.vllm_backend import VLLMBackend
    from finqa_dsl.models.source import adapter_base, is_adapter_dir

    dtype, seed = plan.model_args.torch_dtype, plan.training_args.seed
    if is_adapter_dir(str(model_path)):
        return VLLMBackend(adapter_base(str(model_path)), plan.tokenizer, adapter_dir=str(model_path),
                           lora_rank=plan.model_args.lora_r, dtype=dtype, seed=seed)
    return VLLMBackend(str(model_path), plan.tokenizer, dtype=dtype, seed=seed)


def _generate_test_predictions(backend, test: PromptSplit, plan: RunPlan):
    """Generate, execute (programs by the DSL, code in the sandbox) and score every test record into the
    predictions file, split across the plan's processes."""
    from finqa_dsl.inference.distributed import generate_across_processes

    target = get_target(plan.data_args.target_field)
    by_id = {example.id: example for example in test.examples}
    with code_runner(target) as run_code:

        def score(record, generation: str) -> dict[str, Any]:
            execution = run_code([generation])[0] if run_code else None
            return target.row_fields(generation, by_id[record.id], record.target, execution)

        return generate_across_processes(backend, test.records, plan.folder / run_files.TEST_PREDICTIONS,
                                         settings=plan.generation_settings, state=plan.state, annotate=score)


def _write_test_metrics(plan: RunPlan, generation_stats, timing: Timing) -> tuple[dict[str, Any], list[float]]:
    """Write test_metrics.json, the latency file and histogram; return the metrics and the latencies."""
    folder, data_args, gen_args = plan.folder, plan.data_args, plan.generation_args
    rows = read_jsonl_tolerant(folder / run_files.TEST_PREDICTIONS)
    latencies = [row[row_keys.LATENCY_MS] for row in rows]
    latency_mode = rows[0][row_keys.LATENCY_MODE] if rows else "per_example"
    atomic_write_jsonl(folder / run_files.TEST_LATENCIES,
                       ({row_keys.ID: row[row_keys.ID], row_keys.LATENCY_MS: row[row_keys.LATENCY_MS]} for row in rows))
    metrics: dict[str, Any] = {
        **self_consistency_metrics(rows, get_target(data_args.target_field).summarize),
        **inference_totals(rows, generated=generation_stats.generated,
                           session_seconds=timing.values["test_inference_duration_seconds"],
                           session_new_tokens=generation_stats.new_tokens),
        "inference_latency_mode": latency_mode,
        "inference_batch_size": gen_args.inference_batch_size,
        "inference_engine": gen_args.inference_engine,
        "constrained_decoding": gen_args.constrained_decoding,
        "latency_file": str(folder / run_files.TEST_LATENCIES),
        "output_jsonl": str(folder / run_files.TEST_PREDICTIONS),
        "prompts_truncated": plan.test.truncation.truncated,
        "prompts_over_length": plan.test.truncation.over_length,
        "input_mode": data_args.input_mode,
        "eval_type": plan.eval_type,
        "few_shot_k": data_args.few_shot_k,
        "inference_backend": gen_args.inference_backend,
        "test_file": data_args.test_file,
        **{k: v for k, v in dataclasses.asdict(gen_args).items() if k.startswith("generation_")},
    }
    atomic_write_json(folder / run_files.TEST_METRICS, metrics)
    plot_latency_histogram(latencies, folder, mode=latency_mode)
    return metrics, latencies
