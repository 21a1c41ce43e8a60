"""Write the splits of the real-data table (BENCHMARKS.md) from the real FinQA examples in ``../shared/FinQA/real``.

    python -m scripts.real_splits --real_dir ../shared/FinQA/real --output_dir __output__/real-splits

- ``train.json``: ``train.json`` and ``dev_convfinqa_derived.json`` (118 + 142 examples): the real training set is
  only 2% of the official one, so the ConvFinQA-derived dev examples (no overlap with ``dev.json``) train too;
- ``dev.json``: ``dev.json`` as it is (457), where recipes are chosen;
- ``train_dev.json``: both (717), for the final fit of a recipe once dev has chosen it (the usual refit: the
  small-model recipe's data is its scarcest ingredient);
- ``test_gold.json``: the records of ``test.json`` that have gold evidence (509 of 770; the others lack
  ``qa.gold_inds``), reported once;
- with ``--synthetic_ratio R``, also ``train_synthetic.json`` and ``train_dev_synthetic.json``: each training
  split plus R times as many synthetic examples of the project's sample generator (``finqa_dsl.sample``), whose
  question wordings each map to one program shape (a ``change`` subtracts, a ``percentage change`` also
  divides). The real training examples are few and skewed (56% of ``train.json`` are ``subtract, divide``).

Records are copied unchanged; files are written atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finqa_dsl.core.io import atomic_write_json
from finqa_dsl.sample.generator import generate_examples

SPLITS = {
    "train.json": ("train.json", "dev_convfinqa_derived.json"),
    "dev.json": ("dev.json",),
    "train_dev.json": ("train.json", "dev_convfinqa_derived.json", "dev.json"),
    "test_gold.json": ("test.json",),
}
TRAINING_SPLITS = ("train.json", "train_dev.json")
SYNTHETIC_SEED = 7  # a draw of its own, not the embedded sample's (seed 2021)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real_dir", default="../shared/FinQA/real")
    parser.add_argument("--output_dir", default="__output__/real-splits")
    parser.add_argument("--synthetic_ratio", type=float, default=0.0,
                        help="also write each training split plus this many synthetic examples per real one")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.synthetic_ratio < 0:
        parser.error(f"--synthetic_ratio must be >= 0, got {args.synthetic_ratio}")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    for name, sources in SPLITS.items():
        records = [record for source in sources for record in json.loads((Path(args.real_dir) / source).read_text())
                   if "gold_inds" in record["qa"]]
        atomic_write_json(output / name, records)
        print(f"{output / name}: {len(records)} examples from {', '.join(sources)}")
        if args.synthetic_ratio and name in TRAINING_SPLITS:
            synthetic = generate_examples(round(args.synthetic_ratio * len(records)), seed=SYNTHETIC_SEED)
            mixed = output / name.replace(".json", "_synthetic.json")
            atomic_write_json(mixed, records + synthetic)
            print(f"{mixed}: {len(records)} + {len(synthetic)} synthetic examples")


if __name__ == "__main__":
    main()
