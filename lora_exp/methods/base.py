"""The method interface: what every parameter-efficient (or full) fine-tuning method answers.

A method answers three questions for the rest of the code, and nothing else in the code names a
method (DESIGN.md):

1. Which parameters train? `apply` injects the method's modules and sets `requires_grad`.
2. How to merge? `merge`/`unmerge` fold the method into the backbone weights for inference, when it
   can (`can_merge`), so it adds no latency (the paper's argument against adapters, Sec. 3).
3. What to save? `state_to_save` returns only what trained (method parameters plus the head).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from lora_exp.models import Family, is_head_parameter


class Method(ABC):
    """Base class of a fine-tuning method.

    Class attributes:
        name: the registry key and `conf/method/<name>.yaml` file name.
        uses_rank: whether the top-level `rank` knob means anything to this method.
        can_merge: whether `merge` folds the method into the backbone weights.
    """

    name: ClassVar[str]
    uses_rank: ClassVar[bool] = False
    can_merge: ClassVar[bool] = False

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    @abstractmethod
    def apply(self, model: nn.Module, family: Family) -> None:
        """Inject the method's modules into `model` and set `requires_grad`; the head trains."""

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters the optimizer updates."""
        return [p for p in model.parameters() if p.requires_grad]

    def merge(self, model: nn.Module) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Fold the method into the backbone weights (no-op for methods that cannot merge)."""

    def unmerge(self, model: nn.Module) -> None:  # noqa: B027
        """Undo `merge` exactly."""

    def state_to_save(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint of this method needs: everything that trained."""
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def describe(self) -> str:
        """One line for logs."""
        return self.name


def freeze_all_but_head(model: nn.Module, family: Family) -> None:
    """Freeze every parameter except the task head (which every method trains, Sec. 5.1)."""
    for name, param in model.named_parameters():
        param.requires_grad = is_head_parameter(family, name)
