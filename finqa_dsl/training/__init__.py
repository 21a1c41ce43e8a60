"""Completion-only training data, batching, the target-only loss and the HF Trainer run."""
