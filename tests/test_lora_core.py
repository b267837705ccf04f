"""LoRA's defining properties on tiny models of every family (Hu et al. 2021, Sec. 4.1).

* B = 0 at initialisation: outputs equal the base model's exactly.
* Trainable parameters (head excluded) equal the closed form Σ r · (d_in + d_out).
* Merge: outputs of W0 + (alpha/r) B A equal the unmerged forward; unmerge restores W0 bit for bit.
* GPT-2's fused c_attn with targets [q, v] changes only the q and v thirds of its output.
"""

from __future__ import annotations

import pytest
import torch

from lora_exp.measure.params import count_parameters
from lora_exp.methods import build_method
from lora_exp.methods.lora import lora_layers
from lora_exp.models import get_family
from tests.conftest import compose
from tests.family_cases import TINY_MODELS as FAMILIES
from tests.family_cases import Arch, lora_count


def _inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (3, 11), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _apply_lora(model, cfg, targets=("q", "v"), rank=4, alpha=8):
    method_cfg = compose(
        [
            f"model={cfg.model.name}",
            f"rank={rank}",
            f"alpha={alpha}",
            f"targets=[{','.join(targets)}]",
        ]
    ).method
    method = build_method(method_cfg)
    method.apply(model, get_family(cfg.model.family))
    return method


@pytest.mark.parametrize("name", FAMILIES)
def test_b_zero_leaves_outputs_unchanged(tiny_model, name):
    model, cfg = tiny_model(name)
    batch = _inputs()
    with torch.no_grad():
        before = model(**batch).logits
    _apply_lora(model, cfg, targets=("q", "k", "v", "o", "ffn_in", "ffn_out"))
    with torch.no_grad():
        after = model(**batch).logits
    assert torch.equal(before, after)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize(
    "targets", [("q", "v"), ("q",), ("q", "k", "v", "o"), ("ffn_in", "ffn_out")]
)
def test_trainable_count_equals_closed_form(tiny_model, name, targets):
    model, cfg = tiny_model(name)
    rank = 4
    _apply_lora(model, cfg, targets=targets, rank=rank)
    expected = lora_count(Arch.of(cfg), rank, targets)  # r (d_in + d_out) per adapted matrix
    counts = count_parameters(model, get_family(cfg.model.family))
    assert counts["params/trainable"] == expected
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    family = get_family(cfg.model.family)
    assert all("lora_" in n or n.startswith(family.head_prefixes) for n in trainable)


@pytest.mark.parametrize("name", FAMILIES)
def test_merge_matches_unmerged_and_unmerge_is_exact(tiny_model, name):
    model, cfg = tiny_model(name)
    method = _apply_lora(model, cfg, targets=("q", "k", "v", "o"))
    torch.manual_seed(3)
    for layer in lora_layers(model):
        torch.nn.init.normal_(layer.lora_B, std=0.5)  # a trained-looking, non-zero update
    originals = {n: p.detach().clone() for n, p in model.named_parameters() if "base.weight" in n}
    batch = _inputs()
    with torch.no_grad():
        unmerged = model(**batch).logits
        method.merge(model)
        merged = model(**batch).logits
        method.unmerge(model)
        again = model(**batch).logits
    assert (merged - unmerged).abs().max().item() <= 1e-5
    assert torch.equal(again, unmerged)
    for n, p in model.named_parameters():
        if n in originals:
            assert torch.equal(p, originals[n]), n


def test_gpt2_qv_update_touches_only_q_and_v(tiny_model):
    model, cfg = tiny_model("tiny-gpt2")
    _apply_lora(model, cfg, targets=("q", "v"), rank=2)
    layer = lora_layers(model)[0]
    d = layer.in_features
    assert layer.parts == (0, 2) and layer.out_features == 3 * d
    torch.manual_seed(0)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(5, d)
    with torch.no_grad():
        delta_out = layer(x) - layer.base(x)  # (5, 3d)
        # Direct computation: q and v each get their own (alpha/r) B_i A_i x; k gets nothing.
        a, b = layer.lora_A.view(2, 2, d), layer.lora_B.view(2, d, 2)
        q = x @ a[0].T @ b[0].T * layer.scaling
        v = x @ a[1].T @ b[1].T * layer.scaling
    assert torch.allclose(delta_out[:, :d], q, atol=1e-6)
    assert torch.count_nonzero(delta_out[:, d : 2 * d]) == 0
    assert torch.allclose(delta_out[:, 2 * d :], v, atol=1e-6)
    # Same count as one rank-r update per adapted matrix: r (d_in + d_out) for q and for v.
    assert layer.lora_A.numel() + layer.lora_B.numel() == 2 * 2 * (d + d)


def test_gaussian_init_has_std_one_over_r():
    from lora_exp.methods.lora_layer import LoRALinear

    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(512, 512), rank=8, alpha=8, init="gaussian")
    assert abs(layer.lora_A.std().item() - 1 / 8) < 0.005
    assert torch.count_nonzero(layer.lora_B) == 0
