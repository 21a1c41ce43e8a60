"""Model and tokenizer loading (full, LoRA, QLoRA, adapters), the offline default model, and whether an optional
GPU extra can run here."""
