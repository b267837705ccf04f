"""The training-path benchmark's table (lora_exp/bench/training_path.py) from fixed records."""

from __future__ import annotations

import csv
import json

from lora_exp.bench.training_path import COLUMNS, write_table


def _run(root, name, wall, record=None, result=None):
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "process.json").write_text(json.dumps({"returncode": 0, "wall_s": wall}))
    if record is not None:
        (run / "record.json").write_text(json.dumps(record))
    if result is not None:
        (run / "result.json").write_text(json.dumps(result))


def _record(mode, overrides, train, acc, seed=0):
    return {
        "status": "success",
        "config": {
            "model": {"name": "minilm"},
            "task": {"max_seq_len": 128},
            "batch_size": 32,
            "method": {"name": "lora"},
        },
        "overrides": overrides,
        "step": {"mode": mode},
        "timing": {
            "timing/imports": 1.0,
            "timing/data_load": 2.0,
            "timing/tokenize": 0.5,
            "timing/model_load": 0.5,
            "timing/capture": 1.0,
            "timing/train": train,
            "timing/eval": 2.0,
            "timing/test": 1.0,
        },
        "measurements": {"throughput/tokens_per_s": 1000.0, "memory/peak_bytes": 10},
        "test": {"test/acc": acc},
        "environment": {"device": "GPU"},
        "seed": seed,
    }


def test_table_rows_phases_and_target_ratios(tmp_path):
    _run(tmp_path, "minilm_default", 30.0, _record("graphed", ["budget=full"], 9.0, 0.80))
    _run(tmp_path, "minilm_eager", 90.0,
         _record("eager", ["budget=full", "trainer.step=eager"], 60.0, 0.81))  # fmt: skip
    peer = {c: None for c in COLUMNS} | {"model": "minilm", "impl": "hf_trainer_peft",
                                          "train_s": 72.0, "test_acc": 0.8}  # fmt: skip
    _run(tmp_path, "hf_trainer_peft", 100.0, result=peer)
    rows = write_table(tmp_path)
    table = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert list(table[0]) == COLUMNS and len(rows) == 3
    default = next(r for r in rows if r["default"])
    assert default["startup_s"] == 4.0  # imports + data + tokenise + model load
    assert default["train_s"] == 12.0  # train + capture + validation
    assert default["eval_s"] == 1.0 and default["wall_s"] == 30.0
    text = (tmp_path / "table.md").read_text()
    assert "training vs HF Trainer + PEFT: 6.00x faster" in text  # 72 / 12
    assert "whole process 0.300x of the peer's" in text  # 30 / 100
    assert "vs trainer.step=eager: 5.25x faster" in text  # (60 + 1 + 2 + 0) / 12
    assert not (tmp_path / "seeds.md").exists()  # seeds 1 and 2 have not run


def test_seed_summary_compares_medians_over_three_seeds(tmp_path):
    for seed, (a, b) in enumerate([(0.80, 0.81), (0.79, 0.80), (0.81, 0.805)]):
        suffix = "" if seed == 0 else f"_seed{seed}"
        _run(tmp_path, f"minilm_default{suffix}", 1.0, _record("graphed", [], 9.0, a, seed))
        _run(tmp_path, f"minilm_eager{suffix}", 1.0,
             _record("eager", ["trainer.step=eager"], 60.0, b, seed))  # fmt: skip
    rows = write_table(tmp_path)
    assert len(rows) == 2  # the seed runs stay out of the speed table
    text = (tmp_path / "seeds.md").read_text()
    assert "| default | graphed | 0.8000, 0.7900, 0.8100 | 0.8000 |" in text
    assert "Median difference -0.50 points: within" in text
