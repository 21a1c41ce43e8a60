"""Teacher code distillation: CSV preprocessing, the gold-program transpiler, later teacher clients and filtering."""
