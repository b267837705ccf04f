"""Glue between Hydra's entry point and `train.main`: user errors become one line and exit 2."""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from lora_exp.errors import UserError


def run_main(cfg: DictConfig) -> None:
    """Run `train.main`; print a `UserError` as one message and exit with its code."""
    logging.getLogger("lora_exp").setLevel(logging.INFO)
    try:
        from lora_exp.train import main

        main(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
