"""LoRA as a method (Hu et al. 2021, Sec. 4): where the low-rank updates go and what trains.

Trainable parameters, head excluded (Sec. 5.1):

    |Θ| = Σ over adapted matrices of r · (d_in + d_out)  =  2 · L̂_LoRA · d_model · r

when every adapted matrix is d_model × d_model (q, k, v, o); ffn_in and ffn_out add r · (d + d_ffn)
each.
Examples: RoBERTa-base r=8 on q,v: 12 · 2 · 2 · 768 · 8 = 294,912 (the paper's 0.3M);
GPT-2 medium r=4 on q,v: 393,216 (the paper prints 0.35M, see microsoft/LoRA#172).
The pretrained weights, biases and LayerNorms are frozen; the classification head trains.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.base import Method, freeze_all_but_head
from lora_exp.methods.lora_layer import LoRALinear
from lora_exp.methods.registry import register
from lora_exp.models import Family


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    """Every LoRALinear in `model`."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def plan_targets(model: nn.Module, family: Family, targets: list[str]) -> dict[str, tuple]:
    """Map each module to adapt to (parts, num_parts), from the logical target names.

    Raises:
        UserError: if a target is not known to the family or matches no module of the model.
    """
    plan: dict[str, tuple[set[int], int]] = {}
    names = [name for name, _ in model.named_modules()]
    for target in targets:
        if target not in family.sites:
            raise UserError(
                f"target '{target}' cannot be mapped in model family '{family.name}'; "
                f"it maps: {', '.join(family.sites)}"
            )
        site = family.sites[target]
        matched = [n for n in names if re.search(site.pattern, n)]
        if not matched:
            raise UserError(f"target '{target}' matches no module (pattern {site.pattern})")
        for name in matched:
            parts, _ = plan.setdefault(name, (set(), site.fused_parts))
            parts.add(site.fused_index or 0)
    return {name: (tuple(sorted(parts)), n) for name, (parts, n) in plan.items()}


@register
class LoRA(Method):
    """Low-rank updates on the chosen weight matrices; merges for inference."""

    name = "lora"
    uses_rank = True
    can_merge = True

    def apply(self, model: nn.Module, family: Family) -> None:
        cfg = self.cfg
        freeze_all_but_head(model, family)
        for module_name, (parts, num_parts) in plan_targets(
            model, family, list(cfg.targets)
        ).items():
            parent_name, _, child = module_name.rpartition(".")
            parent = model.get_submodule(parent_name)
            layer = LoRALinear(
                getattr(parent, child),
                rank=int(cfg.rank),
                alpha=float(cfg.alpha),
                dropout=float(cfg.dropout),
                init=str(cfg.init),
                parts=parts,
                num_parts=num_parts,
            )
            setattr(parent, child, layer)

    def merge(self, model: nn.Module) -> None:
        for layer in lora_layers(model):
            layer.merge()

    def unmerge(self, model: nn.Module) -> None:
        for layer in lora_layers(model):
            layer.unmerge()

    def state_to_save(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Only A, B and the head: 1.2 MB for RoBERTa-base r=8 instead of 500 MB."""
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def describe(self) -> str:
        cfg = self.cfg
        return f"lora r={cfg.rank} alpha={cfg.alpha} targets={list(cfg.targets)} init={cfg.init}"
