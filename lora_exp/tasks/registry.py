"""Loader registry: `task.loader` -> a function `(task_cfg) -> DatasetDict`."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from lora_exp.errors import UserError

LOADERS: dict[str, Callable] = {}


def register_loader(name: str) -> Callable:
    """Decorator registering a loader under `name`."""

    def wrap(fn: Callable) -> Callable:
        if name in LOADERS:
            raise ValueError(f"loader '{name}' registered twice")
        LOADERS[name] = fn
        return fn

    return wrap


def load_splits(task_cfg: DictConfig):
    """Run the task's loader; the result has train, validation and test splits."""
    if task_cfg.loader not in LOADERS:
        raise UserError(
            f"task {task_cfg.name}: unknown loader '{task_cfg.loader}'; known: {', '.join(LOADERS)}"
        )
    import datasets

    # One bar per tokenising `map`, per split, in run.log and the Slurm output: noise, not news.
    datasets.disable_progress_bars()
    splits = LOADERS[task_cfg.loader](task_cfg)
    missing = {"train", "validation", "test"} - set(splits)
    if missing:
        raise ValueError(f"loader {task_cfg.loader} returned no {sorted(missing)} split")
    return splits
