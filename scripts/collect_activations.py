#!/usr/bin/env python
"""Collect paired activations of a base and a fine-tuned model on FinQA prompts, streamed to shards.

    python scripts/collect_activations.py --ft_model RUN/final_model --data_file FinQA/sample/train.json \\
        --num_examples 200 --layer 15 --output_dir acts/smollm2-l15-mlp

The same token ids (prompt + gold target, or prompt + the fine-tuned model's own greedy generation, encoded
exactly as training encodes them) go through both models; a forward hook catches one layer's MLP output
(--site mlp) or residual stream (--site resid). Shards hold activations (--dtype), token ids, example ids and
positions, with a manifest; memory stays flat in --num_examples.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from finqa_dsl.core.context import INPUT_MODES, ContextConfig
from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.targets import TARGET_FIELDS
from finqa_dsl.diffing.shards import DTYPES

RECIPES = ("target", "generation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_model", default=None, help="hub id or folder (default: the default model)")
    p.add_argument("--ft_model", required=True, help="fine-tuned model: adapter folder, merged folder or hub id")
    p.add_argument("--data_file", type=Path, required=True, help="FinQA-format JSON split")
    p.add_argument("--num_examples", type=int, default=None, help="first N examples (default: all)")
    p.add_argument("--recipe", choices=RECIPES, default="target",
                   help="text after the prompt: the gold target, or the fine-tuned model's own generation")
    p.add_argument("--target_field", choices=TARGET_FIELDS, default="program")
    p.add_argument("--input_mode", choices=INPUT_MODES, default="gold")
    p.add_argument("--layer", type=int, required=True, help="decoder layer index (negative counts from the end)")
    p.add_argument("--site", choices=("mlp", "resid"), default="mlp")
    p.add_argument("--positions", choices=("all", "completion"), default="all",
                   help="keep every token after the first, or only the completion's tokens")
    p.add_argument("--max_length", type=int, default=2048, help="longer sequences are skipped (and counted)")
    p.add_argument("--max_new_tokens", type=int, default=128, help="--recipe generation only")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16", help="stored activation dtype")
    p.add_argument("--rows_per_shard", type=int, default=65_536)
    p.add_argument("--output_dir", type=Path, required=True)
    return p.parse_args(argv)


def check(args: argparse.Namespace) -> list:
    """Everything that can be checked before a model loads; returns the examples."""
    if args.output_dir.exists() and any(args.output_dir.iterdir()):
        raise UsageError(f"--output_dir {args.output_dir} is not empty: choose a new folder")
    for flag in ("num_examples", "max_length", "max_new_tokens", "batch_size", "rows_per_shard"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag} must be positive, got {value}")
    examples = load_examples(args.data_file)[: args.num_examples]
    if not examples:
        raise UsageError(f"{args.data_file}: no examples")
    from transformers import AutoConfig

    from finqa_dsl.models.loading import resolve_model_name

    base_name = resolve_model_name(args.base_model, "--base_model")
    resolve_model_name(args.ft_model, "--ft_model")  # a Hub id is fetched (or refused) before any model loads
    n_layers = AutoConfig.from_pretrained(base_name).get_text_config().num_hidden_layers
    if not -n_layers <= args.layer < n_layers:
        raise UsageError(f"--layer {args.layer} is out of range: {base_name} has {n_layers} decoder layers")
    return examples


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        examples = check(args)
    except (UsageError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from finqa_dsl.core.chat import pad_token_id
    from finqa_dsl.core.prompts import build_prompt_records
    from finqa_dsl.diffing.collect import SequenceBuilder, collect_paired_activations
    from finqa_dsl.diffing.shards import ShardWriter
    from finqa_dsl.inference.interface import GenerationSettings
    from finqa_dsl.models.loading import load_model, load_tokenizer, prepare_for_inference, resolve_model_name

    base_name = resolve_model_name(args.base_model, "--base_model")
    ft_name = resolve_model_name(args.ft_model, "--ft_model")
    tokenizer = load_tokenizer(base_name)
    if load_tokenizer(ft_name).get_vocab() != tokenizer.get_vocab():
        print(f"error: {args.ft_model} and {base_name} have different vocabularies: activations cannot be paired",
              file=sys.stderr)
        return 2
    records, _ = build_prompt_records(examples, target_field=args.target_field,
                                      context_config=ContextConfig(input_mode=args.input_mode), tokenizer=tokenizer)
    base = prepare_for_inference(load_model(base_name))
    ft = prepare_for_inference(load_model(ft_name))
    builder = SequenceBuilder(tokenizer, positions=args.positions, max_length=args.max_length)
    sequences = builder.from_targets(records) if args.recipe == "target" else builder.from_generations(
        ft, records, GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size))
    d_model = base.config.get_text_config().hidden_size
    metadata = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    metadata.update(base_model=str(base_name), example_ids=[example.id for example in examples])
    writer = ShardWriter(args.output_dir, d_model=d_model, dtype=args.dtype, rows_per_shard=args.rows_per_shard,
                         metadata=metadata)
    rows = collect_paired_activations(base, ft, sequences, writer, layer=args.layer, site=args.site,
                                      batch_size=args.batch_size, pad_id=pad_token_id(tokenizer),
                                      total=len(records))
    writer.metadata["skipped_too_long"] = builder.too_long
    print(writer.close())
    print(f"{rows} paired activation rows from {len(records) - builder.too_long} examples "
          f"({builder.too_long} longer than --max_length skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
