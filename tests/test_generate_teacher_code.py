"""scripts/generate_teacher_code.py: every teacher's rows executed in the sandbox, streamed, resumable after
kill -9 against a real local server, and every row done or named as failed against a faulty one."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SAMPLE
from faulty_server import CLIENT_TIMEOUT_S, FaultyServer
from reasoning_server import EFFORTS, ReasoningServer

from finqa_dsl.core.data import load_examples
from finqa_dsl.core.io import read_jsonl_tolerant
from scripts import generate_teacher_code

KEY_ENV = "FINQA_TEST_TEACHER_KEY"


def _csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_gold_program_teacher_gives_a_correct_training_csv_and_resumes(tmp_path, capsys):
    output = tmp_path / "teacher" / "dev.csv"
    args = [str(SAMPLE / "dev.json"), "--output_file", str(output), "--teacher", "gold-program", "--max_examples", "20"]
    assert generate_teacher_code.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["asked"] == 20 and summary["failure_reasons"] == {"ok": 20} and len(summary["shots"]) == 4
    rows = _csv_rows(output)
    gold = load_examples(SAMPLE / "dev.json")[:20]
    assert [float(r["expected_answer"]) if r["expected_answer"] not in ("yes", "no") else r["expected_answer"]
            for r in rows] == [example.exe_ans for example in gold]
    assert len(rows) == 20 and all(round(float(r["actual_answer"]), 5) == float(r["expected_answer"])
                                   for r in rows if r["expected_answer"] not in ("yes", "no"))
    assert all(r["actual_answer"] == r["expected_answer"] for r in rows if r["expected_answer"] in ("yes", "no"))
    assert all(r["failure_reason"] == "" and r["teacher_error"] == "" for r in rows)
    assert all("###Python" in row["prompt"] and "###Hint" in row["prompt"] for row in rows)
    examples = load_examples(output)  # the teacher CSV is a FinQA file with the code beside each example
    assert [e.id for e in examples] == [e.id for e in load_examples(SAMPLE / "dev.json")[:20]]
    assert examples[0].raw["generated_code"].splitlines()[-1].startswith("ans = ")
    assert generate_teacher_code.main(args) == 0
    assert json.loads(capsys.readouterr().out)["asked"] == 0  # everything was already answered
    assert len(read_jsonl_tolerant(output.with_suffix(".jsonl"))) == 20


def test_missing_model_base_url_or_key_are_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    out = tmp_path / "t.csv"
    common = [str(SAMPLE / "dev.json"), "--output_file", str(out)]
    assert generate_teacher_code.main([*common, "--teacher", "openai", "--model", "m"]) == 2
    assert "needs --base_url" in capsys.readouterr().err
    assert generate_teacher_code.main([*common, "--teacher", "hf"]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert generate_teacher_code.main([*common, "--teacher", "openai", "--model", "m", "--base_url",
                                       "http://127.0.0.1:9/v1", "--api_key_env", KEY_ENV]) == 2
    assert KEY_ENV in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".jsonl").exists()


def test_faulty_endpoint_rows_end_done_or_named_failed_and_a_rerun_retries_the_failed(tmp_path, capsys,
                                                                                      monkeypatch):
    examples = load_examples(SAMPLE / "test.json")[:6]
    cases = dict(zip((e.question for e in examples),
                     ["ok", "rate_limited", "malformed", "dropped", "always_500", "always_slow"], strict=True))
    server = FaultyServer(case_of=lambda body: next(case for question, case in cases.items()
                                                    if question in body["messages"][-1]["content"]))
    monkeypatch.setenv(KEY_ENV, "secret-value-9f8e")
    output = tmp_path / "teacher.csv"
    args = [str(SAMPLE / "test.json"), "--output_file", str(output), "--teacher", "openai", "--base_url",
            server.url, "--model", "m", "--api_key_env", KEY_ENV, "--max_examples", "6", "--max_retries", "2",
            "--timeout_s", str(CLIENT_TIMEOUT_S), "--num_shots", "1", "--shots_file", str(SAMPLE / "train.json")]
    try:
        assert generate_teacher_code.main(args) == 1  # 2 of 6 failed: past --max_failure_rate 0.05
        out, err = capsys.readouterr()
        summary = json.loads(out)
        assert summary["teacher_errors"] == 2 and summary["failure_reasons"] == {"ok": 4}
        assert summary["teacher_errors_by_kind"] == {"http_500": 1, "timeout": 1}
        assert "2 of 6 examples have no teacher reply" in err and "http_500 x1: 500" in err
        rows = {row["id"]: row for row in _csv_rows(output)}
        assert len(rows) == 6
        errors = sorted(row["teacher_error"] for row in rows.values() if row["teacher_error"])
        assert errors == ["http_500", "timeout"]
        assert all(row["actual_answer"] == "1.0" for row in rows.values() if not row["teacher_error"])
        assert summary["prompt_tokens"] == 4 * 7
        assert generate_teacher_code.main([*args, "--max_failure_rate", "0.5"]) == 1  # asks only the two failed,
        out, err = capsys.readouterr()  # which fail again: every request of the run failed
        assert json.loads(out)["asked"] == 2 and "error: all 2 requests failed" in err
    finally:
        server.close()
    written = output.read_text() + output.with_suffix(".jsonl").read_text()
    assert "secret-value-9f8e" not in written


@pytest.mark.slow
def test_a_real_local_server_run_killed_with_sigkill_resumes_without_loss_or_duplicates(served_default_model,
                                                                                        tmp_path):
    url, model = served_default_model
    output = tmp_path / "teacher.csv"
    stream = output.with_suffix(".jsonl")
    command = [sys.executable, str(REPO_ROOT / "scripts" / "generate_teacher_code.py"), str(SAMPLE / "dev.json"),
               "--output_file", str(output), "--teacher", "openai", "--base_url", f"{url}/v1", "--model", model,
               "--api_key_env", KEY_ENV, "--max_examples", "6", "--concurrency", "1", "--max_tokens", "24",
               "--num_shots", "1", "--input_mode", "gold", "--reasoning_effort", "low"]  # the README's flags
    env = {**os.environ, KEY_ENV: "none"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(read_jsonl_tolerant(stream)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = read_jsonl_tolerant(stream)
    assert 2 <= len(before) < 6, "the kill should land mid-run"
    answered = sum(row["teacher_error"] is None for row in before)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    summary = json.loads(result.stdout)
    assert summary["resumed"] == answered and summary["asked"] == 6 - answered
    ids = [row["id"] for row in read_jsonl_tolerant(stream)]
    assert sorted(set(ids)) == sorted({e.id for e in load_examples(SAMPLE / "dev.json")[:6]})  # none lost
    assert len(ids) == len(before) + summary["sent"]  # an answered id is never asked again
    rows = _csv_rows(output)
    # --max_tokens 24 cuts some replies: each such row is the named failure 'length', not code
    assert len(rows) == 6 and all(row["teacher_error"] in ("", "length") for row in rows)
    assert all(row["finish_reason"] == ("length" if row["teacher_error"] else "stop") for row in rows)
    assert all(row["generated_code"] == "" for row in rows if row["teacher_error"])
    assert all(int(row["completion_tokens"]) > 0 and float(row["seconds"]) > 0 for row in rows)
    assert all(int(row["completion_tokens"]) <= 24 for row in rows)  # the server honoured max_completion_tokens
    assert result.returncode == (1 if any(row["teacher_error"] for row in rows) else 0), result.stderr[-2000:]


def test_a_local_model_teacher_answers_every_example_through_the_engines(tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "teacher.csv"
    # a random tiny model never writes the end marker: each of its replies is cut by the limit, a named failure
    assert generate_teacher_code.main([str(SAMPLE / "dev.json"), "--output_file", str(output), "--teacher", "hf",
                                       "--model", str(tiny_model_dir), "--max_examples", "3", "--max_tokens", "8",
                                       "--num_shots", "1", "--input_mode", "gold"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["asked"], summary["sent"], summary["teacher_errors_by_kind"]) == (3, 3, {"length": 3})
    assert summary["completion_tokens"] == 3 * 8 and summary["prompt_tokens"] > 3 * 100
    assert "error: all 3 requests failed" in err and "max_new_tokens 8" in err
    rows = _csv_rows(output)
    assert [row["id"] for row in rows] == [e.id for e in load_examples(SAMPLE / "dev.json")[:3]]
    assert all(row["finish_reason"] == "length" and row["generated_code"] == "" for row in rows)
    stream = read_jsonl_tolerant(output.with_suffix(".jsonl"))
    assert all(row["reply"] is not None and row["teacher_error"] == "length" for row in stream)


@pytest.fixture
def reasoning(monkeypatch):
    """A loopback server with a reasoning model's rules, and the teacher's key variable set."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with ReasoningServer() as server:
        yield server


