"""scripts/real_splits.py: the splits of the real-data table, records copied unchanged from ../shared/FinQA/real."""

from __future__ import annotations

import json

import pytest

from finqa_dsl.sample.generator import validate_file
from scripts import real_splits


def test_the_real_splits_are_the_shared_records_with_gold_evidence(real_finqa_dir, tmp_path):
    real_splits.main(["--real_dir", str(real_finqa_dir), "--output_dir", str(tmp_path)])
    shared = {name: json.loads((real_finqa_dir / name).read_text())
              for name in ("train.json", "dev_convfinqa_derived.json", "dev.json", "test.json")}
    written = {name: json.loads((tmp_path / name).read_text()) for name in ("train.json", "dev.json", "test_gold.json")}
    assert json.loads((tmp_path / "train_dev.json").read_text()) == written["train.json"] + written["dev.json"]
    assert written["train.json"] == shared["train.json"] + shared["dev_convfinqa_derived.json"]
    assert written["dev.json"] == shared["dev.json"]
    assert written["test_gold.json"] == [r for r in shared["test.json"] if "gold_inds" in r["qa"]]
    assert [len(written[name]) for name in written] == [260, 457, 509]
    ids = [{r["id"] for r in records} for records in written.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]), "the splits share no example"
    assert not list(tmp_path.glob("*_synthetic.json")), "synthetic examples only on request"


def test_synthetic_ratio_adds_valid_synthetic_examples_to_the_training_splits_only(real_finqa_dir, tmp_path):
    real_splits.main(["--real_dir", str(real_finqa_dir), "--output_dir", str(tmp_path), "--synthetic_ratio", "0.5"])
    for name, real_count in (("train", 260), ("train_dev", 717)):
        real = json.loads((tmp_path / f"{name}.json").read_text())
        mixed_path = tmp_path / f"{name}_synthetic.json"
        mixed = json.loads(mixed_path.read_text())
        assert mixed[:real_count] == real and len(mixed) == real_count + round(real_count / 2)
        synthetic = mixed[real_count:]
        assert not {r["id"] for r in synthetic} & {r["id"] for r in real}
        (tmp_path / "synthetic_only").write_text(json.dumps(synthetic))
        assert validate_file(tmp_path / "synthetic_only") == len(synthetic)  # FinQA layout, exe_ans executed
        changes = [r["qa"]["program"] for r in synthetic if r["qa"]["question"].startswith("what was the change in")]
        assert changes and all(program.startswith("subtract(") and "divide" not in program for program in changes)
    assert sorted(path.name for path in tmp_path.glob("*_synthetic.json")) == ["train_dev_synthetic.json",
                                                                               "train_synthetic.json"]


def test_a_negative_synthetic_ratio_is_refused_before_anything_is_written(real_finqa_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        real_splits.main(["--real_dir", str(real_finqa_dir), "--output_dir", str(tmp_path / "out"),
                          "--synthetic_ratio", "-1"])
    assert exit_info.value.code != 0 and "--synthetic_ratio must be >= 0, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
