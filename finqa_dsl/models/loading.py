"""Tokenizer and causal-LM loading: full fine-tune, LoRA, QLoRA (4-bit bitsandbytes) and saved adapters.

``name_or_path`` is anything ``from_pretrained`` accepts (hub id, local model folder) or a PEFT adapter
folder (``adapter_config.json``): its base model is loaded first and the adapter attached. ``None`` means the
default model (:mod:`finqa_dsl.models.default_model`). The knobs are one
:class:`~finqa_dsl.models.options.ModelOptions`; the driver builds it from its flags and calls
:func:`check_precision` before loading anything.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from packaging.version import Version
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.cpu_4bit import check_4bit_layers, import_bitsandbytes_offline, log_kernel_notice
from finqa_dsl.models.default_model import default_model_path
from finqa_dsl.models.hub import model_source
from finqa_dsl.models.options import ModelOptions, parse_target_modules
from finqa_dsl.models.source import ADAPTER_CONFIG, adapter_base, is_adapter_dir  # noqa: F401 (ADAPTER_CONFIG: API)

logger = logging.getLogger(__name__)

TOKENIZER_CONFIG = "tokenizer_config.json"
# transformers recommends training Gemma-3 with eager attention; every other family gets sdpa.
EAGER_ATTENTION_MODEL_TYPES = frozenset({"gemma3", "gemma3_text"})
# Linear layers of non-text towers (Gemma-3 4B is loaded with its vision tower) get no LoRA.
NON_TEXT_MODULES = r"(.*\.)?(vision_tower|vision_model|multi_modal_projector|audio_tower)(\..*)?"
MIN_BITSANDBYTES_FOR_CPU_4BIT = Version("0.49")
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_CHECKPOINTING_KWARGS = {"use_reentrant": False}


def resolve_model_name(name_or_path: str | None, flag: str = "--model_name") -> str:
    """What to load for a model flag: the prepared default model folder when it is None or empty, else
    :func:`finqa_dsl.models.hub.model_source` (a folder as it is, an adapter's Hub id as its local snapshot, any
    other Hub id unchanged)."""
    return model_source(name_or_path, flag) if name_or_path else str(default_model_path())


def load_tokenizer(name_or_path: str):
    """The tokenizer of a model or adapter folder, with a pad token.

    Pad token: the tokenizer's own when it has one (Qwen2.5 ``<|endoftext|>``, Gemma-3 ``<pad>``, the
    default model ``<|endoftext|>``); else its unk token (Mistral ``<unk>``), which is never a target, so
    padding cannot be confused with the end-of-turn token; else its eos token. The padding side is left to
    the caller (right for training, left for batched generation).
    """
    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_source(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        logger.info("%s has no pad token: padding with %r", name_or_path, tokenizer.pad_token)
    return tokenizer


def default_attn_implementation(model_type: str) -> str:
    """``eager`` for Gemma-3, ``sdpa`` for every other family."""
    return "eager" if model_type in EAGER_ATTENTION_MODEL_TYPES else "sdpa"


def check_precision(*, bf16: bool = False, fp16: bool = False, compute_dtype: str | None = None,
                    torch_dtype: str | None = None) -> None:
    """Raise :class:`UsageError` saying what to pass instead when the hardware cannot run the precision asked.

    ``compute_dtype`` is the QLoRA compute dtype (None without 4-bit loading); giving it also checks that
    bitsandbytes can quantise on this machine. bfloat16 on a GPU needs native support (Ampere or newer);
    on CPU, PyTorch runs bfloat16 and float16 everywhere.
    """
    if bf16 and fp16:
        raise UsageError("--bf16 and --fp16 are both set: pass one of them.")
    asked = {"--bf16": bf16, "--torch_dtype bfloat16": torch_dtype == "bfloat16",
             "--bnb_4bit_compute_dtype bfloat16": compute_dtype == "bfloat16"}
    wants_bf16 = [flag for flag, wanted in asked.items() if wanted]
    if wants_bf16 and torch.cuda.is_available() and not _cuda_has_native_bf16():
        major, minor = torch.cuda.get_device_capability()
        raise UsageError(
            f"{', '.join(wants_bf16)}: the GPU {torch.cuda.get_device_name()} (compute capability "
            f"{major}.{minor}) has no native bfloat16 (it needs 8.0, Ampere, or newer). Use --fp16 with "
            "--torch_dtype float32 (or float16 for LoRA/QLoRA) and --bnb_4bit_compute_dtype float16, "
            "or full float32 precision."
        )
    if compute_dtype is not None:
        _check_bitsandbytes()


def load_model(name_or_path: str, options: ModelOptions | None = None):
    """Load a causal LM as ``options`` say (:class:`~finqa_dsl.models.options.ModelOptions`).

    An adapter folder is attached to its base instead of a fresh LoRA: trainable with ``peft`` lora/qlora
    (training continues), frozen for evaluation with ``peft="none"``.
    """
    options = options or ModelOptions()
    import_bitsandbytes_offline()  # peft imports it: without the Hub, as everywhere in this package
    adapter_dir = name_or_path if is_adapter_dir(name_or_path) else None
    base_name = adapter_base(adapter_dir) if adapter_dir else name_or_path
    model_type = AutoConfig.from_pretrained(base_name).model_type
    kwargs = {"dtype": _TORCH_DTYPES.get(options.torch_dtype, options.torch_dtype),
              "attn_implementation": options.attn_implementation or default_attn_implementation(model_type)}
    if options.quantize_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=options.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=options.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=resolve_compute_dtype(options.bnb_4bit_compute_dtype, options.torch_dtype),
        )
        kwargs["device_map"] = _local_device_map()
    model = AutoModelForCausalLM.from_pretrained(base_name, **kwargs)
    logger.info("Loaded %s (%s, attention %s%s)", base_name, model.dtype, model.config._attn_implementation,
                ", 4-bit " + options.bnb_4bit_quant_type if options.quantize_4bit else "")
    if options.quantize_4bit:
        check_4bit_layers(model, ignore=NON_TEXT_MODULES)
        if not torch.cuda.is_available():
            log_kernel_notice()

    training_adapter = options.peft != "none"
    if training_adapter:
        model = _prepare_base_for_adapter_training(model, options.quantize_4bit, options.gradient_checkpointing)
    elif options.gradient_checkpointing:
        _enable_gradient_checkpointing(model)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=training_adapter)
    elif training_adapter:
        model = _attach_lora(model, options)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("Trainable parameters: %d of %d", trainable, sum(p.numel() for p in model.parameters()))
    return model


def resolve_compute_dtype(compute_dtype: str, torch_dtype: str = "auto") -> torch.dtype:
    """The QLoRA compute dtype; ``auto``: a float16/bfloat16 ``torch_dtype``, else the best the device has."""
    if compute_dtype != "auto":
        return _TORCH_DTYPES[compute_dtype]
    if torch_dtype in ("float16", "bfloat16"):
        return _TORCH_DTYPES[torch_dtype]
    if torch.cuda.is_available():
        return torch.bfloat16 if _cuda_has_native_bf16() else torch.float16
    return torch.float32


def _cuda_has_native_bf16() -> bool:
    """Ampere or newer; older GPUs only emulate bfloat16 (slowly), which torch counts as support."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def _check_bitsandbytes() -> None:
    try:
        import bitsandbytes
    except ImportError as error:
        raise UsageError("--peft qlora needs bitsandbytes: pip install 'bitsandbytes>=0.49' "
                         "(or use --peft lora).") from error
    if not torch.cuda.is_available() and Version(bitsandbytes.__version__) < MIN_BITSANDBYTES_FOR_CPU_4BIT:
        raise UsageError(f"--peft qlora on CPU needs bitsandbytes >= {MIN_BITSANDBYTES_FOR_CPU_4BIT} (found "
                         f"{bitsandbytes.__version__}): pip install -U bitsandbytes, or use --peft lora.")


