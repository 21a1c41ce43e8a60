"""Model diffing: paired activations in shards, the crosscoder, its training loop and its analysis."""
