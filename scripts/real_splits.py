"""Write the splits of the real-data table (BENCHMARKS.md) from the real FinQA examples in ``../shared/FinQA/real``.

    python -m scripts.real_splits --real_dir ../shared/FinQA/real --output_dir __output__/real-splits

- ``train.json``: ``train.json`` and ``dev_convfinqa_derived.json`` (118 + 142 examples): the real training set is
  only 2% of the official one, so the ConvFinQA-derived dev examples (no overlap with ``dev.json``) train too;
- ``dev.json``: ``dev.json`` as it is (457), where recipes are chosen;
- ``train_dev.json``: both (717), for the final fit of a recipe once dev has chosen it (the usual refit: the
  small-model recipe's data is its scarcest ingredient);
- ``test_gold.json``: the records of ``test.json`` that have gold evidence (509 of 770; the others lack
  ``qa.gold_inds``), reported once.

Records are copied unchanged; files are written atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finqa_dsl.core.io import atomic_write_json

SPLITS = {
    "train.json": ("train.json", "dev_convfinqa_derived.json"),
    "dev.json": ("dev.json",),
    "train_dev.json": ("train.json", "dev_convfinqa_derived.json", "dev.json"),
    "test_gold.json": ("test.json",),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real_dir", default="../shared/FinQA/real")
    parser.add_argument("--output_dir", default="__output__/real-splits")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    for name, sources in SPLITS.items():
        records = [record for source in sources for record in json.loads((Path(args.real_dir) / source).read_text())
                   if "gold_inds" in record["qa"]]
        atomic_write_json(output / name, records)
        print(f"{output / name}: {len(records)} examples from {', '.join(sources)}")


if __name__ == "__main__":
    main()
