"""A driver run decided in full before it starts: :func:`prepare` turns a command line into a :class:`RunPlan`.

Every setting is resolved here, once: the model source, the evaluation type and its few-shot default, the
inference engine that ``auto`` means for this model, the generation settings, the run folder, the Trainer's
output folder and reporters. Every user error (a bad flag or flag combination, a missing or malformed dataset
file, prompts that cannot fit, a model source that is not there) is raised here too, before any model weights
load. :func:`finqa_dsl.driver.pipeline.execute` then only reads the plan, and ``args.json`` is written from
:meth:`RunPlan.recorded`, so it records what ran.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import Example
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.prompts import PromptRecord, TruncationStats, build_prompt_records
from finqa_dsl.driver.arguments import (
    OUTPUT_ROOT,
    DataArguments,
    GenerationArguments,
    ModelArguments,
    RunArguments,
    generation_settings,
    resolve_eval_type,
    resolved_few_shot_k,
    validate,
)
from finqa_dsl.driver.command_line import parse_command_line
from finqa_dsl.driver.inputs import check_prompts_fit, load_splits
from finqa_dsl.inference.interface import HF, GenerationSettings
from finqa_dsl.models.options import ModelOptions
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs.folder import resolve_run_folder
from finqa_dsl.runs.processes import from_main_process, process_state
from finqa_dsl.training.options import train_sampling_strategy


@dataclass(frozen=True)
class PromptSplit:
    """One split's examples and the prompt records built from them."""

    flag: str  # the flag that named its file, for messages
    path: str
    examples: list[Example]
    records: list[PromptRecord]
    truncation: TruncationStats


@dataclass(frozen=True)
class RunPlan:
    """What one driver run does, every setting resolved. Read, never changed, by
    :func:`~finqa_dsl.driver.pipeline.execute`."""

    model_args: ModelArguments
    data_args: DataArguments  # few_shot_k: the default of a few-shot run filled in
    generation_args: GenerationArguments  # inference_engine: what ``auto`` means for this model
    run_args: RunArguments  # eval_type and output_folder resolved
    training_args: Any  # TrainingArguments; output_dir, report_to and run_name resolved
    model_name: str  # hub id or folder (the default model's prepared folder when none was given)
    folder: Path  # the run folder (made by execute)
    train: PromptSplit | None
    eval: PromptSplit | None
    test: PromptSplit | None
    model_options: ModelOptions  # how the model loads
    hub_repo: str | None  # --push_to_hub: the repository the trained final_model/ is uploaded to
    generation_settings: GenerationSettings  # how the test inference decodes
    tokenizer: Any
    state: Any  # accelerate's PartialState: which process this is

    @property
    def eval_type(self) -> str:
        return self.run_args.eval_type

    def recorded(self) -> dict[str, Any]:
        """Every flag as the run uses it, the resolved model source and run folder (``args.json``)."""
        flat: dict[str, Any] = {}
        for group in (self.model_args, self.data_args, self.generation_args, self.run_args, self.training_args):
            flat.update(group.to_dict() if hasattr(group, "to_dict") else dataclasses.asdict(group))
        flat.update(resolved_model_name=self.model_name, resolved_output_dir=str(self.folder),
                    resolved_hub_repo=self.hub_repo)
        return json.loads(json.dumps(flat, default=str))

    def flag_defaults(self) -> dict[str, Any]:
        """Each flag's default as :meth:`recorded` writes it: what a run whose ``args.json`` predates the flag used."""
        defaults: dict[str, Any] = {}
        for group in (self.model_args, self.data_args, self.generation_args, self.run_args, self.training_args):
            for flag in dataclasses.fields(group):
                if flag.default is not dataclasses.MISSING:
                    defaults[flag.name] = flag.default
                elif flag.default_factory is not dataclasses.MISSING:
                    defaults[flag.name] = flag.default_factory()
        return json.loads(json.dumps(defaults, default=str))


