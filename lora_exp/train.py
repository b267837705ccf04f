"""One run: config -> backbone -> method -> Lightning fit/test -> run record.

`run.py` calls `main(cfg)`. The record (see `records.py`) is written when the run starts
(status "running"), and rewritten atomically when it ends: "success", "failed" (with the error) or
"interrupted". Nothing heavy is imported until the config has been validated, so bad input fails
within seconds.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp import checks
from lora_exp.errors import UserError
from lora_exp.records import SCHEMA_VERSION, config_hash, environment, utc_now, write_json_atomic

log = logging.getLogger("lora_exp")
RECORD_NAME = "record.json"


def run_dir_and_overrides(cfg: DictConfig) -> tuple[Path, list[str]]:
    """Hydra's output directory and the command-line overrides (or `cfg.run_dir` outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        return Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    if cfg.get("run_dir"):
        return Path(cfg.run_dir), []
    raise UserError("no run directory: run through run.py, or set run_dir in the config")


def check_before_loading(cfg: DictConfig, overrides: list[str]) -> None:
    """Validation that needs the model family and the method registry, still without torch."""
    from lora_exp.models import get_family

    checks.validate(cfg)
    family = get_family(cfg.model.family)
    for target in checks.validate_targets(cfg.targets):
        if target not in family.sites:
            raise UserError(f"target '{target}' cannot be mapped in model family '{family.name}'")


def offline_if_hub_unreachable() -> None:
    """Switch transformers/datasets to offline mode when the hub cannot be reached.

    Without this, every hub lookup on an air-gapped machine waits for network time-outs; with it,
    cached and local files still load and missing ones fail at once with our message.
    """
    from lora_exp.tasks.glue import hub_reachable

    if not hub_reachable():
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")


def new_record(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "error": None,
        "run_dir": str(run_dir),
        "config": resolved,
        "overrides": overrides,
        "config_hash": config_hash(resolved),
        "seed": cfg.seed,
        "task": {
            "name": cfg.task.name,
            "version": cfg.task.version,
            "test_is_validation": bool(cfg.task.get("test_is_validation", False)),
        },
        "primary_metric": cfg.task.primary_metric,
        "params": {},
        "history": [],
        "best": None,
        "test": None,
        "started_at": utc_now(),
        "finished_at": None,
        "wall_time_s": None,
        "environment": None,
    }


def main(cfg: DictConfig) -> dict:
    """Run one configuration end to end and return its record."""
    start = time.time()
    run_dir, overrides = run_dir_and_overrides(cfg)
    check_before_loading(cfg, overrides)
    offline_if_hub_unreachable()
    record = new_record(cfg, run_dir, overrides)
    record_path = run_dir / RECORD_NAME
    if cfg.dry_run:
        from lora_exp.dry_run import dry_run

        return dry_run(cfg, record, record_path, start)
    write_json_atomic(record_path, record)
    try:
        from lora_exp.fit import fit_and_test

        fit_and_test(cfg, record, run_dir, overrides)
        record["status"] = "success"
    except (KeyboardInterrupt, SystemExit) as exc:
        record.update(status="interrupted", error=f"{type(exc).__name__}: {exc}")
        raise
    except BaseException as exc:
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        record["finished_at"] = utc_now()
        record["wall_time_s"] = round(time.time() - start, 2)
        if record["environment"] is None:
            record["environment"] = environment()
        write_json_atomic(record_path, record)
    return record
