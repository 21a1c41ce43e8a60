"""Peak memory and tokens/s of training with the full-logit loss vs the target-only loss (--loss_implementation).

Two models, full fine-tune and LoRA (the driver's defaults: r=16, alpha 32, all linear layers), batch 4 x 512
(every batch padded to 512 tokens), the same completion-only examples for both losses (FinQA/sample/train.json,
gold context, program target; prompts fitted into 512 - 128 tokens as the driver does with --max_seq_length 512
--generation_max_new_tokens 128):

  smollm2     the default model, SmolLM2-135M-Instruct, real weights, its float32 checkpoint dtype
  gemma3      a Gemma-3-shaped model with random weights: gemma-3-1b-it's configuration (hidden 1,152, 4 heads of
              256, 1 KV head, MLP 6,912, vocabulary 262,144, tied embeddings, eager attention, bfloat16: the
              checkpoint's dtype, which the driver's --torch_dtype auto keeps) with --gemma_layers layers instead
              of 26, and gemma-3-1b-it's real tokenizer

Both are loaded by the driver's ``load_model`` (the Gemma-3-shaped one from a scratch folder it is saved to).
Each (model, fine-tune, loss) runs in its own process, so its peak resident memory (ru_maxrss) is its own; the
Trainer is the driver's (finqa_dsl.training.target_loss.trainer_class). tokens/s counts the real (non-padding)
tokens of the steps after the first (the first step warms up). The first step's loss is computed before any
update, so it compares the two losses exactly; later steps follow AdamW from slightly different float roundings.
Prints one JSON object.

    python scripts/benchmark_target_loss.py [--models smollm2,gemma3] [--peft none,lora] [--steps 4] \\
        [--gemma_layers 2]
"""

from __future__ import annotations

import argparse
import itertools
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

MODELS = ("smollm2", "gemma3")
LOSSES = ("full", "target_only")
GEMMA_TOKENIZER = SHARED_DIR / "models" / "gemma-3-1b-it"
# gemma-3-1b-it's config.json, less the layer count (set by --gemma_layers)
GEMMA3_1B = dict(vocab_size=262_144, hidden_size=1152, intermediate_size=6912, num_attention_heads=4,
                 num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
                 max_position_embeddings=32_768, rms_norm_eps=1e-6, final_logit_softcapping=None,
                 attn_logit_softcapping=None, tie_word_embeddings=True, bos_token_id=2, eos_token_id=106,
                 pad_token_id=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", default=str(SAMPLE_DIR / "train.json"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--peft", default="none,lora", help="none (full fine-tune) | lora, comma-separated.")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seq_length", type=int, default=512)
    parser.add_argument("--gemma_layers", type=int, default=2)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # "model,peft,loss": one configuration in this process
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(*args.run.split(","), args)))
        return
    results = [run_in_subprocess(model, peft, loss, args)
               for model, peft, loss in itertools.product(args.models.split(","), args.peft.split(","), LOSSES)]
    print(json.dumps(summarize(results, args), indent=2))


