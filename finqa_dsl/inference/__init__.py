"""Test inference: backends whose generations stream to a resumable predictions file, split across processes
under torchrun.

- :mod:`.interface`: what a backend takes and gives (``GenerationSettings``, ``Generation``, ``Backend``), the
  registry of engines and which settings each backend and engine honours (``check_settings``).
- :mod:`.hf_backend`: the Hugging Face backend, the entry point for a loaded transformers model; it runs one of
  the engines in :mod:`.engines` (static, prefix, continuous).
- :mod:`.vllm_backend`: the vLLM backend.
- :mod:`.predictions_file` and :mod:`.distributed`: generations streamed to the predictions file, resumed, and
  split across processes; :mod:`.stopping`: when a generation is complete.
- :mod:`.side_by_side`: a base model and its fine-tuned version answering the same prompt.
"""
