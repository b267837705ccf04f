"""LoRA as a method (Hu et al. 2021, Sec. 4): where the low-rank updates go and what trains.

Trainable parameters, head excluded (Sec. 5.1):

    |Θ| = Σ over adapted matrices of r · (d_in + d_out)  =  2 · L̂_LoRA · d_model · r

when every adapted matrix is d_model × d_model (q, k, v, o); ffn_in and ffn_out add r · (d + d_ffn)
each.
Examples: RoBERTa-base r=8 on q,v: 12 · 2 · 2 · 768 · 8 = 294,912 (the paper's 0.3M);
GPT-2 medium r=4 on q,v: 393,216 (the paper prints 0.35M, see microsoft/LoRA#172).
The pretrained weights, biases and LayerNorms are frozen; the classification head trains.

A rank-r update of a d_out × d_in matrix needs r <= min(d_in, d_out) (per part of a fused
projection); a larger rank is a UserError. `merge`/`unmerge` fold ΔW in and out exactly (for
evaluation); `merge_and_unload` folds it in for good, leaving the plain base architecture.
"""

from __future__ import annotations

import re

from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.base import Method, freeze_all_but_head, replace_module
from lora_exp.methods.input_cast import SharedInputCast
from lora_exp.methods.lora_layer import LoRALinear, weight_dims
from lora_exp.methods.peft_export import lora_adapter
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


def check_rank(module_name: str, module: nn.Module, rank: int, num_parts: int) -> None:
    """A rank-r update of a d_out × d_in matrix needs r <= min(d_in, d_out).

    Raises:
        UserError: naming the matrix, its shape and the largest rank it allows.
    """
    d_in, d_out = weight_dims(module)
    d_out //= num_parts  # a fused projection: each adapted part is its own matrix
    if rank > min(d_in, d_out):
        raise UserError(
            f"rank={rank} is larger than the adapted matrix allows: {module_name} is "
            f"{d_out} x {d_in}{' per fused part' if num_parts > 1 else ''}, so rank must be "
            f"<= {min(d_in, d_out)}"
        )


@register
class LoRA(Method):
    """Low-rank updates on the chosen weight matrices; merges for inference."""

    name = "lora"
    table_order = 9
    uses_rank = True
    can_merge = True

    def apply(self, model: nn.Module, family: Family) -> None:
        cfg = self.cfg
        rank = int(cfg.rank)
        settings = {"alpha": float(cfg.alpha), "dropout": float(cfg.dropout), "init": str(cfg.init)}
        plan = plan_targets(model, family, list(cfg.targets))
        for module_name, (_, num_parts) in plan.items():
            check_rank(module_name, model.get_submodule(module_name), rank, num_parts)
        freeze_all_but_head(model, family)
        shared_cast = SharedInputCast()  # W_q and W_v read the same hidden states: cast once
        for module_name, (parts, num_parts) in plan.items():
            base = model.get_submodule(module_name)
            layer = LoRALinear(base, rank=rank, parts=parts, num_parts=num_parts, **settings)
            layer.input_cast = shared_cast
            replace_module(model, module_name, layer)

    def merge(self, model: nn.Module) -> None:
        for layer in lora_layers(model):
            layer.merge()

    def unmerge(self, model: nn.Module) -> None:
        for layer in lora_layers(model):
            layer.unmerge()

    def merge_and_unload(self, model: nn.Module) -> None:
        """W0 <- W0 + ΔW for good, and each LoRALinear replaced by its base layer again."""
        for name, module in list(model.named_modules()):
            if isinstance(module, LoRALinear):
                module.unmerge()  # start from the exact W0, whatever state it was left in
                module.merge(keep_original=False)
                replace_module(model, name, module.base)

    def peft_adapter(self, model: nn.Module, family: Family):
        return lora_adapter(model)

    def describe(self) -> str:
        cfg = self.cfg
        return f"lora r={cfg.rank} alpha={cfg.alpha} targets={list(cfg.targets)} init={cfg.init}"
