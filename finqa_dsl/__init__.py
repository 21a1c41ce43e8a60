"""FinQA fine-tuning toolkit: DSL, evaluation, data layer (torch-free) and the training driver parts."""
