"""The driver's config file: YAML or JSON defaults that command-line flags override; one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from finqa_dsl.core.errors import UsageError
from finqa_dsl.driver.command_line import parse_command_line
from scripts import finetune as driver

YAML_CONFIG = """\
# a run described in a file
peft: lora
lora_r: 8
learning_rate: 2e-4   # YAML reads this as a string; the flag's type converts it
do_train: true
report_to: none
target_field: numerical
"""


def test_command_line_flags_override_the_yaml_config(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(YAML_CONFIG)
    model, data, _, run, training = parse_command_line(["--lora_r", "4", "--config", str(config),
                                                        "--do_test", "--learning_rate", "1e-3"])
    assert (model.peft, model.lora_r, data.target_field) == ("lora", 4, "numerical")
    assert (training.learning_rate, training.do_train, run.do_test, training.report_to) == (1e-3, True, True, [])
    model, _, _, _, training = parse_command_line(["--config", str(config)])
    assert (model.lora_r, training.learning_rate) == (8, 2e-4)
    assert parse_command_line([])[0].lora_r == 16, "without a config the dataclass defaults hold"


def test_a_lone_json_file_is_the_config(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"peft": "qlora", "seed": 5, "do_test": True}))
    model, _, _, run, training = parse_command_line([str(config)])
    assert (model.peft, training.seed, run.do_test) == ("qlora", 5, True)
    assert parse_command_line([f"--config={config}", "--seed", "9"])[4].seed == 9


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.yaml", None, "cannot read it (No such file or directory)"),
        ("broken.yaml", "peft: [lora\n", "not valid YAML or JSON at line 2"),
        ("broken.json", '{"peft": "lora",\n "lora_r": 4\n', "not valid YAML or JSON at line 3"),
        ("list.yaml", "- peft\n- lora\n", "expected a mapping of flag names to values, found list"),
        ("typo.yaml", "pef: lora\nlora_r: 4\nlearnig_rate: 1\n", "unknown flag(s) learnig_rate, pef"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it_and_exit_2(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=f"^--config {re.escape(str(path))}: "):
        parse_command_line(["--config", str(path), "--do_test"])
    assert driver.main(["--config", str(path), "--do_test"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --config {path}: ") and message in err[0]
