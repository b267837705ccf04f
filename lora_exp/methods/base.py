"""The method interface: what every parameter-efficient (or full) fine-tuning method answers.

A method answers three questions for the rest of the code, and nothing else in the code names a
method (DESIGN.md):

1. Which parameters train? `apply` injects the method's modules and sets `requires_grad`.
2. How to merge? `merge`/`unmerge` fold the method into the backbone weights for inference, when it
   can (`can_merge`), so it adds no latency (the paper's argument against adapters, Sec. 3).
3. What to save? `state_to_save` returns only what trained (method parameters plus the head);
   `load_saved` puts it back into a freshly applied model.

`check` rejects a model family the method cannot apply to, before anything is loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from lora_exp.errors import UserError
from lora_exp.models import Family, block_index, is_head_parameter


class Method(ABC):
    """Base class of a fine-tuning method.

    Class attributes:
        name: the registry key and `conf/method/<name>.yaml` file name.
        uses_rank: whether the top-level `rank` knob means anything to this method.
        can_merge: whether `merge` folds the method into the backbone weights.
        table_order: the method's row in the report's tables, which list the paper's
            baselines before LoRA as its Tables 2-4 do; None for a method the paper does not
            have, which the report sorts after the paper's, by name (report/tables.py).
    """

    name: ClassVar[str]
    uses_rank: ClassVar[bool] = False
    can_merge: ClassVar[bool] = False
    table_order: ClassVar[int | None] = None

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def check(self, family: Family) -> None:  # noqa: B027 (optional hook)
        """Raise UserError if the method cannot apply to `family`; cheap, before any loading."""

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

    def load_saved(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load what `state_to_save` returned into a model this method has been applied to.

        The model must be the same backbone (pretrained weights) with `apply` already called;
        only the saved tensors change. Unmerges first, so a stale merge is never kept.

        Raises:
            UserError: if the state lacks a trainable tensor or holds a name the model lacks.
        """
        self.unmerge(model)
        params = dict(model.named_parameters())
        missing = sorted(n for n, p in params.items() if p.requires_grad and n not in state)
        unknown = sorted(n for n in state if n not in params)
        if missing or unknown:
            raise UserError(
                f"saved state does not fit {self.describe()}: "
                f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                f"unknown {unknown[:3]}{'...' if len(unknown) > 3 else ''}"
            )
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor)

    def peft_adapter(
        self, model: nn.Module, family: Family
    ) -> tuple[dict, dict[str, torch.Tensor]]:
        """How PEFT spells this method, for `peft_export.export_peft` (the head is added there).

        Returns:
            (config, tensors): the PEFT config's fields, `peft_type` included, and the method's
            tensors under PEFT's names relative to the model (`<module>.lora_A.weight`).

        Raises:
            UserError: if PEFT has no equivalent of the method (or of this use of it).
        """
        raise UserError(f"method {self.name} has no PEFT equivalent to export to")

    def merge_and_unload(self, model: nn.Module) -> None:
        """Fold the method into the weights for good and remove its modules.

        Afterwards the model has exactly the base architecture's parameters. Only methods with
        `can_merge` support it.
        """
        raise UserError(f"method {self.name} cannot be merged into the backbone weights")

    def describe(self) -> str:
        """One line for logs."""
        return self.name


def freeze_all_but_head(model: nn.Module, family: Family) -> None:
    """Freeze every parameter except the task head (which every method trains, Sec. 5.1)."""
    for name, param in model.named_parameters():
        param.requires_grad = is_head_parameter(family, name)


def num_blocks(model: nn.Module, family: Family) -> int:
    """Number of transformer blocks, read from the parameter names (works on meta)."""
    indices = {block_index(family, name) for name, _ in model.named_parameters()}
    indices.discard(None)
    return max(indices) + 1 if indices else 0


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule called `name` is."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)
