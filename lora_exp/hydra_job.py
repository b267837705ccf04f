"""What Hydra knows about the job now running: is it one cell of a sweep, and where does it write.

Both `cli.run_main` (a bad-input error in a sweep cell is re-raised so Hydra marks the cell failed
and the sweep goes on) and `train` (the run directory, and `checks/layout.py`, which refuses
in-process ranks inside a sweep) ask these questions. They live here, below both, so the entry
point calls down into `train` and nothing calls back up into the entry point.

Hydra is imported inside the functions: `train` is also called without Hydra (tests, `cfg.run_dir`)
and the import is only paid by the caller that asks.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lora_exp.errors import UserError


def in_multirun() -> bool:
    """True inside one job of a Hydra multirun (sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_dir_and_overrides(cfg: DictConfig) -> tuple[Path, list[str]]:
    """Hydra's output directory and the command-line overrides (or `cfg.run_dir` outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        return Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    if cfg.get("run_dir"):
        return Path(cfg.run_dir), []
    raise UserError("no run directory: run through run.py, or set run_dir in the config")
