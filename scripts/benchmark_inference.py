"""Test-inference throughput: our batched generation vs the seed's one-by-one loop, same model and prompts.

Model: the default SmolLM2-135M-Instruct when prepared, else a tiny random Llama (as benchmark_training.py).
Prompts: FinQA/sample/test.json, gold context, program target, rendered with the model's chat template.
Both paths decode greedily with the same max_new_tokens and stop tokens; one run each, after a short warm-up.
The seed's loop is ``model.generate`` on one tokenised prompt at a time. Prints one JSON object.

    python scripts/benchmark_inference.py [--batch_size 16] [--max_new_tokens 128] [--num_examples 0]
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
from finqa_dsl.core.prompts import build_prompt_records  # noqa: E402
from finqa_dsl.inference.backend import GenerationSettings  # noqa: E402
from finqa_dsl.inference.hf import generate, generation_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test_file", default=str(REPO / "FinQA" / "sample" / "test.json"))
    parser.add_argument("--batch_size", type=int, default=16,
                        help="The driver's --inference_batch_size default.")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="The seed's default.")
    parser.add_argument("--num_examples", type=int, default=0, help="First N test examples (0: all).")
    args = parser.parse_args()

    model, tokenizer, model_name = load_model_and_tokenizer()
    model.eval()
    examples = load_examples(args.test_file)
    examples = examples[: args.num_examples] if args.num_examples else examples
    records, _ = build_prompt_records(examples, target_field="program", context_config=ContextConfig(),
                                      tokenizer=tokenizer)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    config = generation_config(model, tokenizer, settings)
    warm_up = GenerationSettings(max_new_tokens=4, batch_size=2)
    list(generate(model, tokenizer, records[:2], warm_up))

    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    ours = {record.id: result.text for record, result in generate(model, tokenizer, records, settings)}
    ours_seconds = time.perf_counter() - began

    began = time.perf_counter()
    seed = {record.id: seed_generate(model, tokenizer, record.prompt, config) for record in records}
    seed_seconds = time.perf_counter() - began

    print(json.dumps({
        "benchmark": "test inference examples/s, batched vs one-by-one (one run each)",
        "model": model_name, "device": str(model.device), "torch_threads": torch.get_num_threads(),
        "test_file": args.test_file, "examples": len(records), "max_new_tokens": args.max_new_tokens,
        "ours": {"batch_size": args.batch_size, "seconds": round(ours_seconds, 2),
                 "examples_per_second": round(len(records) / ours_seconds, 3)},
        "seed_one_by_one": {"seconds": round(seed_seconds, 2),
                            "examples_per_second": round(len(records) / seed_seconds, 3)},
        "speedup": round(seed_seconds / ours_seconds, 2),
        "identical_outputs": sum(ours[k] == seed[k] for k in ours),
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }, indent=2))


def seed_generate(model, tokenizer, prompt: str, config) -> str:
    """The seed's loop body: one prompt (the same tokens as ours), generate, decode the new tokens."""
    input_ids = torch.tensor([encode_prompt(prompt, tokenizer)], device=model.device)
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                generation_config=config)
    return tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True).strip()


if __name__ == "__main__":
    main()
