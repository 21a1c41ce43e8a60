#!/usr/bin/env python
"""Merge a LoRA adapter into its base model and save a plain model folder (model, tokenizer, merge_report.json).

The merged and unmerged models' logits are compared on a probe prompt before anything is saved. Example::

    python scripts/merge_lora.py __output__/smollm2-lora-sample/final_model --output_dir merged/smollm2-finqa
"""

from __future__ import annotations

import argparse
import logging
import sys

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.hub import check_hub_access, model_source, push_folder
from finqa_dsl.models.merge import merge_adapter
from finqa_dsl.models.options import DTYPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter_dir",
                        help="LoRA adapter folder (adapter_config.json), e.g. a run's final_model/, or its Hub id")
    parser.add_argument("--output_dir", required=True, help="New folder for the merged model.")
    parser.add_argument("--torch_dtype", default="auto", choices=DTYPES, help="Weights dtype of the merged model.")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="Largest accepted |logit| difference merged vs unmerged (default by dtype).")
    parser.add_argument("--push_to_hub", metavar="REPO_ID", default=None,
                        help="Also upload the merged folder to this Hugging Face repository (private).")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        if args.push_to_hub:
            check_hub_access()
        adapter = model_source(args.adapter_dir, "adapter_dir")
        report = merge_adapter(adapter, args.output_dir, torch_dtype=args.torch_dtype,
                               tolerance=args.tolerance)
        if args.push_to_hub:
            print(push_folder(args.output_dir, args.push_to_hub), file=sys.stderr)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"max |logit difference| merged vs unmerged: {report.max_abs_logit_diff:.3g}", file=sys.stderr)
    print(report.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
