"""scripts/make_noisy_gold_dataset.py: deterministic JSONL output and clear failures on bad data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from finqa_dsl.core.data import load_examples


@pytest.fixture(scope="module")
def script():
    from scripts import make_noisy_gold_dataset

    return make_noisy_gold_dataset


@pytest.fixture()
def train_file(real_finqa_dir):
    return real_finqa_dir / "train.json"


def test_same_arguments_give_byte_identical_files(script, train_file, real_finqa_dir, shared_models_dir,
                                                  tmp_path, capsys):
    some = tmp_path / "train_40.json"
    some.write_text(json.dumps(json.loads(train_file.read_text())[:40]))

    def run(name: str, seed: int) -> bytes:
        output = tmp_path / name
        assert script.main([
            "--input_file", str(some), "--output_file", str(output), "--noisy_text_distractors", "4",
            "--noisy_table_distractors", "2", "--noisy_context_seed", str(seed),
            "--tokenizer", str(shared_models_dir / "qwen2.5-0.5b-instruct"), "--max_prompt_tokens", "900",
            "--few_shot_k", "1", "--few_shot_file", str(real_finqa_dir / "dev.json"),
        ]) == 0
        return output.read_bytes()

    first, second, other_seed = run("a.jsonl", 3), run("b.jsonl", 3), run("c.jsonl", 4)
    assert first == second
    assert first != other_seed
    rows = [json.loads(line) for line in first.decode().splitlines()]
    assert len(rows) == 40
    assert all(list(row) == ["id", "question", "context", "prompt", "target"] for row in rows)
    assert rows[0]["target"] == "divide(9896, 23.6%)"
    assert rows[0]["prompt"].startswith("<|im_start|>system\n") and rows[0]["context"] in rows[0]["prompt"]
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["records"] == 40 and summary["truncation"]["max_prompt_tokens"] == 900


def test_defaults_are_noisy_gold_programs_in_plain_format(script, train_file, tmp_path):
    output = tmp_path / "plain.jsonl"
    assert script.main(["--input_file", str(train_file), "--output_file", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    gold = load_examples(train_file)
    assert [(row["id"], row["target"]) for row in rows] == [(example.id, example.program) for example in gold]
    row = rows[0]
    assert row["prompt"].endswith(f"Context:\n{row['context']}\nAnswer:\n")
    assert row["context"].count("\n") >= 4  # evidence, header and distractors


def test_a_malformed_dataset_exits_2_with_one_clear_message(script, train_file, tmp_path, capsys):
    records = json.loads(train_file.read_text())[:3]
    del records[1]["qa"]["exe_ans"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(records))
    output = tmp_path / "out.jsonl"
    assert script.main(["--input_file", str(broken), "--output_file", str(output)]) == 2
    error = capsys.readouterr().err
    assert error == (f"error: {broken}: record {records[1]['id']}: field 'qa.exe_ans': "
                     "a finite number or 'yes'/'no', got None\n")
    assert not output.exists()


def test_records_without_evidence_exit_2_in_gold_modes(script, real_finqa_dir, tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    test_file = str(real_finqa_dir / "test.json")
    assert script.main(["--input_file", test_file, "--output_file", str(output)]) == 2
    message = "field 'qa.gold_inds': gold evidence, required by input_mode 'noisy_gold'"
    assert message in capsys.readouterr().err
    assert script.main(["--input_file", test_file, "--output_file", str(output), "--input_mode", "all"]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    gold = load_examples(test_file)
    assert [row["id"] for row in rows] == [example.id for example in gold]
    # input_mode all: the whole passage, every table row included
    assert all(all(" | ".join(cells) in row["context"] for cells in example.table[1:])
               for row, example in zip(rows, gold, strict=True))


def test_runs_as_a_script_and_reports_invalid_json(tmp_path):
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"id": "A/2018/page_1.pdf-1", "qa": {\n')
    script = REPO_ROOT / "scripts" / "make_noisy_gold_dataset.py"
    result = subprocess.run([sys.executable, str(script), "--input_file", str(cut), "--output_file",
                             str(tmp_path / "out.jsonl")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {cut}: line 1: invalid JSON")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(("arguments", "message"), [
    (["--max_prompt_tokens", "100"], "--max_prompt_tokens needs --tokenizer"),
    (["--max_prompt_tokens", "-5", "--tokenizer", "any"], "--max_prompt_tokens must be >= 1, got -5"),
    (["--few_shot_k", "2"], "--few_shot_k needs --few_shot_file"),
    (["--input_mode", "oracle"], "invalid choice: 'oracle'"),
])
def test_bad_flags_exit_2(script, train_file, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--input_file", str(train_file), "--output_file", str(tmp_path / "o.jsonl"), *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_file_exits_2(script, tmp_path, capsys):
    absent = tmp_path / "absent.json"
    assert script.main(["--input_file", str(absent), "--output_file", str(tmp_path / "o.jsonl")]) == 2
    assert str(absent) in capsys.readouterr().err
