"""Completion-only training data, batching and the HF Trainer run."""
