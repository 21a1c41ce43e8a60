"""Test inference: backends (HF engines, vLLM) whose generations stream to a resumable predictions file, split
across processes under torchrun."""
