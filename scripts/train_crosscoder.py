#!/usr/bin/env python
"""Train a BatchTopK (or L1) crosscoder on paired activation shards written by collect_activations.py.

    python scripts/train_crosscoder.py ACTIVATIONS_DIR --output_dir OUT --dict_size 16384 --k 100 --tokens 50_000_000

Writes OUT/crosscoder.pt, OUT/checkpoint.pt (resume with --resume), OUT/train_log.jsonl (FVE per model, L0,
dead latents) and OUT/train_config.json.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import asdict
from pathlib import Path

from finqa_dsl.core.errors import UsageError
from finqa_dsl.diffing import files
from finqa_dsl.diffing.crosscoder import SPARSITIES, CrosscoderConfig, default_device
from finqa_dsl.diffing.shards import ActivationShards
from finqa_dsl.diffing.training import CrosscoderTrainer, TrainConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig(steps=1)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("activations", type=Path, help="folder with manifest.json and shards")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--dict_size", type=int, default=16_384)
    p.add_argument("--k", type=int, default=100, help="BatchTopK: active latents per token on average")
    p.add_argument("--sparsity", choices=SPARSITIES, default="batchtopk")
    p.add_argument("--l1_coeff", type=float, default=defaults.l1_coeff, help="L1 crosscoder only")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int)
    length.add_argument("--tokens", type=int, help="train on this many tokens (rounded up to whole batches)")
    for name in ("batch_size", "lr", "warmup_steps", "weight_decay", "auxk_weight", "auxk_latents", "dead_tokens",
                 "threshold_start_step", "threshold_decay", "scale_batches", "seed", "log_every",
                 "checkpoint_every"):
        default = getattr(defaults, name)
        p.add_argument(f"--{name}", type=float if isinstance(default, float) else int, default=default)
    p.add_argument("--shards_in_memory", type=int, default=4, help="shards loaded and shuffled together")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.pt if present")
    p.add_argument("--wandb_project", help="log to Weights & Biases under this project")
    p.add_argument("--wandb_mode", default="online", choices=("online", "offline", "disabled"))
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[CrosscoderConfig, TrainConfig, ActivationShards]:
    """Validate the flags against the activation folder; raise UsageError/FileNotFoundError before training."""
    shards = ActivationShards(args.activations, shards_in_memory=args.shards_in_memory)
    steps = args.steps if args.steps is not None else math.ceil(args.tokens / args.batch_size)
    if args.batch_size > shards.rows:
        raise UsageError(f"--batch_size {args.batch_size} exceeds the {shards.rows} rows in {args.activations}")
    if args.k > args.dict_size:
        raise UsageError(f"--k {args.k} exceeds --dict_size {args.dict_size}")
    try:
        model = CrosscoderConfig(d_model=shards.d_model, dict_size=args.dict_size, n_models=shards.n_models,
                                 sparsity=args.sparsity, k=args.k)
        names = set(asdict(TrainConfig(steps=1))) - {"steps"}
        train = TrainConfig(steps=steps, **{name: getattr(args, name) for name in names})
    except ValueError as error:
        raise UsageError(str(error)) from None
    if shards.n_models != 2:
        raise UsageError(f"{args.activations}: {shards.n_models} models; the analysis expects a pair (base, ft)")
    return model, train, shards


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        model, train, shards = build(args)
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from finqa_dsl.runs.wandb_reporter import WandbReporter

    reporter = WandbReporter(args.wandb_project, args.wandb_mode, args.output_dir.name, args.output_dir,
                             {"crosscoder": asdict(model), "training": asdict(train),
                              "activations": str(args.activations)})
    trainer = CrosscoderTrainer(model, train, shards, args.output_dir, device=args.device or default_device(),
                                on_log=lambda row: reporter.log({f"train/{k}": v for k, v in row.items()}))
    trainer.train(resume=args.resume, progress=not args.no_progress)
    reporter.finish()
    print(args.output_dir / files.CROSSCODER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
