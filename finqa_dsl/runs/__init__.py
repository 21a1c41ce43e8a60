"""Run folders and what a run writes besides predictions: file names, timing, plots, W&B, comparisons."""
