"""End to end through `python run.py`, as a user runs it: the record, the CSV log, skip, resume."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from tests import record_keys
from tests.conftest import ROOT, TINY_RUN, kill_after_first_checkpoint, run_cli

TINY = TINY_RUN


def _record(run_dir):
    return json.loads((run_dir / "record.json").read_text())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run_dir = root / "a"
    result = run_cli([*TINY, f"hydra.run.dir={run_dir}", f"records_root={root}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return root, run_dir, result


def test_record_has_the_documented_content(finished_run):
    _, run_dir, result = finished_run
    record = _record(run_dir)
    assert record["status"] == "success" and record["error"] is None
    assert record["schema_version"] == 1
    assert record["config"]["model"]["name"] == "tiny-bert" and record["seed"] == 0
    assert "method=full_ft" in record["overrides"]
    assert record["task"]["name"] == "tweet_sentiment" and record["task"]["version"] == 1
    assert record["task"]["split_sizes_used"] == {"train": 512, "validation": 128, "test": 3725}
    assert record["task"]["fingerprint"]
    params = record["params"]
    assert (
        params["params/trainable"] + params["params/head"] == params["params/trainable_with_head"]
    )
    assert params["params/trainable_with_head"] == params["params/total"]  # full fine-tuning
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2]
    best = max(record["history"], key=lambda h: h["val/acc"])
    assert record["best"]["epoch"] == best["epoch"]
    assert set(record["test"]) == {"test/acc", "test/f1_macro"}
    assert 0.0 <= record["test"]["test/acc"] <= 1.0
    env = record["environment"]
    assert env["packages"]["torch"] and env["python"] and env["device"].startswith("cpu")
    assert set(env["git"]) == {"commit", "dirty"}
    assert record["wall_time_s"] > 0 and record["finished_at"]
    assert "== lora_exp run summary ==" in result.stdout
    measured = record["measurements"]  # issue 5, item 3: every run measures itself
    assert measured["latency/ms"] > 0 and measured["latency/batch_size"] == 1
    assert measured["throughput/tokens_per_s"] > 0 and measured["memory/kind"] == "cpu_max_rss"
    assert measured["memory/peak_bytes"] > 0
    best_ckpt = run_dir / "checkpoints" / "best.ckpt"
    assert measured["checkpoint/saved_bytes"] == best_ckpt.stat().st_size


def test_record_has_the_keys_the_previous_code_wrote(finished_run):
    """Fitting returns result objects now (fit_result.py); the record they become is unchanged."""
    _, run_dir, _ = finished_run
    assert record_keys.key_paths(_record(run_dir)) == record_keys.CLASSIFICATION


def test_training_loss_goes_down(finished_run):
    _, run_dir, _ = finished_run
    losses = [h["train/loss_mean"] for h in _record(run_dir)["history"]]
    assert losses[-1] < losses[0] - 0.02, losses


def test_metrics_csv_mirrors_the_record(finished_run):
    _, run_dir, _ = finished_run
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert any(r.get("train/loss") for r in rows)
    val = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert val == pytest.approx([h["val/acc"] for h in _record(run_dir)["history"]])
    assert any(r.get("params/trainable") for r in rows)
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # finished: nothing to resume


def test_rerunning_a_finished_configuration_is_a_no_op(finished_run):
    root, _, _ = finished_run
    again = root / "b"
    result = run_cli([*TINY, f"hydra.run.dir={again}", f"records_root={root}"])
    assert result.returncode == 0
    assert "already done" in result.stdout
    assert not (again / "checkpoints").exists()  # nothing trained
    copy = json.loads((again / "record.json").read_text())
    assert copy["reused_from"] == str(root / "a" / "record.json")
    assert copy["test"] == _record(root / "a")["test"]


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(finished_run, tmp_path):
    _, run_dir, _ = finished_run
    args = [
        sys.executable,
        str(ROOT / "run.py"),
        *TINY,
        f"hydra.run.dir={tmp_path / 'k'}",
        f"records_root={tmp_path}",
    ]
    kill_after_first_checkpoint(args, tmp_path / "k" / "checkpoints" / "last.ckpt")
    assert _record(tmp_path / "k")["status"] == "running"  # killed: nothing claims success
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, uninterrupted = _record(tmp_path / "k"), _record(run_dir)
    assert resumed["status"] == "success" and resumed["resumed_from"].endswith("last.ckpt")
    assert resumed["resumed_from_epoch"] < 2  # killed mid-training, not after the last epoch
    assert resumed["test"] == uninterrupted["test"]
    for a, b in zip(resumed["history"], uninterrupted["history"], strict=True):
        assert a == pytest.approx(b)
