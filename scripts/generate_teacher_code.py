#!/usr/bin/env python
"""Ask a teacher for Python that answers each FinQA question, run it in the sandbox, and write the teacher CSV
(prompt, generated_code, actual_answer, expected_answer, id, failure reason, tokens used).

Rows stream to <output>.jsonl as they arrive; a rerun (even after kill -9) skips the ids already answered and
asks again only those whose request failed.

openai: the request holds max_completion_tokens (from --max_tokens), and temperature / reasoning_effort only when
given, so the same command works against a reasoning model (gpt-5, o-series), vLLM and `transformers serve`.
The exit status is 1 when every request failed or the file's failed ids exceed --max_failure_rate (each failure
kind is printed with the server's message); a client error that cannot heal (HTTP 400, 401, 404, 422, ...) stops
the run after --abort_after identical replies.

    python scripts/generate_teacher_code.py FinQA/sample/train.json --output_file data/teacher/train.csv \\
        --teacher gold-program
    OPENAI_API_KEY=... python scripts/generate_teacher_code.py data/clean/train.csv --output_file t.csv \\
        --teacher openai --base_url https://api.openai.com/v1 --model gpt-5 --reasoning_effort low --concurrency 10
    python scripts/generate_teacher_code.py FinQA/sample/dev.json --output_file t.csv --teacher hf \\
        --model Qwen/Qwen2.5-Coder-7B-Instruct
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from finqa_dsl.core.context import INPUT_MODES, ContextConfig
from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.finqa_csv import BAD_PROGRAM_CHOICES
from finqa_dsl.distill.chat_client import REASONING_EFFORTS, Endpoint
from finqa_dsl.distill.teacher_code import TEACHERS, choose_shots, generate_teacher_code, write_teacher_csv
from finqa_dsl.sandbox import Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_file", help="FinQA JSON/JSONL, or a CSV from scripts/preprocess_finqa.py.")
    parser.add_argument("--output_file", required=True, help="Teacher CSV to write (rows stream to <it>.jsonl).")
    parser.add_argument("--teacher", default="openai", choices=TEACHERS)
    parser.add_argument("--base_url", help="openai: the endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="openai: the model name; hf: a hub id or local folder.")
    parser.add_argument("--api_key_env", default="OPENAI_API_KEY", help="Environment variable holding the key.")
    parser.add_argument("--concurrency", type=int, default=10, help="openai: requests in flight at most.")
    parser.add_argument("--max_retries", type=int, default=5, help="openai: retries of a failed request.")
    parser.add_argument("--timeout_s", type=float, default=120.0, help="openai: seconds per request.")
    parser.add_argument("--max_tokens", type=int, default=1024,
                        help="Tokens the teacher may write (openai: sent as max_completion_tokens, which a reasoning "
                             "model spends on reasoning too: give it room, e.g. 4096).")
    parser.add_argument("--temperature", type=float, default=None,
                        help="openai: sampling temperature (default: not sent, the server's own; reasoning models "
                             "accept only their default).")
    parser.add_argument("--reasoning_effort", choices=REASONING_EFFORTS,
                        help="openai: passed through to a reasoning model (default: not sent).")
    parser.add_argument("--extra_body", type=_json_object, default={},
                        help="openai: a JSON object of further request fields, e.g. '{\"top_k\": 20}' for vLLM.")
    parser.add_argument("--max_failure_rate", type=float, default=0.05,
                        help="Exit 1 when more than this share of the examples has no teacher reply.")
    parser.add_argument("--abort_after", type=int, default=3,
                        help="openai: stop sending after this many identical client errors (HTTP 400, 401, ...).")
    parser.add_argument("--batch_size", type=int, default=8, help="hf: prompts generated together.")
    parser.add_argument("--num_shots", type=int, default=4, help="Solved shots in the prompt.")
    parser.add_argument("--shots_file", help="Where the shots come from (default: the input file); their code "
                                             "is the gold program transpiled.")
    parser.add_argument("--no_hint", action="store_true", help="Do not show the gold DSL program as a hint.")
    parser.add_argument("--input_mode", default="all", choices=INPUT_MODES, help="Passage shown to the teacher.")
    parser.add_argument("--max_examples", type=int, default=0, help="First N examples only (0: all).")
    parser.add_argument("--exec_timeout_s", type=float, default=2.0, help="Sandbox wall-clock limit per program.")
    parser.add_argument("--bad_program", choices=BAD_PROGRAM_CHOICES, default="skip",
                        help="A study CSV row whose program does not execute: skip it (counted and named on the "
                             "log) or refuse the file.")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        summary = _run(args)
    except (UsageError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    failed = _failure_report(summary, args.max_failure_rate)
    if failed:
        print(failed, file=sys.stderr)
        return 1
    return 0


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}: {text!r}")
    return value


def _failure_report(summary: dict, max_failure_rate: float) -> str:
    """The lines that end the run with exit 1 ('' when it succeeded): every request of this run failed, or the
    file's failed ids pass the rate; each failure kind with its count and message."""
    every = summary["sent"] > 0 and summary["failed"] == summary["sent"]
    rate = summary["teacher_errors"] / summary["examples"] if summary["examples"] else 0.0
    if not (every or rate > max_failure_rate or summary["aborted"]):
        return ""
    head = (f"error: all {summary['sent']} requests failed" if every else
            f"error: {summary['teacher_errors']} of {summary['examples']} examples have no teacher reply "
            f"({rate:.1%} > --max_failure_rate {max_failure_rate:.1%})")
    lines = [head]
    lines += [f"  {kind} x{count}: {summary['teacher_messages'].get(kind, '')}"
              for kind, count in summary["teacher_errors_by_kind"].items()]
    if summary["aborted"]:
        lines.append(f"  {summary['aborted']}")
    lines.append("  rerun the same command to retry only the failed ids.")
    return "\n".join(lines)