def model_options(model: ModelArguments, training) -> ModelOptions:
    """How the model loads (every model flag checked): ``--peft`` trains an adapter only with ``--do_train``; a
    run without training loads the base as it is, in 4-bit for ``--peft qlora``."""
    options = ModelOptions(
        peft=model.peft, lora_r=model.lora_r, lora_alpha=model.lora_alpha, lora_dropout=model.lora_dropout,
        lora_target_modules=model.lora_target_modules, bnb_4bit_quant_type=model.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=model.bnb_4bit_compute_dtype,
        bnb_4bit_use_double_quant=model.bnb_4bit_use_double_quant, torch_dtype=model.torch_dtype,
        attn_implementation=model.attn_implementation,
        gradient_checkpointing=training.gradient_checkpointing and training.do_train,
    )
    return options if training.do_train else dataclasses.replace(options, peft="none")


def prepare(argv: list[str]) -> RunPlan:
    """The plan of the run that ``argv`` describes: flags parsed and checked, data loaded and checked, prompts
    built, every setting resolved. Loads the tokenizer and the model's config, never its weights.

    Raises :class:`~finqa_dsl.core.errors.UsageError`, :class:`~finqa_dsl.core.data.DatasetError` or
    :class:`~finqa_dsl.models.default_model.DefaultModelUnavailable` for what the user must change, and
    ``ValueError`` where ``TrainingArguments`` refuses a flag. Under several processes every process calls it;
    the run folder is chosen by the main process.
    """
    from finqa_dsl.models.loading import check_precision, load_tokenizer, resolve_model_name
    from finqa_dsl.models.source import check_model_source

    model_args, data_args, gen_args, run_args, training_args = parse_command_line(argv)
    validate(model_args, data_args, gen_args, run_args, training_args)
    eval_type = resolve_eval_type(run_args, data_args, training_args)
    data_args = dataclasses.replace(data_args, few_shot_k=resolved_few_shot_k(eval_type, data_args.few_shot_k))
    state = process_state(training_args)
    options = model_options(model_args, training_args)
    check_precision(bf16=training_args.bf16, fp16=training_args.fp16, torch_dtype=options.torch_dtype,
                    compute_dtype=options.bnb_4bit_compute_dtype if options.quantize_4bit else None)

    context_config = context_config_of(data_args)
    splits = load_splits(data_args, context_config, do_train=training_args.do_train, do_eval=training_args.do_eval,
                         do_test=run_args.do_test)
    model_name = resolve_model_name(model_args.model_name)
    check_model_source(model_name)
    tokenizer = load_tokenizer(model_name)

    def prompts(examples: list[Example] | None, flag: str, path: str) -> PromptSplit | None:
        if examples is None:
            return None
        records, stats = build_prompt_records(
            examples, target_field=data_args.target_field, context_config=context_config, tokenizer=tokenizer,
            max_prompt_tokens=model_args.max_seq_length - gen_args.generation_max_new_tokens,
            few_shot=splits.few_shot, instruction=data_args.task_instruction or None,
            with_grammar=gen_args.constrained_decoding and flag == "--test_file",
        )
        check_prompts_fit(records, stats, flag, path, max_seq_length=model_args.max_seq_length,
                          max_new_tokens=gen_args.generation_max_new_tokens)
        return PromptSplit(flag, path, examples, records, stats)

    engine = resolved_engine(gen_args, data_args.target_field, model_name) if run_args.do_test else \
        gen_args.inference_engine
    gen_args = dataclasses.replace(gen_args, inference_engine=engine)
    name = run_args.output_folder or default_folder_name(model_name, data_args)
    run_args = dataclasses.replace(run_args, eval_type=eval_type, output_folder=name)
    plan = RunPlan(
        model_args=model_args, data_args=data_args, generation_args=gen_args, run_args=run_args,
        training_args=training_args, model_name=str(model_name), folder=Path(), model_options=options,
        generation_settings=generation_settings(gen_args, data_args.target_field), tokenizer=tokenizer, state=state,
        hub_repo=None,
        train=prompts(splits.train, "--train_file", data_args.train_file),
        eval=prompts(splits.eval, "--eval_file", data_args.eval_file),
        test=prompts(splits.test, "--test_file", data_args.test_file),
    )
    if training_args.push_to_hub:
        check_push_to_hub(training_args)

    def in_folder(folder: Path) -> RunPlan:
        hub_repo = (training_args.hub_model_id or folder.name) if training_args.push_to_hub else None
        return dataclasses.replace(plan, folder=folder, hub_repo=hub_repo,
                                   training_args=_training_args_for(training_args, folder, run_args))

    # The folder is chosen against the args it will record (an interrupted run with the same args resumes).
    planned = in_folder(OUTPUT_ROOT / name)
    args, defaults = planned.recorded(), planned.flag_defaults()
    return in_folder(from_main_process(state, lambda: resolve_run_folder(OUTPUT_ROOT, name, args, defaults)))


