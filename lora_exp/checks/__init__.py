"""Every check made before a run or a sweep does real work, in one package, in the order they run.

Each raises `lora_exp.errors.UserError` with one message naming the bad value and the way out, so
bad input ends with exit 2 in about a second instead of a traceback after minutes of loading.

Before a sweep is submitted to SLURM (a Hydra callback, conf/launcher/slurm.yaml):
  slurm.py    the tools, the controller, the launcher settings, the partition, `sbatch --test-only`

Before a run imports torch (`before_loading`, called by run_cell.main):
  config.py   the composed config: types and ranges, method and task choices, targets
  layout.py   the device layout against the global batch and the launcher
              and here: every adapted weight type exists in the model family

Before the run directory is locked (run_cell.main):
  inputs.py   the task's data source is reachable and complete, the init checkpoint exists

After the lock, before a byte of the model is allocated (run_cell.main):
  memory.py   parameters, gradients and optimizer state fit the memory available now

Checks that need the built model (a method on a backbone without the weights it needs, e.g.
BitFit on a bias-free Llama) are made where the method is applied: only there is the answer known.
"""

from __future__ import annotations

from omegaconf import DictConfig

from lora_exp.checks.config import validate, validate_targets
from lora_exp.checks.layout import check_layout
from lora_exp.errors import UserError


def before_loading(cfg: DictConfig, multirun: bool) -> None:
    """The checks that need only the config, the model family and the method registry (no torch).

    Args:
        cfg: the composed config.
        multirun: whether this job is one cell of a Hydra sweep (see layout.py).
    """
    from lora_exp.models import get_family

    validate(cfg)
    check_layout(cfg, multirun=multirun)
    family = get_family(cfg.model.family)
    for target in validate_targets(cfg.targets):
        if target not in family.sites:
            raise UserError(f"target '{target}' cannot be mapped in model family '{family.name}'")