def _run(args) -> dict:
    if args.teacher != "gold-program" and not args.model:
        raise UsageError(f"--teacher {args.teacher} needs --model.")
    if args.teacher == "openai" and not args.base_url:
        raise UsageError("--teacher openai needs --base_url (e.g. https://api.openai.com/v1).")
    examples = load_examples(args.input_file, bad_program=args.bad_program)
    examples = examples[:args.max_examples] if args.max_examples else examples
    shots = choose_shots(load_examples(args.shots_file, bad_program=args.bad_program) if args.shots_file
                         else examples, args.num_shots)
    endpoint = Endpoint(args.base_url, args.model, args.api_key_env, args.concurrency, args.max_retries,
                        args.timeout_s, args.max_tokens, args.temperature, args.extra_body, args.reasoning_effort,
                        args.abort_after) if args.teacher == "openai" else None
    if endpoint is not None:
        from finqa_dsl.distill.chat_client import api_key

        api_key(endpoint)  # fail before any work when the key is missing
    local = None
    if args.teacher == "hf":
        from finqa_dsl.distill.local_teacher import LocalTeacher

        local = LocalTeacher(args.model, max_new_tokens=args.max_tokens, batch_size=args.batch_size)
    output = Path(args.output_file)
    stream = output.with_suffix(".jsonl")
    with Sandbox(timeout_s=args.exec_timeout_s) as sandbox:
        summary = generate_teacher_code(examples, stream, teacher=args.teacher, sandbox=sandbox, shots=shots,
                                        hint=not args.no_hint, context_config=ContextConfig(args.input_mode),
                                        endpoint=endpoint, local_generate=local)
    rows = write_teacher_csv(stream, output, examples)
    return {**asdict(summary), "failure_rate": round(summary.failure_rate, 4),
            "total_tokens": summary.prompt_tokens + summary.completion_tokens,
            "tokens_per_request": summary.tokens_per_request(),
            "shots": [shot.example.id for shot in shots], "csv_rows": rows, "output_file": str(output),
            "stream_file": str(stream)}


if __name__ == "__main__":
    sys.exit(main())
