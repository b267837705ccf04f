"""Frozen projections stored in bf16 and the fused LoRA forward: exact, not approximate."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lora_exp.frozen_precision import store_frozen_projections_in
from lora_exp.methods.lora_layer import LoRALinear


def test_frozen_bf16_storage_is_exact_under_bf16_autocast():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 4))
    model[0].requires_grad_(False)  # frozen projection: cast
    # model[2] trains (stays fp32); LayerNorm is frozen but not a projection (stays fp32)
    model[1].requires_grad_(False)
    reference = copy.deepcopy(model)
    cast = store_frozen_projections_in(model, torch.bfloat16)
    assert cast == 16 * 32 + 32
    assert model[0].weight.dtype == torch.bfloat16 and model[0].bias.dtype == torch.bfloat16
    assert model[1].weight.dtype == torch.float32 and model[2].weight.dtype == torch.float32
    x = torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = model(x), reference(x)
    assert torch.equal(got, want)  # bit for bit: autocast fed the matmul the same bf16 operands
    got.float().sum().backward()
    assert model[2].weight.grad is not None and model[0].weight.grad is None


def test_frozen_bf16_storage_leaves_trainable_parameters_alone():
    layer = nn.Linear(4, 4)
    assert store_frozen_projections_in(layer) == 0
    assert layer.weight.dtype == torch.float32


def test_lora_forward_matches_the_formula_on_plain_and_fused_projections():
    torch.manual_seed(0)
    for parts, num_parts in [((0,), 1), ((0, 2), 3)]:
        base = nn.Linear(12, 18)
        layer = LoRALinear(base, rank=2, alpha=4.0, parts=parts, num_parts=num_parts)
        nn.init.normal_(layer.lora_B)
        x = torch.randn(3, 5, 12)
        delta = layer.delta_weight()  # (alpha / r) B A, zero blocks for the parts not adapted
        want = x @ (base.weight + delta).T + base.bias
        torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)


def test_lora_merge_of_a_bf16_base_rounds_once():
    torch.manual_seed(0)
    base = nn.Linear(8, 8).requires_grad_(False)
    layer = LoRALinear(base, rank=2, alpha=2.0)
    nn.init.normal_(layer.lora_B)
    store_frozen_projections_in(layer)
    w0 = base.weight.detach().clone()
    exact = (w0.float() + layer.delta_weight().detach()).to(torch.bfloat16)
    layer.merge()
    assert torch.equal(base.weight, exact)
    layer.unmerge()
    assert torch.equal(base.weight, w0)  # bit-exact restore
