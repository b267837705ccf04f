"""Bottleneck adapters, the paper's AdapterH, AdapterL, AdapterP and AdapterD baselines (Sec. 5.1).

Hand-written on purpose: AdapterHub's `adapters` library pins transformers ~=4.57 (this project
runs transformers 5) and PEFT has no bottleneck adapters (huggingface/peft#244). The module is the
one of the paper's own code (microsoft/LoRA `examples/NLU/.../adapter.py`): a residual bottleneck

    h  ->  h + W_up act(W_down LN?(h)),   W_down: d -> r (+ bias r),  W_up: r -> d (+ bias d)

with r the top-level `rank`. W_up and its bias start at zero, so every adapter starts as the
identity and the model computes exactly the pretrained function.

Trainable parameters, head excluded (Sec. 5.1):

    |Θ| = L̂_Adpt · (2 d r + r + d) + 2 d · L̂_LN

L̂_Adpt adapters, L̂_LN trainable LayerNorms. Examples: RoBERTa-large AdapterH r=8, 48 adapters:
835,968 (0.8M, Table 2); AdapterP r=16, 24 adapters: 811,392 (0.8M); GPT-3 AdapterH r=1:
7,078,080 (7.1M, Table 4); GPT-2 large AdapterL r=8: 36 · (20,480 + 1,288) + 36 · 2,560 = 875,808.

Placement (the "sub-layer output" is the projection back to d after its dropout, before the
residual add; in a family with no dropout module there, the projection's output; L = number of
blocks):

* adapter_h (Houlsby et al. 2019): two per block, after the attention output and after the
  feed-forward output; swish, as the paper's code. L̂_Adpt = 2 L. (Houlsby et al. also
  train the LayerNorms; the paper's AdapterH counts and code do not, so neither do we.)
* adapter_p (Pfeiffer et al. 2021): one per block after the feed-forward. On post-LN encoders
  (BERT, RoBERTa, DeBERTa-v2) as the paper's code: the adapter reads the block's LayerNorm(s),
  s = h + x, and the same LayerNorm is applied again: out = LN(s + f(LN(s))). GPT-2 is pre-LN and
  has no such LayerNorm, so there the adapter sits on the feed-forward output. relu. L̂_Adpt = L.
* adapter_l (Lin et al. 2020): one per block after the feed-forward, with its own trainable
  LayerNorm on its input. relu. L̂_Adpt = L̂_LN = L.
* adapter_d (AdapterDrop, Rücklé et al. 2021): adapter_p without adapters in the lowest
  `drop_layers` blocks. L̂_Adpt = L - drop_layers.

Adapters cannot be merged into the weights: they add depth, hence latency (Sec. 3, Table 1).
"""

from __future__ import annotations

import re

from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.base import Method, freeze_all_but_head, num_blocks, replace_module
from lora_exp.methods.lora_layer import weight_dims
from lora_exp.methods.registry import register
from lora_exp.models import Family, block_index

ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class Bottleneck(nn.Module):
    """f(h) = W_up act(W_down LN?(h)); the residual is added by the wrapper. Zero at init.

    Args:
        d: model width.
        r: bottleneck size.
        activation: a key of ACTIVATIONS.
        layer_norm: put a trainable LayerNorm on the input (AdapterL).
        like: a tensor whose device and dtype the new parameters take (meta for dry runs).
    """

    def __init__(self, d: int, r: int, activation: str, layer_norm: bool, like):
        super().__init__()
        kw = {"device": like.device, "dtype": like.dtype}
        self.norm = nn.LayerNorm(d, **kw) if layer_norm else nn.Identity()
        self.down = nn.Linear(d, r, **kw)  # default (kaiming-uniform) init, as nn.Linear
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(r, d, **kw)
        nn.init.zeros_(self.up.weight)  # f = 0: the adapter starts as the identity
        nn.init.zeros_(self.up.bias)

    def forward(self, h):  # (..., d) -> (..., d)
        return self.up(self.act(self.down(self.norm(h))))