def context_config_of(data_args: DataArguments) -> ContextConfig:
    """The context each prompt gets (``--input_mode``, its noise knobs, ``--table_format``)."""
    return ContextConfig(input_mode=data_args.input_mode, text_distractors=data_args.noisy_text_distractors,
                         table_distractors=data_args.noisy_table_distractors, seed=data_args.noisy_context_seed,
                         table_format=data_args.table_format)


def resolved_engine(gen_args: GenerationArguments, target_field: str, model_name: str) -> str:
    """The engine the test inference runs: ``--inference_engine``, with ``auto`` decided for this model's
    architecture (its config, not its weights) and the decoding settings. vLLM keeps ``auto`` (its own)."""
    if gen_args.inference_backend != HF:
        return gen_args.inference_engine
    from transformers import AutoConfig

    from finqa_dsl.inference.hf_backend import resolve_engine
    from finqa_dsl.models.source import adapter_base, is_adapter_dir

    base = adapter_base(model_name) if is_adapter_dir(model_name) else model_name
    return resolve_engine(generation_settings(gen_args, target_field), AutoConfig.from_pretrained(base))


def default_folder_name(model_name: str, data_args: DataArguments) -> str:
    """``<model>-input_<mode>-output_<target>``, as the FinQA fine-tuning driver names its run folders."""
    model = Path(str(model_name).rstrip("/")).name.lower().replace(".", "-")
    return f"{model}-input_{data_args.input_mode}-output_{data_args.target_field}"


def check_push_to_hub(training_args) -> None:
    """``--push_to_hub`` uploads the trained final_model/ (to ``--hub_model_id``, else a repository named as the
    run folder): it needs training, a Hugging Face login and network, checked before anything runs."""
    from finqa_dsl.models.hub import check_hub_access

    if not training_args.do_train:
        raise UsageError("--push_to_hub uploads the trained model (final_model/): add --do_train.")
    check_hub_access("--push_to_hub")


def _training_args_for(training_args, folder: Path, run_args: RunArguments):
    """``TrainingArguments`` writing checkpoints into the run folder, reporting to W&B when asked. The Trainer
    pushes nothing itself (it would upload checkpoints/ on every save): the driver uploads final_model/, as
    ``scripts/merge_lora.py --push_to_hub`` uploads a merged model (:mod:`finqa_dsl.models.hub`)."""
    changes: dict[str, Any] = {
        "output_dir": str(folder / run_files.CHECKPOINTS), "push_to_hub": False,
        "train_sampling_strategy": train_sampling_strategy(training_args.train_sampling_strategy,
                                                           run_args.padding_free),
    }
    if run_args.wandb_project and run_args.wandb_mode != "disabled":
        reporters = [training_args.report_to] if isinstance(training_args.report_to, str) \
            else list(training_args.report_to or [])
        changes["report_to"] = [r for r in reporters if r not in ("none", "wandb")] + ["wandb"]
        changes["run_name"] = run_args.wandb_run_name or folder.name
    return dataclasses.replace(training_args, **changes)
