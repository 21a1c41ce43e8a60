#!/usr/bin/env python
"""Analyse a trained crosscoder: relative decoder norms, classes, shared-latent cosines, Latent Scaling.

    python scripts/analyze_crosscoder.py TRAIN_DIR_OR_CROSSCODER_PT ACTIVATIONS_DIR --output_dir OUT

Writes OUT/summary.json and PNG plots (relative-norm histogram, shared-cosine histogram, Latent Scaling
scatter of the fine-tuned-only latents), prints the class counts, and writes OUT/dashboard.html: the top
token contexts, activation histogram and statistics of the --dashboard_latents most frequent latents of each
class (fine-tuned-only, base-only, shared) or of --latents; tokens are decoded with the tokenizer of the
manifest's base model (or --tokenizer).

Also: OUT/promoted_tokens.json, the tokens each table latent's decoder direction promotes and suppresses
through each model's unembedding (top and bottom 10; the models named in the manifest, or
--unembedding_models BASE,FT), and OUT/latent_table.{md,json}, the top latents leaning to each model with
relative norm, cosine, Latent Scaling ratios, firing rate, top firing tokens and promoted tokens. It warns (on
stderr and in summary.json's "convergence") when the training folder's train_summary.json says the crosscoder
had not settled, or when there is none.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict
from pathlib import Path

from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.io import atomic_write_json, atomic_write_text
from finqa_dsl.diffing import files
from finqa_dsl.diffing.analysis import (
    Thresholds,
    convergence_warning,
    latent_table,
    latent_table_markdown,
    load_unembedding,
    promoted_tokens,
    summarize,
    write_report,
)
from finqa_dsl.diffing.crosscoder import default_device, load_crosscoder
from finqa_dsl.diffing.dashboard import (
    build_dashboard,
    choose_latents,
    scan,
    token_texts,
    top_firing_tokens,
    write_dashboard,
)
from finqa_dsl.diffing.shards import ActivationShards
from finqa_dsl.models.hub import local_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("crosscoder", help="a training folder or its crosscoder.pt, or the Hub id of a repository with one")
    p.add_argument("activations", help="activation folder (manifest.json + shards), or the Hub id of a dataset")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--tokens", type=int, default=200_000, help="tokens sampled for frequencies and Latent Scaling")
    p.add_argument("--batch_size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=20, help="latents listed per class")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dashboard_latents", type=int, default=4,
                   help="dashboard: latents per class (0: no dashboard)")
    p.add_argument("--latents", default=None, help="dashboard: these latents instead, e.g. 3,17,42")
    p.add_argument("--contexts", type=int, default=8, help="dashboard: top contexts per latent")
    p.add_argument("--window", type=int, default=12, help="dashboard: tokens shown either side of the maximum")
    p.add_argument("--dashboard_tokens", type=int, default=1_000_000, help="dashboard: rows scanned, in file order")
    p.add_argument("--tokenizer", default=None, help="dashboard: tokenizer (default: the manifest's base_model)")
    p.add_argument("--table_latents", type=int, default=10, help="latent table: latents per class")
    p.add_argument("--unembedding_models", default=None,
                   help="promoted tokens: BASE,FT models whose unembeddings to use (default: the manifest's "
                        "base_model and ft_model; 'none' skips them)")
    for name, value in asdict(Thresholds()).items():
        p.add_argument(f"--{name}", type=float, default=value)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        thresholds = Thresholds(**{name: getattr(args, name) for name in asdict(Thresholds())})
        trained = local_folder(args.crosscoder, "crosscoder", hint="train one with scripts/train_crosscoder.py")
        path = trained / files.CROSSCODER if trained.is_dir() else trained
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no crosscoder (train one with scripts/train_crosscoder.py)")
        shards = ActivationShards(local_folder(args.activations, "activations", repo_type="dataset",
                                               hint="collect them with scripts/collect_activations.py"))
        batch_size = min(args.batch_size, shards.rows, args.tokens)
        if batch_size < 1:
            raise UsageError("--tokens and --batch_size must be positive")
        latents = parse_latents(args.latents)
        dashboard = bool(latents) or args.dashboard_latents > 0
        if min(args.contexts, args.window + 1, args.dashboard_tokens, args.dashboard_latents + 1) < 1:
            raise UsageError("--contexts, --dashboard_tokens must be positive, --window, --dashboard_latents >= 0")
        tokenizer_name = args.tokenizer or shards.manifest.get("metadata", {}).get("base_model")
        if dashboard and not tokenizer_name:
            raise UsageError(f"{args.activations}: the manifest names no base_model: pass --tokenizer")
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
    summary = summarize(crosscoder, batches, thresholds, top=max(args.top, args.table_latents))
    train_summary_path = path.parent / files.TRAIN_SUMMARY
    train_summary = json.loads(train_summary_path.read_text()) if train_summary_path.is_file() else None
    warning = convergence_warning(train_summary)
    summary["convergence"] = {"settled": None if train_summary is None else train_summary.get("settled"),
                              "warning": warning, "training": train_summary}
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    write_report(summary, args.output_dir)
    write_latent_table(args, crosscoder, shards, summary, tokenizer_name)
    print(json.dumps({key: summary[key] for key in ("tokens", "l0", "fve", "dead_latents", "counts")}))
    print(f"latent scaling: {summary['latent_scaling']['artefacts']} of "
          f"{summary['latent_scaling']['ft_only_latents']} fine-tuned-only latents flagged as artefacts")
    if dashboard:
        from finqa_dsl.models.loading import load_tokenizer

        chosen = latents or choose_latents(summary, args.dashboard_latents)
        if not chosen:
            print("dashboard: no live latent in any class, nothing to show", file=sys.stderr)
            return 0
        scaling = {row["latent"]: row for row in summary["latent_scaling"]["per_latent"]}
        try:
            data = build_dashboard(crosscoder, shards, load_tokenizer(tokenizer_name), chosen, thresholds=thresholds,
                                   scaling=scaling, max_tokens=args.dashboard_tokens, contexts=args.contexts,
                                   window=args.window)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(write_dashboard(args.output_dir / files.DASHBOARD, data))
    return 0


def write_latent_table(args, crosscoder, shards, summary, tokenizer_name) -> None:
    """OUT/promoted_tokens.json and OUT/latent_table.{md,json} for the table latents."""
    latents = sorted({row["latent"] for name in ("ft_only", "base_only", "shared")
                      for row in summary["top_latents"][name][:args.table_latents]})
    token_text = str
    if tokenizer_name:
        from finqa_dsl.models.loading import load_tokenizer

        token_text = token_texts(load_tokenizer(tokenizer_name))
    firing = top_firing_tokens(scan(crosscoder, shards, latents, max_tokens=args.dashboard_tokens), token_text) \
        if latents else {}
    promoted = None
    metadata = shards.manifest.get("metadata", {})
    names = (args.unembedding_models.split(",") if args.unembedding_models
             else [metadata.get("base_model"), metadata.get("ft_model") or metadata.get("base_model")])
    if args.unembedding_models == "none" or not latents:
        pass
    elif len(names) != 2 or not all(names):
        print("warning: promoted tokens skipped: the manifest names no base_model/ft_model "
              "(pass --unembedding_models BASE,FT)", file=sys.stderr)
    else:
        unembeddings = None
        try:
            base = load_unembedding(names[0])
            unembeddings = {"base": base, "ft": base if names[1] == names[0] else load_unembedding(names[1])}
        except Exception as error:  # noqa: BLE001 - a model that does not load only costs this table column
            print(f"warning: promoted tokens skipped: cannot load {names}: {error}".splitlines()[0], file=sys.stderr)
        else:
            widths = {name: int(matrix.shape[1]) for name, matrix in unembeddings.items()}
            if set(widths.values()) != {crosscoder.config.d_model}:
                print(f"warning: promoted tokens skipped: unembedding widths {widths} != the crosscoder's d_model "
                      f"{crosscoder.config.d_model}", file=sys.stderr)
                unembeddings = None
        if unembeddings:
            scale = crosscoder.input_scale.detach().cpu()  # decoder directions back in each model's raw units
            decoder = crosscoder.W_dec.detach().cpu() / scale[None, :, None]
            promoted = promoted_tokens(decoder, unembeddings, latents, token_text)
            atomic_write_json(args.output_dir / files.PROMOTED_TOKENS,
                              {"models": names, "latents": {str(k): v for k, v in promoted.items()}})
    table = latent_table(summary, promoted, firing, per_class=args.table_latents)
    atomic_write_json(args.output_dir / files.LATENT_TABLE_JSON, table)
    atomic_write_text(args.output_dir / files.LATENT_TABLE_MD, latent_table_markdown(table))


def parse_latents(text: str | None) -> list[int]:
    """``"3,17,42"`` -> ``[3, 17, 42]``; None -> ``[]``."""
    if text is None:
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--latents must be comma-separated integers, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
