"""A run under several processes (``torchrun``, ``accelerate launch``): the launch check, logging per rank, and
the run folder chosen once.

The process group is the one ``TrainingArguments`` set up through accelerate's ``PartialState``; nothing here
starts processes or talks to them beyond accelerate's own ``broadcast_object_list``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.cpu_4bit import import_bitsandbytes_offline

import_bitsandbytes_offline()  # transformers.training_args imports peft, which imports bitsandbytes: without the Hub

from transformers.training_args import ParallelMode  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def process_state(training_args) -> PartialState:
    """The process group of this run, as ``training_args`` set it up. Raises :class:`UsageError` when the launcher
    started several processes that ``TrainingArguments`` does not join into one distributed group (on a machine
    without a GPU it takes ``--use_cpu``), since each would then run the whole job alone."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.parallel_mode != ParallelMode.DISTRIBUTED:
        raise UsageError(f"launched as {launched} processes, but TrainingArguments did not set up distributed "
                         f"training ({training_args.parallel_mode}): on a machine without a GPU add --use_cpu "
                         "(gloo backend).")
    return training_args.distributed_state


def configure_logging(training_args) -> None:
    """Log at INFO on the main process (``--log_level`` when given) and at ``--log_level_replica`` (default
    warning) on the others, whose lines name their rank and which show no transformers progress bars (the
    Trainer's and test inference's bars are the main process's only)."""
    level = training_args.get_process_log_level()
    if training_args.should_log and training_args.log_level == "passive":
        level = logging.INFO
    rank = f"[rank {training_args.process_index}] " if training_args.world_size > 1 else ""
    logging.basicConfig(format=LOG_FORMAT.replace("%(name)s", rank + "%(name)s"))  # no-op if already configured
    logging.getLogger().setLevel(level)
    if not training_args.should_log:
        transformers_logging.disable_progress_bar()
        os.environ["TQDM_DISABLE"] = "1"  # our own bars too (tqdm reads it when a bar is made)


def from_main_process(state: PartialState, make: Callable[[], Path]) -> Path:
    """Call ``make`` on the main process only and return its result on every process (``make`` creates the run
    folder: chosen once, so ranks never race for a name)."""
    made = [make() if state.is_main_process else None]
    return broadcast_object_list(made)[0]
