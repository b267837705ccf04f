"""Glue between Hydra's entry point and `train.main`: user errors become one line and exit 2."""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from lora_exp.errors import UserError
from lora_exp.records import redact


def run_main(cfg: DictConfig) -> None:
    """Run `train.main` (or the job `cfg.job` names); a `UserError` becomes one message and exit."""
    logging.getLogger("lora_exp").setLevel(logging.INFO)
    # Hydra has parsed the arguments; loggers such as wandb copy sys.argv into their run metadata,
    # so a secret typed on the command line must not survive there either.
    sys.argv = redact(sys.argv)
    try:
        if cfg.get("job", "train") == "latency":  # conf/sweep/table1_latency.yaml: a benchmark
            from lora_exp.measure.latency_job import main
        else:
            from lora_exp.train import main

        main(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        if in_multirun():
            raise  # Hydra marks this cell failed and the rest of the sweep goes on
        sys.exit(err.exit_code)


def in_multirun() -> bool:
    """True inside one job of a Hydra multirun (sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
