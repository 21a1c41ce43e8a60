"""What a run reads, loaded and checked before its folder is made or any model loads: the dataset splits it
needs (each file valid and, after ``--max_*_samples``, not empty) and prompts that fit ``--max_seq_length``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import Example, load_examples
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.prompts import PromptRecord, TruncationStats, select_few_shot


@dataclass(frozen=True)
class Splits:
    """The examples of each split the run uses (None: not used), first ``--max_*_samples`` only."""

    train: list[Example] | None
    eval: list[Example] | None
    test: list[Example] | None
    few_shot: list[Example]


def load_splits(data_args, context_config: ContextConfig, *, do_train: bool, do_eval: bool,
                do_test: bool) -> Splits:
    """Load and validate every split the run needs (a file used twice is read once).

    Raises :class:`~finqa_dsl.core.data.DatasetError` for a malformed file and :class:`UsageError` for a split
    without examples or too few few-shot exemplars.
    """
    loaded: dict[str, list[Example]] = {}

    def examples(flag: str, path: str, limit: int) -> list[Example]:
        if path not in loaded:
            loaded[path] = load_examples(path, bad_program=data_args.bad_program)
        chosen = loaded[path][:limit] if limit else loaded[path]
        if not chosen:
            raise UsageError(f"{flag} {path}: no examples (the file holds no records)")
        return chosen

    train = examples("--train_file", data_args.train_file, data_args.max_train_samples) if do_train else None
    few_shot: list[Example] = []
    if data_args.few_shot_k:
        pool = examples("--train_file", data_args.train_file, 0)
        try:
            few_shot = select_few_shot(pool, data_args.few_shot_k, target_field=data_args.target_field,
                                       context_config=context_config)
        except ValueError as error:
            raise UsageError(f"--few_shot_k {data_args.few_shot_k}: --train_file {data_args.train_file}: {error}"
                             ) from None
    return Splits(
        train=train,
        eval=examples("--eval_file", data_args.eval_file, data_args.max_eval_samples) if do_eval else None,
        test=examples("--test_file", data_args.test_file, data_args.max_test_samples) if do_test else None,
        few_shot=few_shot,
    )


def check_prompts_fit(records: Sequence[PromptRecord], stats: TruncationStats, flag: str, path: str, *,
                      max_seq_length: int, max_new_tokens: int) -> None:
    """Refuse sizes under which not one prompt of a split fits, even with all its droppable context dropped
    (``records`` and ``stats`` as ``build_prompt_records`` made them with ``max_prompt_tokens``)."""
    if stats.examples and stats.over_length == stats.examples:
        shortest = min(record.prompt_tokens for record in records)
        raise UsageError(
            f"--max_seq_length {max_seq_length} minus --generation_max_new_tokens {max_new_tokens} leaves "
            f"{stats.max_prompt_tokens} prompt tokens, but the shortest prompt of {flag} {path} needs {shortest} "
            "even with its context cut: raise --max_seq_length"
        )
