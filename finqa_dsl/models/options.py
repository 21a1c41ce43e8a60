"""How a model is loaded: the choices of each knob and :class:`ModelOptions`, torch-free so that argument
checking stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from finqa_dsl.core.errors import UsageError

PEFT_MODES = ("none", "lora", "qlora")
BNB_QUANT_TYPES = ("nf4", "fp4")
DTYPES = ("auto", "float32", "float16", "bfloat16")
ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class ModelOptions:
    """What :func:`finqa_dsl.models.loading.load_model` makes of a checkpoint (the driver's model flags).

    - ``peft="none"``: the plain model, all weights trainable (full fine-tune, or evaluation).
    - ``peft="lora"``: a fresh LoRA adapter (``lora_*``) on a frozen base.
    - ``peft="qlora"``: the base in 4-bit (``bnb_4bit_*``), prepared for k-bit training, plus a fresh LoRA.

    ``quantize_4bit`` (None: ``peft == "qlora"``) loads the base in 4-bit without training it, e.g. to evaluate
    a QLoRA run. ``torch_dtype="auto"`` keeps the checkpoint's dtype; ``bnb_4bit_compute_dtype="auto"`` is
    bfloat16 on a GPU that has it, float16 on an older GPU, float32 on CPU. ``attn_implementation`` None picks
    per family (eager for Gemma-3, sdpa otherwise). Gradient checkpointing is non-reentrant and turns the KV
    cache off. A bad choice raises :class:`UsageError` naming the driver's flag.
    """

    peft: str = "none"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = ALL_LINEAR
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_compute_dtype: str = "auto"
    bnb_4bit_use_double_quant: bool = True
    torch_dtype: str = "auto"
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False
    quantize_4bit: bool | None = None

    def __post_init__(self) -> None:
        choices = {"--peft": (self.peft, PEFT_MODES),
                   "--bnb_4bit_quant_type": (self.bnb_4bit_quant_type, BNB_QUANT_TYPES),
                   "--bnb_4bit_compute_dtype": (self.bnb_4bit_compute_dtype, DTYPES),
                   "--torch_dtype": (self.torch_dtype, DTYPES)}
        for flag, (value, allowed) in choices.items():
            if value not in allowed:
                raise UsageError(f"{flag} {value!r} is not one of: {', '.join(allowed)}.")
        if self.quantize_4bit is None:
            object.__setattr__(self, "quantize_4bit", self.peft == "qlora")
        if self.peft == "qlora" and not self.quantize_4bit:
            raise UsageError("--peft qlora trains LoRA on a 4-bit base: it cannot go with quantize_4bit=False.")
        if self.peft != "none" and self.lora_r < 1:
            raise UsageError(f"--lora_r must be >= 1, got {self.lora_r}.")
        parse_target_modules(self.lora_target_modules)


def parse_target_modules(lora_target_modules: str) -> str | list[str]:
    """``all-linear`` as is, else the comma-separated module names as a list."""
    if lora_target_modules.strip() == ALL_LINEAR:
        return ALL_LINEAR
    names = [name.strip() for name in lora_target_modules.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--lora_target_modules {lora_target_modules!r}: give {ALL_LINEAR} or module names "
                         "separated by commas (e.g. q_proj,k_proj,v_proj,o_proj).")
    return names
