"""The run record: atomic writes, secret redaction, the cell hash used for skipping."""

from __future__ import annotations

import json
import os

import pytest

from lora_exp.records import (
    REDACTED,
    SCHEMA_VERSION,
    config_hash,
    load_record,
    redact,
    secret_values,
    write_json_atomic,
)


def test_atomic_write_leaves_no_temp_file_and_round_trips(tmp_path):
    path = tmp_path / "run" / "record.json"
    write_json_atomic(path, {"schema_version": SCHEMA_VERSION, "status": "success", "x": [1, 2]})
    assert load_record(path)["x"] == [1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_failed_serialisation_keeps_the_previous_record(tmp_path):
    path = tmp_path / "record.json"
    write_json_atomic(path, {"schema_version": SCHEMA_VERSION, "status": "running"})

    class Boom:
        def __str__(self):
            raise RuntimeError("cannot serialise")

    with pytest.raises(RuntimeError):
        write_json_atomic(
            path, {"schema_version": SCHEMA_VERSION, "status": "success", "b": Boom()}
        )
    assert json.loads(path.read_text())["status"] == "running"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_secrets_from_the_environment_are_redacted(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "abcdef0123456789")
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue")
    monkeypatch.setenv("HOME_DIR_NOT_SECRET", "abcdef0123456789x")
    assert "hf_secretvalue" in secret_values(dict(os.environ))
    obj = {"cmd": ["logger.tags=[abcdef0123456789]"], "nested": {"k": "hf_secretvalue/x"}}
    clean = redact(obj)
    assert clean == {"cmd": [f"logger.tags=[{REDACTED}]"], "nested": {"k": f"{REDACTED}/x"}}


def test_load_rejects_another_schema_version(tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(ValueError, match="schema_version"):
        load_record(path)


def test_cell_hash_ignores_logging_but_not_results():
    base = {
        "rank": 8,
        "seed": 0,
        "logger": {"name": "csv"},
        "trainer": {"devices": 1, "enable_progress_bar": True},
        "records_root": "outputs",
        "force": False,
    }
    same = {
        **base,
        "logger": {"name": "wandb"},
        "records_root": "elsewhere",
        "force": True,
        "trainer": {"devices": 1, "enable_progress_bar": False},
    }
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash({**base, "seed": 1})
    # batch_size is the global batch: the device layout is not the cell (lora_exp/distributed.py)
    assert config_hash(base) == config_hash({**base, "trainer": {"devices": 2, "strategy": "ddp"}})


def test_record_gets_the_permissions_of_the_other_run_files(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "record.json"
        write_json_atomic(path, {"schema_version": SCHEMA_VERSION})
        (tmp_path / "run.log").write_text("")
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        assert path.stat().st_mode & 0o777 == (tmp_path / "run.log").stat().st_mode & 0o777
        os.umask(0o077)
        write_json_atomic(path, {"schema_version": SCHEMA_VERSION})
        assert oct(path.stat().st_mode & 0o777) == "0o600"  # a private umask stays private
    finally:
        os.umask(old)


def test_a_corrupt_record_in_the_run_dir_is_kept_aside_with_one_warning(tmp_path, caplog):
    from lora_exp.run_cell import check_run_dir_is_ours

    path = tmp_path / "record.json"
    path.write_text('{"status": "succ')  # cut off mid-write by a full disk
    with caplog.at_level("WARNING", logger="lora_exp"):
        check_run_dir_is_ours(path, "abc")
    aside = list(tmp_path.glob("record.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"status": "succ'
    assert not path.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(aside[0]) in warnings[0] and str(path) in warnings[0]
