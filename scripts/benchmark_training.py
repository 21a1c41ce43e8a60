"""Training throughput and peak memory of batching strategies: ours vs naive padding vs TRL's SFTTrainer.

Same model (the default SmolLM2-135M-Instruct when prepared, else a tiny random Llama with the Qwen2.5
tokenizer), same completion-only examples (FinQA/sample/train.json, gold context, program target, encoded
by finqa_dsl.training.trainer), same optimiser settings, one epoch, one run each. Each strategy runs in its own
process so that peak memory is its own. Prints one JSON object.

Strategies:
  ours_grouped_padding      pad to the longest in the batch + length-grouped batches (the default)
  ours_padding_free         the batch flattened into one row, position_ids restart per example
  naive_max_length_padding  every example padded to --max_length, random batches
  trl_padding_free          trl.SFTTrainer, padding_free=True (flattened batches)
  trl_packing_bfd           trl.SFTTrainer, packing="bfd" into --max_length rows (padding-free); rows per
                            batch chosen so a step sees about as many tokens as the others

tokens_per_second counts real (non-padding) tokens; tokens_computed includes padding.

    python scripts/benchmark_training.py [--num_examples 32] [--batch_size 8] [--max_length 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from finqa_dsl.locations import SAMPLE_DIR, SHARED_DIR

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STRATEGIES = ("ours_grouped_padding", "ours_padding_free", "naive_max_length_padding", "trl_padding_free",
              "trl_packing_bfd")
FALLBACK_TOKENIZER = SHARED_DIR / "models" / "qwen2.5-0.5b-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", default=str(SAMPLE_DIR / "train.json"))
    parser.add_argument("--input_mode", default="gold")
    parser.add_argument("--num_examples", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=1024, help="The driver's --max_seq_length default.")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--strategy", help=argparse.SUPPRESS)  # run one strategy in this process
    args = parser.parse_args()
    if args.strategy:
        print(json.dumps(run_strategy(args.strategy, args)))
        return
    results = [run_in_subprocess(name, args) for name in args.strategies.split(",")]
    print(json.dumps(summarize(results, args), indent=2))


def run_in_subprocess(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--strategy", name, "--train_file", args.train_file,
               "--input_mode", args.input_mode, "--num_examples", str(args.num_examples),
               "--batch_size", str(args.batch_size), "--max_length", str(args.max_length)]
    print(f"running {name} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(results: list[dict], args: argparse.Namespace) -> dict:
    by_name = {result["strategy"]: result for result in results}
    naive = by_name.get("naive_max_length_padding")
    for result in results:
        if naive:
            result["speedup_vs_naive"] = round(result["tokens_per_second"] / naive["tokens_per_second"], 2)
    trl = [r for r in results if r["strategy"].startswith("trl_")]
    return {
        "benchmark": "training tokens/s and peak memory by batching strategy (one run each)",
        **{key: results[0][key] for key in ("model", "device", "torch_threads")},
        "train_file": args.train_file, "input_mode": args.input_mode, "examples": args.num_examples,
        "batch_size": args.batch_size, "max_length": args.max_length,
        "fastest": max(results, key=lambda r: r["tokens_per_second"])["strategy"],
        "trl_fastest": max(trl, key=lambda r: r["tokens_per_second"])["strategy"] if trl else None,
        "results": results,
    }


def run_strategy(name: str, args: argparse.Namespace) -> dict:
    import psutil
    import torch

    from finqa_dsl.core.context import ContextConfig
    from finqa_dsl.core.data import load_examples
    from finqa_dsl.core.prompts import build_prompt_records
    from finqa_dsl.training.trainer import build_train_dataset

    model, tokenizer, model_name = load_model_and_tokenizer()
    examples = load_examples(args.train_file)[: args.num_examples]
    context_config = ContextConfig(input_mode=args.input_mode)
    records, _ = build_prompt_records(examples, target_field="program", context_config=context_config,
                                      tokenizer=tokenizer)
    dataset, stats = build_train_dataset(records, tokenizer, args.max_length)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_trainer(name, model, tokenizer, dataset, args, scratch)
        rss_before, load_before = psutil.Process().memory_info().rss, os.getloadavg()[0]
        began = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - began
        tokens_computed = sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())
    real_tokens = sum(dataset["length"])
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "strategy": name, "model": model_name,
        "device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
        "examples": stats.kept, "steps": output.global_step, "seconds": round(seconds, 2),
        "real_tokens": real_tokens, "tokens_computed": tokens_computed,
        "padding_fraction": round(1 - real_tokens / tokens_computed, 3),
        "tokens_per_second": round(real_tokens / seconds, 1),
        "peak_rss_bytes": peak_rss, "peak_rss_increase_bytes": peak_rss - rss_before,
        "train_loss": round(output.training_loss, 4),
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if torch.cuda.is_available():
        result["cuda_max_memory_bytes"] = torch.cuda.max_memory_allocated()
    return result


def make_trainer(name: str, model, tokenizer, dataset, args: argparse.Namespace, output_dir: str):
    import torch
    from transformers import Trainer, TrainingArguments

    from finqa_dsl.core.chat import pad_token_id
    from finqa_dsl.training.trainer import CompletionCollator

    common = dict(output_dir=output_dir, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
                  learning_rate=2e-5, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                  report_to=[], seed=0, disable_tqdm=True, bf16=False, fp16=False,
                  gradient_checkpointing=False, use_cpu=not torch.cuda.is_available())
    if name.startswith("trl_"):
        from trl import SFTConfig, SFTTrainer

        if name == "trl_padding_free":
            config = SFTConfig(**common, padding_free=True, max_length=None)
        else:
            rows = max(1, round(args.batch_size * sum(dataset["length"]) / len(dataset) / args.max_length))
            config = SFTConfig(**{**common, "per_device_train_batch_size": rows}, packing=True,
                               packing_strategy="bfd", max_length=args.max_length)
        return SFTTrainer(model=model, args=config, processing_class=tokenizer,
                          train_dataset=dataset.select_columns(["input_ids", "labels"]))
    pad = pad_token_id(tokenizer)
    collators = {
        "ours_grouped_padding": (CompletionCollator(pad), "group_by_length"),
        "ours_padding_free": (CompletionCollator(pad, padding_free=True), "random"),
        "naive_max_length_padding": (CompletionCollator(pad, pad_to_multiple_of=args.max_length), "random"),
    }
    collator, sampling = collators[name]
    return Trainer(model=model, args=TrainingArguments(**common, train_sampling_strategy=sampling),
                   train_dataset=dataset, data_collator=collator, processing_class=tokenizer)


def load_model_and_tokenizer():
    """The prepared default model, else a tiny random Llama with the Qwen2.5 tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from finqa_dsl.models.default_model import default_model_dir, is_prepared

    folder = default_model_dir()
    if is_prepared(folder):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
        return model, AutoTokenizer.from_pretrained(folder), folder.name
    tokenizer = AutoTokenizer.from_pretrained(FALLBACK_TOKENIZER)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config), tokenizer, "tiny-random-llama"


if __name__ == "__main__":
    main()
