"""Entry point: `python run.py [group=option ...] [knob=value ...]` (see `python run.py --help`).

Hydra composes the config from conf/; lora_exp.train.main runs it and writes record.json.
A `UserError` (bad input, missing data) prints one message and exits with status 2, no traceback.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def run(cfg: DictConfig) -> None:
    from lora_exp.cli import run_main

    run_main(cfg)


if __name__ == "__main__":
    sys.exit(run())
