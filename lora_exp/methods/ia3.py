"""(IA)3 (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning", arXiv:2205.05638, Sec. 3.3): learned vectors that rescale inner activations.

In every block, three vectors rescale the keys, the values and the feed-forward network's
intermediate activation:

    softmax(Q (l_k ⊙ K)ᵀ / sqrt(d_k)) (l_v ⊙ V),        h = W_out (l_ff ⊙ γ(W_in x))

i.e. k' = l_k ⊙ (W_k x + b_k), v' = l_v ⊙ (W_v x + b_v): the output of W_k and W_v is scaled
(their biases with it), and l_ff scales the input of the FFN's second matrix. All three start at
ones, so the model starts as the pretrained function exactly. Only the vectors and the task head
train.

Trainable parameters, head excluded, for an encoder or decoder-only model of L blocks:

    |Θ| = L · (d_k + d_v + d_ff)  =  L · (2 d + d_ff)

RoBERTa-large (L = 24, d = 1024, d_ff = 4096): 24 · (1024 + 1024 + 4096) = 147,456;
RoBERTa-base: 12 · (768 + 768 + 3072) = 55,296; GPT-2 medium: 24 · (2 · 1024 + 4096) = 147,456.

GPT-2's keys and values are the middle and last thirds of the fused `c_attn` output: l_k and l_v
scale those parts and the query part keeps an exact 1. Its `mlp.c_proj` (a `Conv1D`, W stored
transposed) gets l_ff on its input, as every other family's FFN output matrix does. DeBERTa-v2
with `share_att_key` (deberta-v2-xxlarge) projects its relative-position embeddings with W_k
too, so there l_k also rescales the position keys of the c2p term (PEFT's vector does the same).

Merging folds each vector into its weight, since l ⊙ (W x + b) = (diag(l) W) x + l ⊙ b and
W (l ⊙ x) = (W diag(l)) x (Sec. 3.3: "l ⊙ W x = (l ⊙ W) x"): the rows of W_k, W_v and their
biases, the columns of W_out. The unmerged weights are kept aside, so `unmerge` restores them bit
for bit (PEFT divides by l again, which it warns "can be inaccurate").

PEFT's `IA3Config` computes the same function on the same modules (tests/test_peft_parity.py),
with two differences of its defaults: for BERT, RoBERTa and DeBERTa-v2 its `output.dense` entry
also matches `attention.output.dense` (W_o gets an input vector too: + L · d), and for GPT-2 its
`c_attn` entry scales q as well (+ L · d). Exported to PEFT's format, our GPT-2 vector is written
with ones on q, which PEFT computes exactly as ours.
"""

from __future__ import annotations

import torch
from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.base import Method, freeze_all_but_head, replace_module
from lora_exp.methods.lora import plan_targets
from lora_exp.methods.lora_layer import weight_dims
from lora_exp.methods.registry import register
from lora_exp.models import Family

SCALED_OUTPUTS = ("k", "v")  # l_k, l_v: the keys and values, W x + b scaled
SCALED_INPUTS = ("ffn_out",)  # l_ff: the FFN's intermediate activation, the input of W_out


