"""The variants of the latency benchmark (Table 1): one model per variant, from one base model.

Every variant is a copy of the same random-initialised base model with a method applied through
the registry, so the variants differ only in what the method adds:

* base: the stock model (a copy of it, as every variant is).
* lora_merged / lora_unmerged: LoRA r=4, alpha=32 on W_q, W_v (the paper's GPT-2 setting,
  Table 11) with B random; merged = `merge_and_unload` (the base architecture again).
* adapter_l / adapter_h: bottleneck r from Table 1's |Θ| (`adapter_rank`) or a fixed r.
* prefix_layer and any other registered method: its conf/method defaults.
* peft_unmerged: PEFT's LoRA with the same r, alpha and modules.
* base_copy: a second copy of the stock model, allocated after the others: the control for
  what placement in memory alone does to a model's time (merged LoRA must be judged against it:
  an identical model is not always equally fast to within a percent).

Every variant's parameters are frozen, the base model's too: inference needs no gradient, and a
model whose weights require grad can take other kernels than a frozen one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lora_exp.measure import bench

LORA = {"rank": 4, "alpha": 32, "targets": ["q", "v"]}  # Table 11 (GPT-2)


def adapter_rank(variant: str, d_model: int, layers: int, budget: int) -> int:
    """The bottleneck r whose |Θ| comes closest to `budget` (ties: the smaller r).

    |Θ| = L̂_Adpt (2 d r + r + d) + 2 d L̂_LN (Sec. 5.1); AdapterH has 2 adapters per block and no
    LayerNorm, AdapterL one adapter and one LayerNorm per block. GPT-2 medium (d=1024, 24 blocks):
    0.5M -> AdapterL r=9 (516,312), AdapterH r=5 (540,912); 11.09M -> AdapterL r=224
    (11,089,152, Table 3's figure exactly), AdapterH r=112 (11,064,576).
    """
    adapters, norms = {"adapter_h": (2 * layers, 0), "adapter_l": (layers, layers)}[variant]

    def count(r: int) -> int:
        return adapters * (2 * d_model * r + r + d_model) + 2 * d_model * norms

    best = max(1, round((budget - count(0)) / (adapters * (2 * d_model + 1))))
    return min(
        (r for r in (best - 1, best, best + 1) if r >= 1), key=lambda r: abs(count(r) - budget)
    )


def model_dims(model: nn.Module) -> tuple[int, int]:
    """(d_model, number of blocks) from the model config."""
    config = model.config
    return config.hidden_size, config.num_hidden_layers


def _variant(name: str, base: nn.Module, family, rank: int, seed: int, cache: dict):
    """One variant's model (the LoRA model is shared by the merged and unmerged variants)."""
    from lora_exp.methods import build_method
    from lora_exp.methods.lora import lora_layers

    if name in ("base", "base_copy"):
        # a copy, like every other variant: the model that the copies were made from measured
        # ~4% slower in eager mode than an identical copy of it (H200, batch 1 and 16)
        return copy.deepcopy(base), 0
    if name in ("lora_merged", "lora_unmerged"):
        if "lora" not in cache:
            model = copy.deepcopy(base)
            method = build_method(bench.method_config("lora", **LORA))
            method.apply(model, family)
            torch.manual_seed(seed)
            for layer in lora_layers(model):  # B != 0: merging really changes W
                nn.init.normal_(layer.lora_B, std=0.02)
            cache["lora"] = (model, method)
        model, method = cache["lora"]
        if name == "lora_merged":
            model = copy.deepcopy(model)
            method.merge_and_unload(model)
        return model, LORA["rank"]
    if name == "peft_unmerged":
        lora = (LORA["rank"], LORA["alpha"], LORA["targets"])
        return bench.peft_lora(copy.deepcopy(base), family, *lora, None), LORA["rank"]
    model = copy.deepcopy(base)
    settings = {"rank": rank} if name.startswith("adapter") else {}
    build_method(bench.method_config(name, **settings)).apply(model, family)
    return model, rank if name.startswith("adapter") else 0


def build_variants(base: nn.Module, family, names, ranks: dict, seed: int) -> tuple[dict, list]:
    """name -> (model in eval mode, info), and notes on variants that were left out.

    A method not registered yet, or one that fails to apply, is skipped with a note.
    """
    from lora_exp.measure.params import count_parameters

    models, notes, cache = {}, [], {}
    base.requires_grad_(False)
    for name in names:
        method_name = {"lora_merged": "lora", "lora_unmerged": "lora"}.get(name, name)
        if name not in ("base", "base_copy", "peft_unmerged") and not bench.method_available(
            method_name
        ):
            notes.append(f"{name}: method '{method_name}' is not registered yet, skipped")
            continue
        try:
            model, rank = _variant(name, base, family, ranks.get(name, 0), seed, cache)
        except Exception as exc:  # the other variants still run
            notes.append(f"{name}: could not be built, skipped ({type(exc).__name__}: {exc})")
            continue
        counts = count_parameters(model, family)
        info = {"rank": rank, "params": counts["params/trainable"], "total": counts["params/total"]}
        models[name] = (model.eval(), info)
    return models, notes
