"""Test inference: batched generation streamed to a resumable predictions file."""
