"""The device layout against the batch size and the launcher, checked before torch is imported.

`batch_size` is the global batch (distributed.py): it must split evenly over the
`trainer.devices x trainer.num_nodes` processes. A Hydra multirun with an in-process launcher cannot
start the extra processes of a multi-device run (Lightning's subprocess launcher would re-run the
whole sweep in each child), so such a sweep is refused with the way out (launcher=slurm).
"""

from __future__ import annotations

from omegaconf import DictConfig

from lora_exp.distributed import (
    per_device_batch,
    processes_created_externally,
    strategy_name,
    world_size,
)
from lora_exp.errors import UserError


def check_layout(cfg: DictConfig, multirun: bool = False) -> None:
    """Validate the device layout against the batch size and the launcher (no torch import).

    Args:
        cfg: the composed config.
        multirun: whether this job is one cell of a Hydra sweep.
    """
    trainer = cfg.trainer
    strategy_name(trainer)
    world = world_size(trainer)
    per_device_batch(int(cfg.batch_size), world)
    if world > 1 and multirun and not processes_created_externally():
        raise UserError(
            f"{world} processes per run (trainer.devices x trainer.num_nodes) inside a sweep need "
            "a launcher that starts one task per device: use launcher=slurm, or run the cells "
            "one at a time without -m"
        )
