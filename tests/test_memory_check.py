"""A model too large for the device fails before allocating, naming the estimate."""

from __future__ import annotations

import json
import time

import pytest

from lora_exp.checks import memory as memory_check
from lora_exp.errors import UserError
from tests.conftest import compose, run_cli


def test_full_fine_tuning_costs_16_bytes_a_parameter():
    from lora_exp.dry_run import dry_counts

    cfg = compose(["model=tiny-bert", "method=full_ft", "trainer.accelerator=cpu"])
    counts, _ = dry_counts(cfg)
    needed, how = memory_check.estimate_bytes(cfg)
    assert counts["params/total"] == counts["params/trainable_with_head"]
    assert needed == 16 * counts["params/total"]
    assert f"{counts['params/total']:,} parameters, 0 frozen" in how


def test_lora_costs_4_bytes_frozen_and_16_trainable():
    from lora_exp.dry_run import dry_counts

    cfg = compose(["model=tiny-bert", "method=lora", "trainer.accelerator=cpu"])
    counts, _ = dry_counts(cfg)
    trainable = counts["params/trainable_with_head"]
    frozen = counts["params/total"] - trainable
    assert 0 < trainable < frozen
    assert memory_check.estimate_bytes(cfg)[0] == 4 * frozen + 16 * trainable


def test_too_little_memory_is_a_user_error_naming_the_estimate(monkeypatch):
    cfg = compose(["model=tiny-bert", "method=full_ft", "trainer.accelerator=cpu"])
    monkeypatch.setattr(memory_check, "available", lambda cfg: (1024, "available on this host"))
    with pytest.raises(UserError) as err:
        memory_check.check_memory(cfg)
    message = str(err.value)
    assert message.startswith("model=tiny-bert method=full_ft needs at least 0.0 GiB")
    assert "more than the 0.0 GiB available on this host" in message
    assert "dry_run=true" in message


def test_enough_memory_passes(monkeypatch):
    cfg = compose(["model=tiny-bert", "trainer.accelerator=cpu"])
    monkeypatch.setattr(memory_check, "available", lambda trainer_cfg: (2**40, "available"))
    memory_check.check_memory(cfg)


def test_cpu_data_parallel_processes_share_the_host(monkeypatch):
    monkeypatch.setattr(memory_check, "host_available_bytes", lambda: 8 * 2**30)
    cfg = compose(["model=tiny-bert", "trainer.accelerator=cpu", "trainer.devices=2"])
    have, where = memory_check.available(cfg.trainer)
    assert have == 4 * 2**30 and "shared by 2 processes" in where


def test_host_memory_from_meminfo(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_psutil(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 2048 kB\n")
    assert memory_check.host_available_bytes(meminfo) == 2048 * 1024


@pytest.mark.slow
def test_gpt3_175b_fails_in_seconds_with_a_failed_record(tmp_path):
    run_dir = tmp_path / "run"
    start = time.time()
    result = run_cli(["model=gpt3-175b", f"hydra.run.dir={run_dir}", f"records_root={tmp_path}"])
    elapsed = time.time() - start
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model=gpt3-175b method=lora needs")
    assert "GiB" in lines[0] and "dry_run=true" in lines[0]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "failed" and "needs at least" in record["error"]
    assert not list(tmp_path.rglob("*.lock"))
    assert elapsed < 60, elapsed  # about 5 s here: the meta-device model, no weights
