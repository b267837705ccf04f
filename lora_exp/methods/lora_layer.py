"""The LoRA layer (Hu et al. 2021, Sec. 4.1), for plain and fused projections.

For a frozen pretrained weight W0 ∈ R^{d_out × d_in} the forward pass becomes

    h = W0 x + (alpha / r) · B A x,    A ∈ R^{r × d_in},  B ∈ R^{d_out × r}

with B = 0 at initialisation, so training starts from the pretrained function exactly. A is
kaiming-uniform (a = sqrt(5)) as in the reference code (loralib `Linear.reset_parameters`) or
Gaussian N(0, 1/r²) as the paper's text says ("random Gaussian"; std 1/r as PEFT's `gaussian`).

Fused projections (GPT-2's `c_attn`, which computes [q; k; v] in one matmul) get one (A, B) pair per
adapted part, like loralib's `MergedLinear(enable_lora=[True, False, True])`: an update of q and v
only, not one rank-r update over all of q, k and v (which is what PEFT's default does).

Merging replaces W0 by W0 + (alpha / r) B A; the unmerged W0 tensor is kept aside so that `unmerge`
restores it bit for bit (subtracting the product again would drift in floating point).

Training runs through `LoRAProjection` (lora_function.py), the formula with its backward written
out (fewer kernels and passes over activations than autograd's generic path), fed one autocast
copy of the input shared by the layers that read it (input_cast.py). `forward_autograd` is the
same formula in plain autograd: the fallback when the base layer trains too, and the tests'
reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lora_exp.methods.input_cast import SharedInputCast
from lora_exp.methods.lora_function import LoRAProjection, block_b

INITS = ("kaiming", "gaussian")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a projection computes in: autocast's when it is on (and x is a float autocast
    lowers), else x's own."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.is_floating_point() and x.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return x.dtype


def weight_dims(base: nn.Module) -> tuple[int, int]:
    """(d_in, d_out) of an `nn.Linear` or a transformers `Conv1D` (which stores W transposed)."""
    rows, cols = base.weight.shape
    return (cols, rows) if isinstance(base, nn.Linear) else (rows, cols)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a low-rank update on some of its output parts.

    Args:
        base: `nn.Linear` (weight d_out × d_in) or transformers' `Conv1D` (weight d_in × d_out).
        rank: r ≥ 1.
        alpha: scaling numerator; the update is scaled by alpha / rank.
        dropout: dropout probability on the input of the low-rank path.
        init: "kaiming" or "gaussian" for A (B is always zero).
        parts: indices of the adapted parts of the output, e.g. (0, 2) for q and v of a fused qkv.
        num_parts: into how many equal parts the output splits (1 for a plain projection).
    """

    def __init__(
        self,
        base: nn.Module,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        init: str = "kaiming",
        parts: tuple[int, ...] = (0,),
        num_parts: int = 1,
    ):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"LoRA init must be one of {INITS}, got '{init}'")
        self.base = base
        # Conv1D stores its weight transposed (d_in × d_out), the "fan_in_fan_out" case of loralib.
        self.fan_in_fan_out = not isinstance(base, nn.Linear)
        d_in, d_out = weight_dims(base)
        if d_out % num_parts:
            raise ValueError(f"output size {d_out} does not split into {num_parts} parts")
        self.in_features, self.out_features = d_in, d_out
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.parts, self.num_parts = tuple(parts), num_parts
        self.part_size = d_out // num_parts
        device, dtype = base.weight.device, base.weight.dtype
        p = len(self.parts)
        self.lora_A = nn.Parameter(torch.empty(p * rank, d_in, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(p * self.part_size, rank, device=device, dtype=dtype)
        )
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Set by the LoRA method to one cast shared by all layers of a model (input_cast.py).
        self.input_cast: SharedInputCast | None = None
        self.merged = False
        self._unmerged_weight: torch.Tensor | None = None
        if device.type != "meta":
            self.reset_lora_parameters(init)

    def reset_lora_parameters(self, init: str) -> None:
        """A random, B zero: the layer starts as exactly the base layer."""
        if init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        else:
            nn.init.normal_(self.lora_A, std=1.0 / self.rank)
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (alpha / r) B̂ A in nn.Linear orientation, shape (d_out, d_in).

        B̂ is the block-structured B of `lora_function.block_b` (B itself for a plain projection),
        so for a fused projection the unadapted parts get exact zero rows.
        """
        b_hat = block_b(self.lora_B, self.parts, self.num_parts)
        return (b_hat @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        if self.base.weight.requires_grad or (
            self.base.bias is not None and self.base.bias.requires_grad
        ):
            return self.forward_autograd(x)  # LoRAProjection's backward assumes W0, b frozen
        dtype = compute_dtype(x)
        if self.input_cast is not None and not torch.compiler.is_compiling():
            x_cast = self.input_cast(x, dtype)
        else:
            x_cast = x.to(dtype)
        # Without dropout the low-rank path reads x itself (LoRAProjection then fuses the two
        # input gradients); with it, dropout acts before the cast, as under plain autocast.
        no_dropout = isinstance(self.lora_dropout, nn.Identity)
        x_lora = None if no_dropout else self.lora_dropout(x).to(dtype)
        weight, bias = self.base.weight, self.base.bias
        return LoRAProjection.apply(
            x_cast,
            x_lora,
            weight.to(dtype),  # no-op for W0 stored in bf16 (frozen_precision.py)
            None if bias is None else bias.to(dtype),
            self.lora_A.to(dtype),
            self.lora_B.to(dtype),
            self.scaling,
            self.parts,
            self.num_parts,
            self.fan_in_fan_out,
        )

    def forward_autograd(self, x: torch.Tensor) -> torch.Tensor:
        """The formula with plain autograd: h = W0 x + b + s · B̂ A dropout(x).

        Used when the base layer trains too, and by the tests as the reference.
        """
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B_hat())
        return self.base(x) + update * self.scaling

    def lora_B_hat(self) -> torch.Tensor:
        return block_b(self.lora_B, self.parts, self.num_parts)

    @torch.no_grad()
    def merge(self, keep_original: bool = True) -> None:
        """W0 <- W0 + ΔW. With keep_original, W0 is kept so `unmerge` is exact."""
        if self.merged:
            return
        weight = self.base.weight.data
        delta = self.delta_weight().to(torch.promote_types(weight.dtype, torch.float32))
        if self.fan_in_fan_out:
            delta = delta.T
        # Sum in fp32 and round once: a W0 stored in bf16 (frozen_precision.py) then differs from
        # the exact W0 + ΔW by one rounding, as the unmerged bf16 matmul would.
        merged = (weight.to(delta.dtype) + delta).to(weight.dtype)
        if keep_original:
            self._unmerged_weight = weight
        self.base.weight.data = merged
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore W0 exactly (bit for bit when merged with keep_original)."""
        if not self.merged:
            return
        if self._unmerged_weight is not None:
            self.base.weight.data = self._unmerged_weight
            self._unmerged_weight = None
        else:
            delta = self.delta_weight().to(self.base.weight.dtype)
            self.base.weight.data -= delta.T if self.fan_in_fan_out else delta
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, alpha={self.alpha}, parts={self.parts}/{self.num_parts}, "
            f"merged={self.merged}"
        )