def _tokenizer_source(name_or_path: str) -> str:
    """An adapter folder saved without its tokenizer uses its base model's."""
    if is_adapter_dir(name_or_path) and not (Path(name_or_path) / TOKENIZER_CONFIG).is_file():
        return adapter_base(name_or_path)
    return name_or_path


def _local_device_map() -> dict[str, int | str] | None:
    """4-bit weights are placed at load time: on this process's GPU (``LOCAL_RANK`` under torchrun)."""
    return {"": int(os.environ.get("LOCAL_RANK", 0))} if torch.cuda.is_available() else None


def _prepare_base_for_adapter_training(model, quantized: bool, gradient_checkpointing: bool):
    if quantized:
        from peft import prepare_model_for_kbit_training

        # Freezes the base and upcasts its non-4-bit weights to float32; checkpointing is enabled below.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if gradient_checkpointing:
        _enable_gradient_checkpointing(model)
    return model


def _enable_gradient_checkpointing(model) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=_CHECKPOINTING_KWARGS)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=_CHECKPOINTING_KWARGS)
    model.config.use_cache = False


def _attach_lora(model, options: ModelOptions):
    from peft import LoraConfig, get_peft_model

    has_non_text = any(re.fullmatch(NON_TEXT_MODULES, name) for name, _ in model.named_modules())
    config = LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                        task_type="CAUSAL_LM", target_modules=parse_target_modules(options.lora_target_modules),
                        exclude_modules=NON_TEXT_MODULES if has_non_text else None)
    return get_peft_model(model, config)


def prepare_for_inference(model):
    """The model ready to generate: LoRA weights merged into an unquantised base (the same function,
    without the adapter's extra matmuls), the KV cache on, and on this process's GPU when one exists and
    the model was not placed at load time."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and not getattr(model, "is_loaded_in_4bit", False):
        model = model.merge_and_unload()
    model.config.use_cache = True
    if torch.cuda.is_available() and getattr(model, "hf_device_map", None) is None:
        model = model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return model.eval()