def _reasoning_command(output: Path, url: str, *extra: str) -> list[str]:
    """The README's teacher command, --model gpt-5, against ``url``."""
    return [str(SAMPLE / "dev.json"), "--output_file", str(output), "--teacher", "openai", "--base_url", url,
            "--model", "gpt-5", "--api_key_env", KEY_ENV, "--max_examples", "8", "--num_shots", "1", *extra]


def test_the_readme_command_gets_code_for_every_row_from_a_server_with_reasoning_model_rules(tmp_path, capsys,
                                                                                             reasoning):
    server = reasoning
    output = tmp_path / "teacher.csv"
    assert generate_teacher_code.main(_reasoning_command(output, server.url, "--reasoning_effort", "low")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["sent"], summary["failed"], summary["teacher_errors"]) == (8, 0, 0)
    assert summary["failure_reasons"] == {"ok": 8} and summary["aborted"] is None
    assert summary["reasoning_tokens"] == 8 * EFFORTS["low"] and summary["tokens_per_request"] == {
        "prompt": 100, "completion": 32 + 12, "reasoning": 32}
    assert all(body["max_completion_tokens"] == 1024 and body["reasoning_effort"] == "low" for body in server.bodies)
    assert not any("max_tokens" in body or "temperature" in body for body in server.bodies)
    rows = _csv_rows(output)
    assert len(rows) == 8 and all(row["generated_code"] == "ans = 1" and row["actual_answer"] == "1.0" for row in rows)
    assert all(row["finish_reason"] == "stop" and row["reasoning_tokens"] == "32" for row in rows)