def run_in_subprocess(model: str, peft: str, loss: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--run", f"{model},{peft},{loss}", "--train_file", args.train_file,
               "--steps", str(args.steps), "--batch_size", str(args.batch_size),
               "--seq_length", str(args.seq_length), "--gemma_layers", str(args.gemma_layers)]
    print(f"running {model} peft={peft} {loss} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(results: list[dict], args: argparse.Namespace) -> dict:
    comparisons = {}
    for model, peft in itertools.product(args.models.split(","), args.peft.split(",")):
        full, target = (next(r for r in results if (r["model"], r["peft"], r["loss"]) == (model, peft, loss))
                        for loss in LOSSES)
        comparisons[f"{model} peft={peft}"] = {
            "peak_rss_full_over_target_only": round(full["peak_rss_bytes"] / target["peak_rss_bytes"], 2),
            "training_rss_increase_full_over_target_only": round(
                full["peak_rss_increase_bytes"] / target["peak_rss_increase_bytes"], 2),
            "tokens_per_second_target_only_over_full": round(
                target["tokens_per_second"] / full["tokens_per_second"], 2),
            "first_step_loss_relative_difference": abs(target["step_losses"][0] - full["step_losses"][0])
            / abs(full["step_losses"][0]),
            "max_step_loss_relative_difference": max(abs(t - f) / abs(f) for t, f in
                                                     zip(target["step_losses"], full["step_losses"], strict=True)),
        }
    return {
        "benchmark": "full-logit vs target-only loss: peak memory, tokens/s, loss (one run each)",
        "device": results[0]["device"], "torch_threads": results[0]["torch_threads"],
        "train_file": args.train_file, "batch": f"{args.batch_size} x {args.seq_length}", "steps": args.steps,
        "comparisons": comparisons, "results": results,
    }


def run_one(model_name: str, peft: str, loss: str, args: argparse.Namespace) -> dict:
    import psutil
    import torch
    from transformers import TrainerCallback, TrainingArguments

    from finqa_dsl.core.chat import pad_token_id
    from finqa_dsl.core.context import ContextConfig
    from finqa_dsl.core.data import load_examples
    from finqa_dsl.core.prompts import build_prompt_records
    from finqa_dsl.training.target_loss import trainer_class
    from finqa_dsl.training.trainer import CompletionCollator, build_train_dataset

    model, tokenizer, description = load(model_name, peft, args.gemma_layers)
    needed = args.steps * args.batch_size
    records, _ = build_prompt_records(load_examples(args.train_file), target_field="program",
                                      context_config=ContextConfig(input_mode="gold"), tokenizer=tokenizer,
                                      max_prompt_tokens=args.seq_length - 128)
    dataset, stats = build_train_dataset(records, tokenizer, args.seq_length)
    if len(dataset) < needed:
        raise SystemExit(f"only {len(dataset)} examples fit {args.seq_length} tokens; {needed} needed")
    dataset = dataset.select(range(needed))

    step_ends: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, *_, **__):
            step_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as scratch:
        training_args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
            learning_rate=1e-5, lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
            seed=0, disable_tqdm=True, use_cpu=not torch.cuda.is_available(), train_sampling_strategy="sequential")
        trainer_type, used = trainer_class(loss, model, training_args)
        trainer = trainer_type(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                               data_collator=CompletionCollator(pad_token_id(tokenizer),
                                                                pad_to_multiple_of=args.seq_length),
                               callbacks=[StepTimes()])
        rss_before = psutil.Process().memory_info().rss
        began = time.perf_counter()
        trainer.train()
        step_losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    lengths = dataset["length"]
    timed_tokens = sum(lengths[args.batch_size:])  # the steps after the first
    targets = sum(sum(label != -100 for label in labels[1:]) for labels in dataset["labels"])
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "model": model_name, "description": description, "peft": peft, "loss": used,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "dtype": str(model.dtype),
        "device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
        "examples": needed, "real_tokens": sum(lengths), "target_tokens": targets,
        "target_fraction": round(targets / sum(lengths), 3), "first_step_seconds": round(step_ends[0] - began, 2),
        "tokens_per_second": round(timed_tokens / (step_ends[-1] - step_ends[0]), 1),
        "peak_rss_bytes": peak_rss, "peak_rss_increase_bytes": peak_rss - rss_before,
        "step_losses": step_losses, "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def load(name: str, peft: str, gemma_layers: int):
    """The model as the driver loads it for ``peft``, its tokenizer and a description."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig

    from finqa_dsl.models.default_model import default_model_path
    from finqa_dsl.models.loading import load_model
    from finqa_dsl.models.options import ModelOptions

    if name == "smollm2":
        folder = default_model_path()
        model = load_model(str(folder), ModelOptions(peft=peft, attn_implementation="sdpa"))
        return model, AutoTokenizer.from_pretrained(folder), f"{folder.name} (real weights)"
    torch.manual_seed(0)
    config = Gemma3TextConfig(**GEMMA3_1B, num_hidden_layers=gemma_layers, attn_implementation="eager")
    with tempfile.TemporaryDirectory() as scratch:
        AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(scratch)
        model = load_model(scratch, ModelOptions(peft=peft, attn_implementation="eager"))
    return (model, AutoTokenizer.from_pretrained(GEMMA_TOKENIZER),
            f"gemma-3-1b-it shape, {gemma_layers} layers, random weights")


if __name__ == "__main__":
    main()
