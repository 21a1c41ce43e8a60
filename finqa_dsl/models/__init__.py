"""Model and tokenizer loading (full, LoRA, QLoRA, adapters) and the offline default model."""
