"""What grammar-constrained decoding (``--constrained_decoding``) and self-consistency (``--num_samples``) cost in
test inference, on the same model and prompts as scripts/benchmark_inference.py.

Model: the default SmolLM2-135M-Instruct when prepared, else a tiny random Llama (as benchmark_training.py).
Prompts: FinQA/sample/test.json, gold context, program target, zero-shot with the built-in instruction, rendered
with the model's chat template, each record carrying its example's program grammar
(``build_prompt_records(..., with_grammar=True)``). HF backend, ``--batch_size`` rows, ``--max_new_tokens``, the
program target's stop strings, in one process after a short warm-up (ratios come from runs on whatever load the
machine has).

constrained: per engine, greedy runs alternating unconstrained, constrained (``--repeats`` times each): wall
seconds, generated tokens, seconds per generated token and constrained / unconstrained per token (the aim: under
1.10; per generated token, the same prompts' encoding is spread over fewer tokens when the grammar makes the
generations shorter, as with the default model's prose). Well-formedness is :func:`finqa_dsl.core.dsl.execute`'s:
a generation is ill-formed when its cleaned program is malformed, has an unknown operation, is empty or references
a step that does not exist (``ill_formed``, by reason; a constrained generation never should be, unless cut at
``--max_new_tokens``: ``ill_formed_at_token_limit``). ``grammar_seconds``: the part of a constrained run spent
in the grammar machinery (llguidance's tokenizer, the per-example matchers, the masks), measured inside the run,
and ``grammar_share`` its part of the run's seconds (the overhead, free of the noise between runs).
``well_formed_changed``: of the examples whose unconstrained program was already well-formed (it parses and runs
without those reasons), how many got another program under the grammar (``changed`` lists them, each program
with its executed value or the reason it has none: the grammar also refuses what runs into an error, a row that
is not in the table or a word as a number, and a table step whose second argument is not ``none``).

self_consistency: the prefix engine, ``generate_to_file`` into a temporary file, ``--num_samples`` samples per
example (sample 0 greedy, the others at ``--temperature`` in one pass) against one greedy sample: seconds and
their ratio (``times_cheaper_than_n_runs``: N / ratio). Prints one JSON object.

    python scripts/benchmark_decoding.py [--num_examples 0] [--engines prefix,static] [--repeats 2] \\
        [--num_samples 8] [--temperature 0.7] [--torch_threads 1] \\
        [--adapter __output__/RUN/final_model --instruction "RUN's --task_instruction"]

The default model writes prose zero-shot (few of its programs are well-formed); ``--adapter`` with a fine-tuned
run's adapter gives well-formed programs for the check that the grammar leaves them as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from benchmark_training import load_model_and_tokenizer  # noqa: E402

from finqa_dsl.core.context import ContextConfig  # noqa: E402
from finqa_dsl.core.data import load_examples  # noqa: E402
from finqa_dsl.core.dsl import Reason, clean_generation, execute, parse_program, tokenize  # noqa: E402
from finqa_dsl.core.prompts import build_prompt_records  # noqa: E402
from finqa_dsl.core.targets import get_target  # noqa: E402
from finqa_dsl.inference import grammar  # noqa: E402
from finqa_dsl.inference.hf_backend import HFBackend  # noqa: E402
from finqa_dsl.inference.interface import GenerationSettings  # noqa: E402
from finqa_dsl.inference.predictions_file import generate_to_file  # noqa: E402
from finqa_dsl.locations import SAMPLE_DIR  # noqa: E402
from finqa_dsl.models.cpu_4bit import import_bitsandbytes_offline  # noqa: E402

ILL_FORMED = (Reason.MALFORMED, Reason.UNKNOWN_OP, Reason.EMPTY, Reason.BAD_REFERENCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test_file", default=str(SAMPLE_DIR / "test.json"))
    parser.add_argument("--batch_size", type=int, default=32, help="The driver's --inference_batch_size default.")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--num_examples", type=int, default=0, help="First N test examples (0: all).")
    parser.add_argument("--engines", default="prefix,static", help="HF engines of the constrained comparison.")
    parser.add_argument("--repeats", type=int, default=2, help="Unconstrained/constrained pairs per engine.")
    parser.add_argument("--num_samples", type=int, default=8, help="Self-consistency samples (0: no such run).")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--adapter", help="A LoRA adapter folder to merge into the model (e.g. a fine-tuned run's "
                                          "final_model), so that most unconstrained programs are well-formed.")
    parser.add_argument("--instruction", help="The prompts' instruction (default: the program target's built-in "
                                              "one; an adapter wants its training --task_instruction).")
    parser.add_argument("--torch_threads", type=int, default=0,
                        help="0: torch's default. On a machine shared with other jobs, 1 avoids threads waiting for "
                             "each other (10x slower with 2 threads beside a training run on 2 cores).")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    model, tokenizer, model_name = load_model_and_tokenizer()
    if args.adapter:
        import_bitsandbytes_offline()  # peft imports it: without the Hub, as everywhere in this package
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter).merge_and_unload()
        model_name = f"{model_name} + {args.adapter}"
    model.eval()
    examples = load_examples(args.test_file)
    examples = examples[: args.num_examples] if args.num_examples else examples
    records, _ = build_prompt_records(examples, target_field="program", context_config=ContextConfig(),
                                      tokenizer=tokenizer, instruction=args.instruction, with_grammar=True)
    backend = HFBackend(model, tokenizer)
    for constrained in (False, True):  # warm-up, llguidance's tokenizer included
        list(backend(records[:2], GenerationSettings(max_new_tokens=4, batch_size=2, engine="static",
                                                      constrained=constrained)))
    load_before = os.getloadavg()[0]
    tables = {example.id: example.table for example in examples}
    constrained_runs = {engine: compare_constrained(backend, records, tables, engine, args)
                        for engine in args.engines.split(",") if engine}
    self_consistency = compare_samples(backend, records, args) if args.num_samples else None

    print(json.dumps({
        "benchmark": "constrained decoding and self-consistency cost (HF backend, one process)",
        "model": model_name, "device": str(model.device), "torch_threads": torch.get_num_threads(),
        "adapter": args.adapter, "instruction": args.instruction or "built-in",
        "test_file": args.test_file, "examples": len(examples), "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "constrained": constrained_runs, "self_consistency": self_consistency,
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }, indent=2))


def settings_for(engine: str, args, **more) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, engine=engine,
                              stop_strings=get_target("program").stop_strings, **more)


def timed(backend, records, settings: GenerationSettings) -> tuple[dict, dict]:
    """Every record's Generation by id, and the run's seconds, generated tokens, seconds per token and the seconds
    spent in the grammar machinery (:func:`grammar_clock`)."""
    with grammar_clock() as spent:
        began = time.perf_counter()
        generations = {record.id: generation for record, generation in backend(records, settings)}
        seconds = time.perf_counter() - began
    tokens = sum(generation.new_tokens for generation in generations.values())
    result = {"seconds": round(seconds, 2), "new_tokens": tokens, "ms_per_token": round(1000 * seconds / tokens, 2)}
    if settings.constrained:
        result["grammar_seconds"] = {key: round(value, 2) for key, value in spent.items()}
        result["grammar_share"] = round(sum(spent.values()) / seconds, 3)
    return generations, result


@contextmanager
def grammar_clock():
    """A Counter of the seconds spent, while in the block, building llguidance's tokenizer (``tokenizer``: once per
    engine call), creating the rows' matchers (``matchers``: a per-example grammar compiled as a row first decodes)
    and in the grammar logits processor (``masks``: catching the matchers up, computing and applying the masks)."""
    spent: Counter = Counter()
    patched = [(grammar.RowGrammars, "__init__", "tokenizer"), (grammar.RowGrammars, "_matcher", "matchers"),
               (grammar._GrammarProcessor, "__call__", "masks")]
    originals = [getattr(owner, name) for owner, name, _ in patched]

    def clocked(function, key: str):
        def call(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - began
        return call

    for (owner, name, key), original in zip(patched, originals, strict=True):
        setattr(owner, name, clocked(original, key))
    try:
        yield spent
    finally:
        for (owner, name, _), original in zip(patched, originals, strict=True):
            setattr(owner, name, original)


def ill_formed(text: str, table) -> Reason | None:
    """Why the cleaned program of ``text`` cannot run at all (:data:`ILL_FORMED`), or None."""
    tokens = tokenize(clean_generation(text))
    parsed = parse_program(tokens)
    if isinstance(parsed, Reason):
        return parsed
    reason = execute(tokens, table).reason
    return reason if reason in ILL_FORMED else None


def outcome(text: str, table) -> str:
    """The executed value of the cleaned program of ``text``, or why there is none."""
    execution = execute(tokenize(clean_generation(text)), table)
    return str(execution.reason or execution.value)


def compare_constrained(backend, records, tables: dict, engine: str, args) -> dict:
    """``args.repeats`` alternating unconstrained / constrained greedy runs of ``engine``: their costs, their
    ill-formed generations and the well-formed unconstrained programs that the grammar changed."""
    repetitions = []
    for repetition in range(args.repeats):
        texts, result = {}, {}
        for name, constrained in (("unconstrained", False), ("constrained", True)):
            generations, result[name] = timed(backend, records, settings_for(engine, args, constrained=constrained))
            texts[name] = {key: generation.text for key, generation in generations.items()}
            reasons = {key: ill_formed(text, tables[key]) for key, text in texts[name].items()}
            result[name]["ill_formed"] = dict(Counter(str(reason) for reason in reasons.values() if reason))
            result[name]["ill_formed_at_token_limit"] = sum(
                bool(reason) and generations[key].new_tokens >= args.max_new_tokens for key, reason in reasons.items())
            print(json.dumps({engine: {repetition: {name: result[name]}}}), file=sys.stderr, flush=True)
        result["constrained_per_token_ratio"] = round(result["constrained"]["ms_per_token"]
                                                      / result["unconstrained"]["ms_per_token"], 3)
        kept = [key for key, text in texts["unconstrained"].items() if ill_formed(text, tables[key]) is None]
        changed = [{name: {"program": clean_generation(texts[name][key]),
                           "execution": outcome(texts[name][key], tables[key])} for name in texts} | {"id": key}
                   for key in kept
                   if clean_generation(texts["unconstrained"][key]) != clean_generation(texts["constrained"][key])]
        result |= {"unconstrained_well_formed": len(kept), "well_formed_changed": len(changed), "changed": changed}
        repetitions.append(result)
    return {"repetitions": repetitions}


def compare_samples(backend, records, args) -> dict:
    """Seconds of one greedy sample per record against ``args.num_samples`` samples, with the prefix engine,
    streamed to a file as the driver does."""
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        for samples in (1, args.num_samples):
            torch.manual_seed(0)
            more = {"num_samples": samples} | ({"temperature": args.temperature} if samples > 1 else {})
            stats = generate_to_file(backend, records, Path(folder) / f"samples{samples}.jsonl",
                                     settings=settings_for("prefix", args, **more))
            result[f"n{samples}"] = {"generations": stats.generated, "seconds": round(stats.seconds, 2),
                                     "new_tokens": stats.new_tokens,
                                     "ms_per_token": round(1000 * stats.seconds / stats.new_tokens, 2)}
            print(json.dumps({f"n{samples}": result[f"n{samples}"]}), file=sys.stderr, flush=True)
    ratio = result[f"n{args.num_samples}"]["seconds"] / result["n1"]["seconds"]
    return result | {"temperature": args.temperature, "ratio": round(ratio, 2),
                     "times_cheaper_than_n_runs": round(args.num_samples / ratio, 2)}


if __name__ == "__main__":
    main()
