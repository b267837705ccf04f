"""wandb: the environment's WANDB_MODE is respected; a failed start degrades, never fails the run.

Offline: wandb.init is replaced by a fake that fails the way a rejected key does and otherwise
starts a disabled run (no wandb service process, no network)."""

from __future__ import annotations

import logging

import pytest

from lora_exp.trainer_build import build_loggers
from lora_exp.wandb_start import wandb_mode
from tests.conftest import compose


@pytest.mark.parametrize(
    ("requested", "environ", "expected"),
    [
        ("auto", {"WANDB_MODE": "offline", "WANDB_API_KEY": "k" * 40}, "offline"),  # issue 17
        ("auto", {"WANDB_MODE": "disabled"}, "disabled"),
        ("auto", {"WANDB_MODE": "dryrun"}, "offline"),  # wandb's old name for offline
        ("auto", {"WANDB_API_KEY": "k" * 40}, "online"),
        ("offline", {"WANDB_MODE": "online"}, "offline"),  # an explicit logger.mode wins
    ],
)
def test_mode_respects_the_environment(requested, environ, expected):
    assert wandb_mode(requested, environ) == expected


@pytest.fixture
def fake_wandb(monkeypatch):
    import wandb

    real_init, calls = wandb.init, []

    def init(**kwargs):
        calls.append(kwargs["mode"])
        if kwargs["mode"] in FAILING:
            raise wandb.errors.CommError("API key rejected: 401 Unauthorized\nmore detail")
        return real_init(mode="disabled")

    FAILING.clear()
    monkeypatch.setattr(wandb, "init", init)
    yield calls
    wandb.finish()


FAILING: set[str] = set()


def _wandb_loggers(run_dir, mode: str = "auto"):
    cfg = compose(["model=tiny-bert", "logger=wandb", f"logger.mode={mode}"])
    return build_loggers(cfg.logger, run_dir, cfg.method.name)


def test_environment_mode_reaches_wandb_and_stays_in_the_environment(
    fake_wandb, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    loggers = _wandb_loggers(tmp_path)
    assert fake_wandb == ["offline"]
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger", "WandbLogger"]
    import os

    assert os.environ["WANDB_MODE"] == "offline"


def test_a_rejected_key_degrades_to_offline_with_one_warning(
    fake_wandb, tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-0123456789")
    FAILING.add("online")
    with caplog.at_level(logging.WARNING, logger="lora_exp"):
        loggers = _wandb_loggers(tmp_path)
    assert fake_wandb == ["online", "offline"]
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger", "WandbLogger"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "wandb could not start online: CommError: API key rejected: 401" in warnings[0]
    assert "logging to wandb offline instead" in warnings[0] and "more detail" not in warnings[0]


def test_when_offline_fails_too_the_run_keeps_the_csv_log(fake_wandb, tmp_path, caplog):
    FAILING.update({"online", "offline"})
    with caplog.at_level(logging.WARNING, logger="lora_exp"):
        loggers = _wandb_loggers(tmp_path, "online")
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "csv/metrics.csv and its record only" in warnings[0]
