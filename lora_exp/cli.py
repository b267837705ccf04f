"""Glue between Hydra's entry point and `run_cell.main`: how a run ends -> one line, an exit status.

    success                          0
    bad input (`UserError`)          2  one `error: ...` line, no traceback
    stopped by a signal              128 + N (SIGINT 130, SIGUSR1 138, SIGTERM 143), record
                                     `interrupted`; the same command resumes from last.ckpt
    anything else (a bug, a crash)   1  with its traceback (run.py)

Signals are mapped here, at the outermost layer that knows the run, because every layer below
(Lightning, Hydra) has its own idea of what a stopped run returns (see interrupts.py).
"""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from lora_exp.errors import UserError
from lora_exp.hydra_job import in_multirun
from lora_exp.interrupts import trap_signals
from lora_exp.records import redact


def run_main(cfg: DictConfig) -> None:
    """Run `run_cell.main` (or the job `cfg.job` names); map how it ended to an exit status."""
    logging.getLogger("lora_exp").setLevel(logging.INFO)
    # Hydra has parsed the arguments; loggers such as wandb copy sys.argv into their run metadata,
    # so a secret typed on the command line must not survive there either.
    sys.argv = redact(sys.argv)
    with trap_signals() as trap:
        try:
            if cfg.get("job", "train") == "latency":  # conf/sweep/table1_latency.yaml: a benchmark
                from lora_exp.measure.latency_job import main
            else:
                from lora_exp.run_cell import main

            main(cfg)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            if in_multirun():
                raise  # Hydra marks this cell failed and the rest of the sweep goes on
            sys.exit(err.exit_code)
        except BaseException:
            # Lightning ends a stopped fit with sys.exit(1) or a SystemExit without a code: the
            # signal we remembered, not the exception that arrives, says how the run ended.
            if trap.signum is None:
                raise
            print(
                f"interrupted by {trap.name}: the record says 'interrupted'; run the same "
                "command again to resume from checkpoints/last.ckpt",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(trap.exit_code)
