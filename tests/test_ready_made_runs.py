"""Every flag the ready-made runs in __scripts__/ pass exists (a typo would otherwise surface hours into a GPU
job)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transformers import HfArgumentParser, TrainingArguments

from finqa_dsl.driver.arguments import DataArguments, GenerationArguments, ModelArguments, RunArguments
from scripts import real_splits

RUNS = Path(__file__).resolve().parents[1] / "__scripts__"
DRIVER_SCRIPTS = sorted(p for p in RUNS.rglob("*.sh") if "finetune.py" in p.read_text() or "_run.sh" in p.read_text())


@pytest.fixture(scope="module")
def driver_flags() -> set[str]:
    parser = HfArgumentParser((ModelArguments, DataArguments, GenerationArguments, RunArguments, TrainingArguments))
    return set(parser._option_string_actions)


@pytest.mark.parametrize("script", DRIVER_SCRIPTS, ids=lambda p: str(p.relative_to(RUNS)))
def test_every_flag_of_a_ready_made_run_exists(script, driver_flags):
    text = script.read_text()
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_]*)", text))
    assert flags, "no flags found"
    teacher_flags = {"--teacher", "--output_file"}  # generate_teacher_code.py / filter_valid_answers.py in one run
    splits_flags = set(real_splits.build_parser()._option_string_actions)  # the real-data run writes its splits
    assert flags - driver_flags <= teacher_flags | splits_flags

