"""find_success: a cell shared between sweeps never ends as copies pointing at each other."""

from __future__ import annotations

import json
from pathlib import Path

from lora_exp.resume import find_success


def _write(path: Path, **record) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config_hash": "cell", "status": "success", **record}))
    return path


def test_the_runs_own_record_wins_over_a_copy_elsewhere(tmp_path):
    own = _write(tmp_path / "sweep_b" / "019" / "record.json")  # trained here
    _write(tmp_path / "sweep_a" / "016" / "record.json", reused_from=str(own))  # a copy of it
    assert find_success([tmp_path], "cell", own=own) == own


def test_an_original_is_preferred_to_a_copy_that_sorts_first(tmp_path):
    original = _write(tmp_path / "z_sweep" / "run" / "record.json")
    _write(tmp_path / "a_sweep" / "run" / "record.json", reused_from=str(original))
    new_dir = tmp_path / "c_sweep" / "run" / "record.json"
    assert find_success([tmp_path], "cell", own=new_dir) == original


def test_only_copies_lead_to_the_original_they_name(tmp_path):
    original = _write(tmp_path / "elsewhere" / "record.json")
    copy = _write(tmp_path / "root" / "a" / "record.json", reused_from=str(original))
    assert find_success([tmp_path / "root"], "cell") == original
    original.unlink()
    assert find_success([tmp_path / "root"], "cell") == copy


def test_failed_records_and_other_cells_are_not_success(tmp_path):
    _write(tmp_path / "a" / "record.json", status="failed")
    _write(tmp_path / "b" / "record.json", config_hash="other")
    assert find_success([tmp_path], "cell") is None
