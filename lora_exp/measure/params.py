"""Parameter counting, the paper's way and the honest way.

The paper's "#Trainable Parameters" excludes the task head (Sec. 5.1; confirmed by the first author
in microsoft/LoRA#16): RoBERTa-base LoRA is "0.3M" although its head adds 0.6M more. We report
both, under the metric names of DESIGN.md:

    params/trainable             trainable, head excluded (the paper's column)
    params/head                  trainable parameters of the task head
    params/trainable_with_head   everything the optimizer updates
    params/total                 every parameter of the model, the method's included
"""

from __future__ import annotations

from torch import nn

from lora_exp.models import Family, is_head_parameter


def count_parameters(model: nn.Module, family: Family) -> dict[str, int]:
    """Count parameters by bucket (works on the meta device: only shapes are read)."""
    total = trainable = head = 0
    for name, param in model.named_parameters():
        n = param.numel()
        total += n
        if param.requires_grad:
            trainable += n
            if is_head_parameter(family, name):
                head += n
    return {
        "params/trainable": trainable - head,
        "params/head": head,
        "params/trainable_with_head": trainable,
        "params/total": total,
    }


def format_count(n: int) -> str:
    """12,345,678 -> '12.35M' (the paper's style) ; small counts stay exact."""
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 10_000:
        return f"{n / 1e3:.1f}K"
    return str(n)
