#!/usr/bin/env python
"""Train a BatchTopK (or L1) crosscoder on paired activation shards written by collect_activations.py.

    python scripts/train_crosscoder.py ACTIVATIONS_DIR --output_dir OUT --dict_size 16384 --k 100 --tokens 50_000_000

Writes OUT/crosscoder.pt, OUT/checkpoint.pt (resume with --resume), OUT/train_log.jsonl (loss and FVE per
model, L0, dead latents, threshold, share of latents whose class changed since the last row), OUT/train_config.json
and OUT/train_summary.json (whether the latents settled). The defaults are the published BatchTopK crosscoder
recipe (see finqa_dsl/diffing/training.py for each setting's source).
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
from finqa_dsl.models.hub import local_folder

TRAIN_FLAGS = ("batch_size", "lr", "beta1", "beta2", "warmup_steps", "decay_start", "grad_clip_norm", "weight_decay",
               "auxk_weight", "auxk_latents", "dead_tokens", "threshold_start_step", "threshold_decay",
               "scale_batches", "settle_window", "seed", "log_every", "checkpoint_every")
TRAIN_HELP = {"lr": "default: 2e-4 / sqrt(dict_size / 2**14), dictionary_learning's",
              "decay_start": "share of the steps after which the rate falls linearly to 0 (1.0: no decay)",
              "grad_clip_norm": "clip the gradient norm (0: off)",
              "settle_window": "convergence check over this last share of the steps"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig(steps=1)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("activations", help="folder with manifest.json and shards, or the Hub id of a dataset holding one")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--dict_size", type=int, default=16_384)
    p.add_argument("--k", type=int, default=100, help="BatchTopK: active latents per token on average")
    p.add_argument("--sparsity", choices=SPARSITIES, default="batchtopk")
    p.add_argument("--l1_coeff", type=float, default=defaults.l1_coeff, help="L1 crosscoder only")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int)
    length.add_argument("--tokens", type=int, help="train on this many tokens (rounded up to whole batches)")
    for name in TRAIN_FLAGS:
        default = getattr(defaults, name)
        p.add_argument(f"--{name}", type=float if isinstance(default, float) or name == "lr" else int, default=default,
                       help=TRAIN_HELP.get(name))
    model_defaults = CrosscoderConfig(d_model=1, dict_size=1)
    p.add_argument("--decoder_init_norm", type=float, default=model_defaults.decoder_init_norm,
                   help="norm of each model's decoder vector at the start (dictionary_learning's norm_init_scale)")
    p.add_argument("--same_init_for_all_models", action="store_true",
                   help="start each latent with the same direction in every model (not the published recipe)")
    p.add_argument("--no_init_with_transpose", dest="init_with_transpose", action="store_false",
                   help="draw the encoder on its own instead of as the decoder's transpose")
    p.add_argument("--shards_in_memory", type=int, default=4, help="shards loaded and shuffled together")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.pt if present")
    p.add_argument("--wandb_project", help="log to Weights & Biases under this project")
    p.add_argument("--wandb_mode", default="online", choices=("online", "offline", "disabled"))
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[CrosscoderConfig, TrainConfig, ActivationShards]:
    """Validate the flags against the activation folder; raise UsageError/FileNotFoundError before training."""
    folder = local_folder(args.activations, "activations", repo_type="dataset",
                          hint="collect them with scripts/collect_activations.py")
    shards = ActivationShards(folder, shards_in_memory=args.shards_in_memory)
    steps = args.steps if args.steps is not None else math.ceil(args.tokens / args.batch_size)
    if args.batch_size > shards.rows:
        raise UsageError(f"--batch_size {args.batch_size} exceeds the {shards.rows} rows in {args.activations}")
    if args.k > args.dict_size:
        raise UsageError(f"--k {args.k} exceeds --dict_size {args.dict_size}")
    try:
        model = CrosscoderConfig(d_model=shards.d_model, dict_size=args.dict_size, n_models=shards.n_models,
                                 sparsity=args.sparsity, k=args.k, decoder_init_norm=args.decoder_init_norm,
                                 same_init_for_all_models=args.same_init_for_all_models,
                                 init_with_transpose=args.init_with_transpose)
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
    reporter.log({f"summary/{k}": v for k, v in trainer.summary.items() if isinstance(v, (int, float, bool))})
    if not trainer.summary["settled"]:
        print(f"warning: the crosscoder had not settled: {trainer.summary['verdict']}", file=sys.stderr)
    reporter.finish()
    print(args.output_dir / files.CROSSCODER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
