"""Bad input: one readable message, a non-zero exit within seconds, no traceback, no success."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run_cli

CASES = [
    (["model=nope"], "Available options in 'model'", "minilm"),
    (["method=nope"], "Available options in 'method'", "lora"),
    (["task=nope"], "Available options in 'task'", "tweet_sentiment"),
    (["rank=0"], "rank must be a positive integer", "0"),
    (["rank=-3"], "rank must be a positive integer", "-3"),
    (["rank=2.5"], "rank must be a positive integer", "2.5"),
    (["rank=abc"], "rank must be a positive integer", "abc"),
    (["alpha=0"], "alpha must be a number > 0", "0"),
    (["alpha=-1"], "alpha must be a number > 0", "-1"),
    (["targets=[q,x]"], "unknown target(s) x", "ffn_out"),
    (["targets=[]"], "targets must be a non-empty list", "[]"),
    (["task=mnli"], "task.data_dir", "mnli"),
    (["model=roberta-base"], "model.local_path=DIR", "FacebookAI/roberta-base"),
]


@pytest.mark.parametrize(("args", "message", "detail"), CASES, ids=lambda c: str(c))
def test_bad_input_fails_fast_with_one_message(tmp_path, args, message, detail):
    start = time.time()
    result = run_cli([*args, f"hydra.run.dir={tmp_path / 'run'}", f"records_root={tmp_path}"])
    elapsed = time.time() - start
    assert result.returncode != 0
    assert message in result.stderr and detail in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert elapsed < 60, elapsed  # seconds in practice; generous for a loaded CI machine
    record = tmp_path / "run" / "record.json"
    if record.exists():
        assert json.loads(record.read_text())["status"] == "failed"


def test_offline_glue_fails_within_five_seconds_of_startup(tmp_path):
    """The data check must not wait on network time-outs (the 5 s budget is for the lookup)."""
    result = run_cli(
        ["task=mnli", f"hydra.run.dir={tmp_path}", f"records_root={tmp_path}"],
        env={"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"},
    )
    assert result.returncode == 2
    assert "hub (huggingface.co) is not reachable" in result.stderr


@pytest.mark.slow
def test_secrets_never_reach_the_run_directory(tmp_path):
    secret = "sk-test-0123456789abcdef"
    run_dir = tmp_path / "run"
    result = run_cli(
        [
            "model=tiny-bert",
            "logger=wandb",
            "logger.mode=offline",
            f"logger.tags=[{secret}]",
            "budget.max_train_examples=32",
            "budget.max_eval_examples=32",
            "epochs=1",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run_dir}",
            f"records_root={tmp_path}",
        ],
        env={"MY_SERVICE_API_KEY": secret},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "record.json").read_text())["status"] == "success"
    leaks = [p for p in run_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []
    assert secret not in result.stdout + result.stderr
