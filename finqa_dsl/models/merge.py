"""Merge a LoRA adapter into its base model and save a plain model folder that any tool loads.

The adapter's base is loaded unquantised (a QLoRA adapter is merged into the full-precision base, the usual
practice: merging into 4-bit weights would round the update away). Before saving, the merged model's logits on
a probe prompt are compared with the unmerged adapter's; a difference above the tolerance stops the merge.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from finqa_dsl.core.chat import encode_prompt
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.io import atomic_write_json
from finqa_dsl.core.prompts import render_prompt
from finqa_dsl.models.loading import ADAPTER_CONFIG, load_model, load_tokenizer
from finqa_dsl.models.options import ModelOptions

logger = logging.getLogger(__name__)

MERGE_REPORT = "merge_report.json"
PROBE_QUESTION = "What is the percentage change in net revenue from 5735 in 2017 to 5829 in 2018?"


@dataclass(frozen=True)
class MergeReport:
    adapter: str
    output_dir: str
    dtype: str
    probe_tokens: int
    max_abs_logit_diff: float
    tolerance: float


def default_tolerance(dtype: torch.dtype) -> float:
    """Largest acceptable logit difference between merged and unmerged models for weights in ``dtype``."""
    return 1e-3 if dtype == torch.float32 else 5e-2


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, *, torch_dtype: str = "auto",
                  tolerance: float | None = None) -> MergeReport:
    """Merge ``adapter_dir`` into its base, check the logits, and save model + tokenizer into ``output_dir``
    (written into a temporary folder first, so a failed merge leaves nothing behind)."""
    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise UsageError(f"{adapter_dir}: no {ADAPTER_CONFIG}; pass a LoRA adapter folder (e.g. a run's "
                         "final_model/ trained with --peft lora or qlora).")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise UsageError(f"{output_dir}: exists and is not empty; choose a new --output_dir.")
    tokenizer = load_tokenizer(str(adapter_dir))
    model = load_model(str(adapter_dir), ModelOptions(torch_dtype=torch_dtype, quantize_4bit=False)).eval()
    probe = torch.tensor([encode_prompt(render_prompt([{"role": "user", "content": PROBE_QUESTION}], tokenizer),
                                        tokenizer)])
    with torch.inference_mode():
        before = model(input_ids=probe).logits.float()
        merged = model.merge_and_unload()
        after = merged(input_ids=probe).logits.float()
    difference = (before - after).abs().max().item()
    tolerance = default_tolerance(merged.dtype) if tolerance is None else tolerance
    if not difference <= tolerance:
        raise RuntimeError(f"merged and unmerged logits differ by {difference:.3g} > {tolerance:.3g}; "
                           "nothing was saved.")
    report = MergeReport(str(adapter_dir), str(output_dir), str(merged.dtype).removeprefix("torch."),
                         probe.shape[1], difference, tolerance)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        merged.save_pretrained(build)
        tokenizer.save_pretrained(build)
        atomic_write_json(build / MERGE_REPORT, asdict(report))
        if output_dir.exists():
            output_dir.rmdir()
        build.rename(output_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    logger.info("Merged %s into %s (max |logit difference| %.2g)", adapter_dir, output_dir, difference)
    return report
