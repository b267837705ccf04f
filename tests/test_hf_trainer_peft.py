"""The HF Trainer + PEFT peer of the training-path benchmark (lora_exp/bench/hf_trainer_peft.py).

It runs as a user runs it (`python -m lora_exp.bench.hf_trainer_peft --out DIR overrides...`),
on a tiny budget of the default recipe (MiniLM, LoRA r=8 on q and v, tweet_sentiment) on a CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, compose

TINY = ["budget.max_train_examples=256", "budget.max_eval_examples=128", "epochs=1"]
KEYS = {
    "model", "seq_len", "batch_size", "method", "impl", "mode", "default", "startup_s",
    "train_s", "eval_s", "wall_s", "tokens_per_s", "peak_mem_bytes", "test_acc", "device",
    "trainable",
}  # fmt: skip


def run_peer(out, overrides: list[str], timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "lora_exp.bench.hf_trainer_peft", "--out", str(out), *overrides],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_subsample_matches_the_data_module():
    """The peer's copy of the budget's subsampling picks the examples lora_exp picks."""
    from datasets import Dataset

    from lora_exp.bench.hf_trainer_peft import _subsample as peer
    from lora_exp.tasks.datamodule import _subsample as ours

    data = Dataset.from_dict({"text": [str(i) for i in range(100)], "label": [0, 1] * 50})
    for limit in (None, 10, 100, 1000):
        assert peer(data, limit, 7)["text"] == ours(data, limit, 7)["text"]


def test_bad_override_is_one_line_and_exit_2(tmp_path):
    result = run_peer(tmp_path, ["no_such_key=1"], timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "result.json").exists()


@pytest.mark.slow
def test_tiny_budget_writes_a_consistent_result(tmp_path):
    result = run_peer(tmp_path, TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads((tmp_path / "result.json").read_text())
    assert not KEYS - set(row), f"missing keys: {KEYS - set(row)}"
    assert (row["impl"], row["method"], row["mode"], row["default"]) == (
        "hf_trainer_peft", "lora", "eager", False
    )  # fmt: skip
    assert (row["model"], row["seq_len"], row["batch_size"]) == ("minilm", 128, 32)
    assert 0.0 <= row["test_acc"] <= 1.0
    assert row["tokens_per_s"] > 0
    # Phases are sequential parts of the process; 3 ms allows for rounding each to 3 places.
    assert row["startup_s"] + row["train_s"] + row["eval_s"] <= row["wall_s"] + 3e-3
    if row["device"].startswith("cpu"):
        assert row["peak_mem_bytes"] is None

    # PEFT's SEQ_CLS trains LoRA plus the classifier head (modules_to_save); the head's size
    # comes from the model itself, the LoRA part in closed form: q and v in 6 layers of hidden
    # 384 at r=8, each A (8 x 384) and B (384 x 8).
    from lora_exp.models import load_backbone

    cfg = compose(TINY)
    model = load_backbone(cfg.model, len(cfg.task.label_names), cfg.task.problem, 0)
    head = sum(p.numel() for p in model.classifier.parameters())
    layers, hidden, rank = 6, 384, 8
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (layers, hidden)
    assert row["trainable"] - head == layers * 2 * (rank * hidden + hidden * rank) == 73_728