class IA3Scaled(nn.Module):
    """A frozen projection with a learned vector on its output (some fused parts) or its input.

    Args:
        base: `nn.Linear` (weight d_out × d_in) or transformers' `Conv1D` (weight d_in × d_out).
        on_input: scale the input features (l_ff) rather than the output features (l_k, l_v).
        parts: for output scaling, the indices of the scaled equal parts of the output
            (GPT-2's `c_attn` = [q; k; v]: (1, 2)).
        num_parts: into how many equal parts the output splits (1 for a plain projection).
    """

    def __init__(
        self,
        base: nn.Module,
        on_input: bool,
        parts: tuple[int, ...] = (0,),
        num_parts: int = 1,
    ):
        super().__init__()
        d_in, d_out = weight_dims(base)
        if on_input and num_parts != 1:
            raise ValueError("an input vector scales a whole projection, not parts of it")
        self.base, self.on_input = base, on_input
        self.fan_in_fan_out = not isinstance(base, nn.Linear)  # Conv1D: W stored as d_in × d_out
        self.parts, self.num_parts = tuple(parts), num_parts
        self.part_size = d_out // num_parts
        size = d_in if on_input else self.part_size * len(self.parts)
        weight = base.weight
        self.ia3_l = nn.Parameter(torch.ones(size, device=weight.device, dtype=weight.dtype))
        self.merged = False
        self._unmerged: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def scale(self) -> torch.Tensor:
        """The vector over all input (or output) features: exact ones on unscaled parts."""
        if self.on_input or self.num_parts == 1:
            return self.ia3_l
        ones = torch.ones(self.part_size, device=self.ia3_l.device, dtype=self.ia3_l.dtype)
        pieces = [ones] * self.num_parts
        for i, part in enumerate(self.parts):
            pieces[part] = self.ia3_l[i * self.part_size : (i + 1) * self.part_size]
        return torch.cat(pieces)  # (d_out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., d_in) -> (..., d_out)
        if self.merged:
            return self.base(x)
        # Scale in the vector's precision and round once to the activation's dtype (bf16 under
        # autocast), as PEFT does: the product of a bf16 activation and an fp32 vector is fp32.
        if self.on_input:
            return self.base((x * self.ia3_l).to(x.dtype))
        h = self.base(x)
        return (h * self.scale()).to(h.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the vector into W (and b, for output scaling); keep the originals for unmerge."""
        if self.merged:
            return
        weight, bias = self.base.weight, self.base.bias
        # In fp32 and rounded once: a frozen W stored in bf16 (frozen_precision.py) then differs
        # from the exact product by one rounding, as the unmerged bf16 matmul would.
        s = self.scale().to(torch.promote_types(weight.dtype, torch.float32))
        # nn.Linear's W is d_out × d_in, Conv1D's d_in × d_out: which axis holds the scaled
        # features depends on both the orientation and the side.
        along_rows = self.on_input == self.fan_in_fan_out
        w_scale = s[:, None] if along_rows else s[None, :]
        self._unmerged = (weight.data, None if bias is None else bias.data)
        weight.data = (weight.data.to(s.dtype) * w_scale).to(weight.dtype)
        if bias is not None and not self.on_input:
            bias.data = (bias.data.to(s.dtype) * s).to(bias.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore W and b bit for bit."""
        if not self.merged:
            return
        weight, bias = self._unmerged
        self.base.weight.data = weight
        if bias is not None:
            self.base.bias.data = bias
        self._unmerged, self.merged = None, False

    def extra_repr(self) -> str:
        side = "input" if self.on_input else f"output parts={self.parts}/{self.num_parts}"
        return f"scales {side}, merged={self.merged}"


def ia3_layers(model: nn.Module) -> dict[str, IA3Scaled]:
    """Every IA3Scaled in `model`, by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, IA3Scaled)}


@register
class IA3(Method):
    """l_k, l_v, l_ff rescale keys, values and the FFN's intermediate activation; merges."""

    name = "ia3"
    can_merge = True

    def check(self, family: Family) -> None:
        missing = [s for s in (*SCALED_OUTPUTS, *SCALED_INPUTS) if s not in family.sites]
        if missing or family.sites["ffn_out"].fused_parts != 1:
            raise UserError(
                f"method ia3 cannot apply to model family '{family.name}': it needs the keys, "
                "values and a plain FFN output matrix (sites k, v, ffn_out); "
                f"the family maps {', '.join(family.sites)}"
            )

    def apply(self, model: nn.Module, family: Family) -> None:
        self.check(family)
        outputs = plan_targets(model, family, list(SCALED_OUTPUTS))  # name -> (parts, num_parts)
        inputs = plan_targets(model, family, list(SCALED_INPUTS))
        freeze_all_but_head(model, family)
        for module_name, (parts, num_parts) in outputs.items():
            base = model.get_submodule(module_name)
            replace_module(model, module_name, IA3Scaled(base, False, parts, num_parts))
        for module_name in inputs:
            base = model.get_submodule(module_name)
            replace_module(model, module_name, IA3Scaled(base, True))

    def merge(self, model: nn.Module) -> None:
        for layer in ia3_layers(model).values():
            layer.merge()

    def unmerge(self, model: nn.Module) -> None:
        for layer in ia3_layers(model).values():
            layer.unmerge()

    def merge_and_unload(self, model: nn.Module) -> None:
        """W <- diag(l) W (or W diag(l)) for good, and each IA3Scaled replaced by its base layer."""
        for module_name, layer in ia3_layers(model).items():
            layer.unmerge()  # from the exact W, whatever state it was left in
            layer.merge()
            replace_module(model, module_name, layer.base)  # the kept W goes with the wrapper

    def peft_adapter(self, model: nn.Module, family: Family):
        """An `IA3Config`: target_modules, feedforward_modules (input-scaled), and each vector
        as `<module>.ia3_l` in PEFT's shape, (d_out, 1) for an output and (1, d_in) for an
        input; a fused projection's vector is written in full, ones on the unscaled parts."""
        layers = ia3_layers(model)
        if not layers:
            raise UserError("the model has no (IA)3 vectors: apply method=ia3 before exporting")
        config = {
            "peft_type": "IA3",
            "target_modules": sorted(layers),
            "feedforward_modules": sorted(n for n, m in layers.items() if m.on_input),
            "fan_in_fan_out": any(m.fan_in_fan_out for m in layers.values()),
            "init_ia3_weights": True,
        }
        tensors = {}
        for name, layer in layers.items():
            vector = layer.scale().detach()
            tensors[f"{name}.ia3_l"] = vector[None, :] if layer.on_input else vector[:, None]
        return config, tensors

    def describe(self) -> str:
        return "ia3 (l_k, l_v, l_ff vectors + head)"
