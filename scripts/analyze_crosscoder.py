#!/usr/bin/env python
"""Analyse a trained crosscoder: relative decoder norms, classes, shared-latent cosines, Latent Scaling.

    python scripts/analyze_crosscoder.py TRAIN_DIR_OR_CROSSCODER_PT ACTIVATIONS_DIR --output_dir OUT

Writes OUT/summary.json and PNG plots (relative-norm histogram, shared-cosine histogram, Latent Scaling
scatter of the fine-tuned-only latents), and prints the class counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict
from pathlib import Path

from finqa_dsl.core.errors import UsageError
from finqa_dsl.diffing import files
from finqa_dsl.diffing.analysis import Thresholds, summarize, write_report
from finqa_dsl.diffing.crosscoder import default_device, load_crosscoder
from finqa_dsl.diffing.shards import ActivationShards


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("crosscoder", type=Path, help="a training folder or its crosscoder.pt")
    p.add_argument("activations", type=Path, help="activation folder (manifest.json + shards)")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--tokens", type=int, default=200_000, help="tokens sampled for frequencies and Latent Scaling")
    p.add_argument("--batch_size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=20, help="latents listed per class")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    for name, value in asdict(Thresholds()).items():
        p.add_argument(f"--{name}", type=float, default=value)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.crosscoder / files.CROSSCODER if args.crosscoder.is_dir() else args.crosscoder
    try:
        thresholds = Thresholds(**{name: getattr(args, name) for name in asdict(Thresholds())})
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no crosscoder (train one with scripts/train_crosscoder.py)")
        shards = ActivationShards(args.activations)
        batch_size = min(args.batch_size, shards.rows, args.tokens)
        if batch_size < 1:
            raise UsageError("--tokens and --batch_size must be positive")
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    crosscoder = load_crosscoder(path).to(args.device or default_device())
    if (shards.n_models, shards.d_model) != (crosscoder.config.n_models, crosscoder.config.d_model):
        print(f"error: {args.activations} holds {shards.n_models} x {shards.d_model} activations, the crosscoder "
              f"expects {crosscoder.config.n_models} x {crosscoder.config.d_model}", file=sys.stderr)
        return 2
    stream = shards.batches(batch_size, seed=args.seed)
    batches = (batch["activations"] for batch in itertools.islice(stream, max(1, args.tokens // batch_size)))
    summary = summarize(crosscoder, batches, thresholds, top=args.top)
    write_report(summary, args.output_dir)
    print(json.dumps({key: summary[key] for key in ("tokens", "l0", "fve", "dead_latents", "counts")}))
    print(f"latent scaling: {summary['latent_scaling']['artefacts']} of "
          f"{summary['latent_scaling']['ft_only_latents']} fine-tuned-only latents flagged as artefacts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
