"""Checks that a run can get its inputs, made before anything heavy is imported.

Importing Lightning alone takes about five seconds, and an unreachable hub can wait much longer on
network time-outs. `preflight(cfg)` runs in milliseconds from the config alone, so a run without
its data, or without the checkpoint it must start from, fails at once with one message:

* the task's data source (`task.loader` -> a check registered with `register_check`), e.g. GLUE:
  local files complete and well-formed, or the hub reachable;
* `task.init_from`: the run it starts from exists (tasks/init_from.py), or the message gives the
  command that produces it.

`run_cell.main` calls it after validating the config and before writing the run record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

CHECKS: dict[str, Callable[[DictConfig], None]] = {}


def register_check(loader: str) -> Callable:
    """Decorator registering the cheap source check of a task loader."""

    def wrap(fn: Callable) -> Callable:
        CHECKS[loader] = fn
        return fn

    return wrap


def preflight(cfg: DictConfig) -> None:
    """Raise `UserError` now if the run could not get its data or its initial checkpoint."""
    import lora_exp.tasks  # noqa: F401  (registers the loaders and their checks)

    check = CHECKS.get(cfg.task.loader)
    if check is not None:
        check(cfg.task)
    if cfg.task.get("init_from"):
        from lora_exp.tasks.init_from import find_init_checkpoint

        find_init_checkpoint(cfg, Path(str(cfg.records_root)))
