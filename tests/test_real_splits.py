"""scripts/real_splits.py: the splits of the real-data table, records copied unchanged from ../shared/FinQA/real."""

from __future__ import annotations

import json

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