class AfterSublayer(nn.Module):
    """Wraps the dropout at a sub-layer's output: h -> h + f(h) (Houlsby; AdapterL)."""

    def __init__(self, inner: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.inner, self.adapter = inner, adapter

    def forward(self, h):
        h = self.inner(h)  # (..., d): the sub-layer output after its dropout
        return h + self.adapter(h)


class AroundPostLN(nn.Module):
    """Wraps a post-LN block's LayerNorm: s -> LN(s + f(LN(s))), s = h + x (Pfeiffer)."""

    def __init__(self, inner: nn.LayerNorm, adapter: Bottleneck):
        super().__init__()
        self.inner, self.adapter = inner, adapter

    def forward(self, s):
        return self.inner(s + self.adapter(self.inner(s)))


def sublayer_output(model: nn.Module, family: Family, site: str) -> list[tuple[str, nn.Module]]:
    """(name, module) of the sub-layer's output projection (`o` or `ffn_out`) in every block."""
    pattern = family.sites[site].pattern
    return [(n, m) for n, m in model.named_modules() if re.search(pattern, n)]


def insertion_point(
    model: nn.Module, family: Family, proj_name: str, post_ln: bool
) -> tuple[str, type]:
    """The module to wrap next to the sub-layer output projection `proj_name`, and how.

    The sub-layer's output is its dropout's (`family.output_dropouts`), or, in a family without
    one, the projection's own output.
    """
    parent_name = proj_name.rpartition(".")[0]
    parent = model.get_submodule(parent_name)
    if post_ln and isinstance(getattr(parent, "LayerNorm", None), nn.LayerNorm):
        return f"{parent_name}.LayerNorm", AroundPostLN
    if not family.output_dropouts:
        return proj_name, AfterSublayer
    for child in family.output_dropouts:
        if hasattr(parent, child):
            return f"{parent_name}.{child}", AfterSublayer
    raise UserError(f"no output dropout next to {proj_name}: adapters cannot be placed here")


class BottleneckAdapters(Method):
    """Shared machinery; subclasses set where adapters go (class attributes below)."""

    uses_rank = True
    sites: tuple[str, ...] = ("ffn_out",)  # after which sub-layers
    default_activation = "relu"
    layer_norm = False  # AdapterL's extra trainable LayerNorm
    post_ln = False  # Pfeiffer: read the block's LayerNorm on post-LN encoders

    def __init__(self, cfg):
        super().__init__(cfg)
        self.rank = int(cfg.rank)
        self.activation = str(cfg.get("activation", self.default_activation))
        if self.activation not in ACTIVATIONS:
            raise UserError(
                f"method.activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        self.drop_layers = self._drop_layers(cfg)

    def _drop_layers(self, cfg) -> int:
        return 0

    def apply(self, model: nn.Module, family: Family) -> None:
        total = num_blocks(model, family)
        if self.drop_layers >= total:
            raise UserError(
                f"method.drop_layers={self.drop_layers} removes adapters from all {total} blocks "
                f"of this model; it must be at most {total - 1}"
            )
        freeze_all_but_head(model, family)
        for site in self.sites:
            for proj_name, proj in sublayer_output(model, family, site):
                index = block_index(family, proj_name + ".")
                if index is not None and index < self.drop_layers:
                    continue
                _, d = weight_dims(proj)  # the projection's output width: d_model
                adapter = Bottleneck(d, self.rank, self.activation, self.layer_norm, proj.weight)
                target, wrap = insertion_point(model, family, proj_name, self.post_ln)
                replace_module(model, target, wrap(model.get_submodule(target), adapter))
        for module in model.modules():
            if isinstance(module, Bottleneck):
                module.requires_grad_(True)

    def describe(self) -> str:
        drop = f" drop_layers={self.drop_layers}" if self.drop_layers else ""
        return f"{self.name} r={self.rank} act={self.activation}{drop}"


@register
class AdapterH(BottleneckAdapters):
    """Houlsby: adapters after the attention and the feed-forward sub-layers."""

    name = "adapter_h"
    table_order = 7
    sites = ("o", "ffn_out")
    default_activation = "swish"


@register
class AdapterP(BottleneckAdapters):
    """Pfeiffer: one adapter per block, after the feed-forward, through the block's LayerNorm."""

    name = "adapter_p"
    table_order = 8
    post_ln = True


@register
class AdapterL(BottleneckAdapters):
    """Lin et al.: one adapter per block after the feed-forward, with its own LayerNorm."""

    name = "adapter_l"
    table_order = 6
    layer_norm = True


@register
class AdapterD(AdapterP):
    """AdapterDrop: Pfeiffer adapters, none in the lowest `drop_layers` blocks."""

    name = "adapter_d"
    table_order = 5

    def _drop_layers(self, cfg) -> int:
        drop = cfg.get("drop_layers", 0)
        if isinstance(drop, bool) or not isinstance(drop, int) or drop < 0:
            raise UserError(f"method.drop_layers must be an integer >= 0, got {drop!r}")
        return drop
