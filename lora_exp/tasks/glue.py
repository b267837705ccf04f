"""GLUE (Wang et al. 2019) as the paper runs it (Sec. 5.1, Table 2).

Data come from the hub (`datasets.load_dataset("nyu-mll/glue", <task>)`) or, with
`task.data_dir=DIR`, from local per-split files `DIR/{train,validation}.{parquet,jsonl}` exported
from that hub dataset (same columns). GLUE test labels are hidden, so, like the paper, we report
the dev set: `test` is the dev split again (the record says so in `task.test_is_validation`).

Offline, a hub lookup can hang on network time-outs; we check reachability first (one TCP connect
with a 2 s time-out) and fail at once with a message that says where to put the files.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from omegaconf import DictConfig

from lora_exp.errors import UserError
from lora_exp.tasks.registry import register_loader

HUB_HOST = "huggingface.co"


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """False when offline mode is set or the hub does not answer within `timeout_s`."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _local_split(data_dir: Path, split: str) -> Path | None:
    for suffix in (".parquet", ".jsonl", ".json"):
        path = data_dir / f"{split}{suffix}"
        if path.exists():
            return path
    return None


def _how_to_supply(task_cfg: DictConfig) -> str:
    return (
        f"task={task_cfg.name} needs the GLUE data and the hub ({HUB_HOST}) is not reachable. "
        f"Export the hub dataset '{task_cfg.hub.path}' config '{task_cfg.hub.name}' on a machine "
        f"with network (datasets' `ds[split].to_parquet(...)`), copy the files as "
        f"DIR/train.parquet and DIR/validation.parquet (or .jsonl), and pass task.data_dir=DIR."
    )


@register_loader("glue")
def load_glue(task_cfg: DictConfig):
    """The task's train and dev splits, from `task.data_dir` or the hub."""
    import datasets

    splits = {"train": task_cfg.hub.train_split, "validation": task_cfg.hub.validation_split}
    if task_cfg.get("data_dir"):
        data_dir = Path(task_cfg.data_dir)
        files = {ours: _local_split(data_dir, theirs) for ours, theirs in splits.items()}
        missing = [f"{theirs}.parquet" for ours, theirs in splits.items() if files[ours] is None]
        if missing:
            raise UserError(f"task.data_dir={data_dir} lacks {', '.join(missing)}")
        loaded = {
            ours: datasets.load_dataset(
                "parquet" if path.suffix == ".parquet" else "json",
                data_files=str(path),
                split="train",
            )
            for ours, path in files.items()
        }
    else:
        if not hub_reachable():
            raise UserError(_how_to_supply(task_cfg))
        loaded = {
            ours: datasets.load_dataset(task_cfg.hub.path, task_cfg.hub.name, split=theirs)
            for ours, theirs in splits.items()
        }
    return datasets.DatasetDict(
        train=loaded["train"], validation=loaded["validation"], test=loaded["validation"]
    )
