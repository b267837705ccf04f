"""Full fine-tuning (the paper's FT rows, Sec. 5.1): every parameter trains.

Trainable parameters, head excluded: the whole backbone, e.g. 125.0M for RoBERTa-base.
"""

from __future__ import annotations

from torch import nn

from lora_exp.methods.base import Method
from lora_exp.methods.registry import register
from lora_exp.models import Family


@register
class FullFineTuning(Method):
    """Update all weights with the task loss; saves the whole model."""

    name = "full_ft"
    table_order = 0

    def apply(self, model: nn.Module, family: Family) -> None:
        for param in model.parameters():
            param.requires_grad = True
