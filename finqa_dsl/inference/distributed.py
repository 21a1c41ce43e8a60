"""Test inference split across the processes of ``torchrun`` / ``accelerate launch``, merged into one file.

Every process generates its contiguous share of the records (``PartialState.split_between_processes``) into its
own shard file, skipping ids that any earlier, interrupted attempt already wrote (with any number of processes).
When all are done, the main process merges the shards into the predictions file: each example once, in the order
of the records. With one process this is :func:`~finqa_dsl.inference.predictions_file.generate_to_file` on the
predictions file itself, followed by the same merge (which puts the rows in record order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from accelerate import PartialState
from accelerate.utils import gather_object

from finqa_dsl.inference.interface import Backend, GenerationSettings
from finqa_dsl.inference.predictions_file import GenerationStats, generate_to_file, merge_shards


def generate_across_processes(backend: Backend, records: Sequence, path: str | os.PathLike, *,
                              settings: GenerationSettings, state: PartialState,
                              annotate: Callable[[Any, str], dict[str, Any]] | None = None) -> GenerationStats:
    """Generate every record once across the processes of ``state`` and merge into ``path`` (see the module
    docstring). Every process must call it; it returns on all of them once ``path`` is merged, with the totals
    (``seconds``: the slowest process)."""
    with state.split_between_processes(list(records)) as share:
        mine = generate_to_file(backend, share, path, settings=settings, annotate=annotate,
                                rank=state.process_index, world_size=state.num_processes)
    every = gather_object([mine])
    if state.is_main_process:
        merge_shards(path, records, settings.num_samples)
    state.wait_for_everyone()
    return GenerationStats(generated=sum(s.generated for s in every), skipped=sum(s.skipped for s in every),
                           seconds=max(s.seconds for s in every), new_tokens=sum(s.new_tokens for s in every))
