"""The torch-free core: FinQA records, contexts, prompts and targets, the DSL executor and the metrics."""
