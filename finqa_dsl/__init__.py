"""FinQA fine-tuning toolkit: DSL, evaluation, data layer (torch-free) and the training driver parts."""

from finqa_dsl.models.cpu_4bit import quiet_kernel_notice

# Before anything imports transformers (which imports bitsandbytes): its CPU-kernel notice only matters to 4-bit.
quiet_kernel_notice()
