"""Frozen projection weights stored in bf16 when training under bf16 autocast.

Under `torch.autocast(dtype=bfloat16)` every `nn.Linear` (and transformers' `Conv1D`, whose
`addmm` autocast also lowers) casts its weight and bias to bf16 before the matmul. A trainable
weight is cast once per forward pass (autocast caches casts of leaf tensors that require grad);
a frozen one is cast again at every call, and the fp32 copy stays in memory beside it. Storing a
frozen projection's weight and bias in bf16 once, before training, makes that cast a no-op: the
matmul sees the same bf16 operands bit for bit, so training computes exactly what it computed
before, with one kernel fewer per projection and half the frozen weights' memory.

Only frozen parameters of projections change. LayerNorm and embeddings stay fp32 (autocast runs
LayerNorm in fp32 and an embedding lookup returns its weight's dtype, so casting them would change
the numbers), and every trainable parameter stays fp32 for the optimizer. Full fine-tuning has no
frozen projection: this changes nothing there. PEFT-style methods (LoRA, adapters, BitFit) gain.
"""

from __future__ import annotations

import torch
from torch import nn


def is_projection(module: nn.Module) -> bool:
    """nn.Linear or transformers' Conv1D (GPT-2's transposed linear)."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def store_frozen_projections_in(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Cast the frozen weights and biases of every projection in `model` to `dtype`, in place.

    Returns:
        The number of parameter elements cast.
    """
    cast = 0
    for module in model.modules():
        if not is_projection(module):
            continue
        for param in module.parameters(recurse=False):
            if not param.requires_grad and param.dtype != dtype and param.is_floating_point():
                param.data = param.data.to(dtype)
                cast += param.numel()
    return cast
