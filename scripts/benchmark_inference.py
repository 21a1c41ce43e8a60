"""Test-inference throughput, side by side on the same model and prompts: the FinQA fine-tuning driver's
one-by-one loop, static batches as they were before the engines (``--static_batch_size`` prompts, every batch
decoding until its longest generation ends, no stop strings), and the engines as this project's driver runs them
(``--batch_size`` prompts, finished rows leaving their batch every 4 tokens, the target's stop strings): static,
prefix (shared-prefix cache), continuous.

Model: the default SmolLM2-135M-Instruct when prepared, else a tiny random Llama (as benchmark_training.py).
Prompts: FinQA/sample/test.json, gold context, program target, rendered with the model's chat template;
zero-shot, and few-shot with the first k solved train examples (``--few_shot_k``, as the PoT-distillation study
runs it).
Every path decodes greedily with the same max_new_tokens and stop tokens, one run each after a short warm-up,
in one process (ratios come from one run on whatever load the machine has). The FinQA fine-tuning driver's
loop is ``model.generate`` on one tokenised prompt at a time. Generations are compared with the first path's of the
same prompts (``differ``: how many are not identical). Prints one JSON object.

    python scripts/benchmark_inference.py [--num_examples 16] [--few_shot_k 4] [--batch_size 32] \\
        [--zero_shot_paths one_by_one,static_before,prefix] [--few_shot_paths static_before,prefix]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from benchmark_training import load_model_and_tokenizer  # noqa: E402

from finqa_dsl.core.chat import encode_prompt  # noqa: E402
from finqa_dsl.core.context import ContextConfig  # noqa: E402
from finqa_dsl.core.data import load_examples  # noqa: E402
from finqa_dsl.core.prompts import build_prompt_records, select_few_shot  # noqa: E402
from finqa_dsl.core.targets import get_target  # noqa: E402
from finqa_dsl.inference.engines.prefix import shared_prefix_length  # noqa: E402
from finqa_dsl.inference.engines.static import generation_config  # noqa: E402
from finqa_dsl.inference.hf_backend import HFBackend  # noqa: E402
from finqa_dsl.inference.interface import GenerationSettings  # noqa: E402
from finqa_dsl.locations import SAMPLE_DIR  # noqa: E402

PATHS = ("one_by_one", "static_before", "static", "prefix", "continuous")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test_file", default=str(SAMPLE_DIR / "test.json"))
    parser.add_argument("--train_file", default=str(SAMPLE_DIR / "train.json"))
    parser.add_argument("--batch_size", type=int, default=32, help="The driver's --inference_batch_size default.")
    parser.add_argument("--static_batch_size", type=int, default=16,
                        help="static_before's batch size: the driver's default before the engines.")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="The FinQA fine-tuning driver's default.")
    parser.add_argument("--num_examples", type=int, default=0, help="First N test examples (0: all).")
    parser.add_argument("--few_shot_k", type=int, default=4)
    parser.add_argument("--zero_shot_paths", default="one_by_one,static_before,static,prefix",
                        help=f"Of: {', '.join(PATHS)}.")
    parser.add_argument("--few_shot_paths", default="static_before,static,prefix",
                        help="Same; empty: no few-shot run.")
    args = parser.parse_args()

    model, tokenizer, model_name = load_model_and_tokenizer()
    model.eval()
    examples = load_examples(args.test_file)
    examples = examples[: args.num_examples] if args.num_examples else examples
    few_shot = select_few_shot(load_examples(args.train_file), args.few_shot_k, target_field="program",
                               context_config=ContextConfig())
    warm_up, _ = build_prompt_records(examples[:2], target_field="program", context_config=ContextConfig(),
                                      tokenizer=tokenizer)
    list(HFBackend(model, tokenizer)(warm_up, GenerationSettings(max_new_tokens=4, batch_size=2,
                                                                   engine="static")))
    load_before = os.getloadavg()[0]
    runs = {}
    for name, shots, paths in (("zero_shot", [], args.zero_shot_paths), (f"few_shot_k{args.few_shot_k}",
                                                                          few_shot, args.few_shot_paths)):
        if paths:
            records, _ = build_prompt_records(examples, target_field="program", context_config=ContextConfig(),
                                              tokenizer=tokenizer, few_shot=shots)
            runs[name] = compare(model, tokenizer, records, paths.split(","), args)

    print(json.dumps({
        "benchmark": "test inference examples/s by path (one run each, one process)",
        "model": model_name, "device": str(model.device), "torch_threads": torch.get_num_threads(),
        "test_file": args.test_file, "examples": len(examples), "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "static_before_batch_size": args.static_batch_size, "runs": runs,
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }, indent=2))


def compare(model, tokenizer, records, paths: list[str], args) -> dict:
    """Each path's seconds, examples/s, ratio to the first path and generations differing from its."""
    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    result = {"prompt_tokens_mean": round(sum(map(len, encoded)) / len(encoded), 1),
              "shared_prefix_tokens": shared_prefix_length(encoded)}
    reference = first_seconds = None
    for path in paths:
        began = time.perf_counter()
        texts = generate_with(path, model, tokenizer, records, args)
        seconds = time.perf_counter() - began
        reference, first_seconds = reference or texts, first_seconds or seconds
        result[path] = {"seconds": round(seconds, 2), "examples_per_second": round(len(records) / seconds, 3),
                        "ratio": round(first_seconds / seconds, 2),
                        "differ": sum(texts[k] != reference[k] for k in reference)}
        print(json.dumps({path: result[path]}), file=sys.stderr, flush=True)
    return result


def generate_with(path: str, model, tokenizer, records, args) -> dict[str, str]:
    """``path``'s generation text per record id. ``static_before`` is the static engine as it was (its batch
    size, no stop strings, no rows leaving); the engines run as the driver runs them."""
    if path == "one_by_one":
        config = generation_config(model, tokenizer, GenerationSettings(max_new_tokens=args.max_new_tokens))
        return {record.id: driver_generate(model, tokenizer, record.prompt, config) for record in records}
    if path == "static_before":
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.static_batch_size,
                                      engine="static", exit_every=0)
    else:
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, engine=path,
                                      stop_strings=get_target("program").stop_strings)
    return {record.id: generation.text for record, generation in HFBackend(model, tokenizer)(records, settings)}


def driver_generate(model, tokenizer, prompt: str, config) -> str:
    """The FinQA fine-tuning driver's loop body: one prompt (the same tokens as ours), generate, decode the new
    tokens."""
    input_ids = torch.tensor([encode_prompt(prompt, tokenizer)], device=model.device)
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                generation_config=config)
    return tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True).strip()


if __name__ == "__main__":
    main()