def test_every_request_refused_exits_1_with_the_servers_message_and_a_fixed_rerun_asks_the_rest(tmp_path, capsys,
                                                                                            reasoning):
    server = reasoning
    output = tmp_path / "teacher.csv"
    assert generate_teacher_code.main(_reasoning_command(output, server.url, "--temperature", "0",
                                                         "--concurrency", "1")) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert len(server.bodies) == 3 and summary["sent"] == summary["failed"] == 3  # not the whole file
    assert summary["teacher_errors_by_kind"] == {"http_400": 3} and "3 identical http_400" in summary["aborted"]
    assert "error: all 3 requests failed" in err
    assert "Unsupported value: 'temperature' does not support 0.0 with this model." in err
    rows = _csv_rows(output)
    assert len(rows) == 3 and {row["teacher_error"] for row in rows} == {"http_400"}
    assert all(row["teacher_message"].startswith("Unsupported value: 'temperature'") for row in rows)
    assert generate_teacher_code.main(_reasoning_command(output, server.url)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["resumed"], summary["asked"], summary["teacher_errors"]) == (0, 8, 0)
    assert len(_csv_rows(output)) == 8
    assert generate_teacher_code.main(_reasoning_command(output, server.url)) == 0
    assert json.loads(capsys.readouterr().out)["asked"] == 0  # the good rows are kept


def test_a_reply_cut_by_the_token_limit_is_a_length_failure_and_the_run_exits_1(tmp_path, capsys, reasoning):
    output = tmp_path / "teacher.csv"
    assert generate_teacher_code.main(_reasoning_command(output, reasoning.url, "--max_tokens", "40")) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["teacher_errors_by_kind"] == {"length": 8} and summary["aborted"] is None  # not a 4xx: all sent
    assert summary["reasoning_tokens"] == 8 * 40 and "length x8: the reply reached the token limit" in err
    rows = _csv_rows(output)
    assert all(row["finish_reason"] == "length" and row["generated_code"] == "" for row in rows)


@pytest.mark.parametrize("extra_body", ["[1]", "{top_k: 2}"])
def test_an_extra_body_that_is_not_a_json_object_is_refused_by_the_parser(tmp_path, capsys, extra_body):
    with pytest.raises(SystemExit) as exit_info:
        generate_teacher_code.main([str(SAMPLE / "dev.json"), "--output_file", str(tmp_path / "t.csv"),
                                    "--extra_body", extra_body])
    assert exit_info.value.code == 2 and "--extra_body" in capsys.readouterr().err
