"""The choices of the model-loading knobs, torch-free so that argument checking stays fast."""

PEFT_MODES = ("none", "lora", "qlora")
BNB_QUANT_TYPES = ("nf4", "fp4")
DTYPES = ("auto", "float32", "float16", "bfloat16")
