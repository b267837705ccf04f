"""Model construction: the config fields every GPT-2 load sets (conf/model/*gpt2*.yaml), and
each family's model found from its parameter names, with the positions its input may use.

GPT-2's activation runs as torch's fused tanh-GELU (`gelu_pytorch_tanh`) instead of transformers'
elementwise `gelu_new`; the two compute the same formula, so the model is the same function.
"""

from __future__ import annotations

import pytest
import torch
from transformers.activations import ACT2FN

from tests.conftest import compose
from tests.family_cases import FAMILY_CASES


@pytest.mark.parametrize("name", ["tiny-gpt2", "gpt2-medium", "gpt2-large"])
def test_every_gpt2_model_runs_the_fused_tanh_gelu(name):
    assert compose([f"model={name}"]).model.config_overrides.activation_function == (
        "gelu_pytorch_tanh"
    )


def test_the_built_model_uses_it(tiny_model):
    model, _ = tiny_model("tiny-gpt2")
    assert model.config.activation_function == "gelu_pytorch_tanh"
    assert type(model.transformer.h[0].mlp.act) is type(ACT2FN["gelu_pytorch_tanh"])


def test_fused_tanh_gelu_is_gpt2s_gelu_new():
    """Same values (fp32 rounding) and same gradients over the range activations take."""
    x = torch.linspace(-12, 12, 100_001, dtype=torch.float64).float().requires_grad_()
    fused, reference = ACT2FN["gelu_pytorch_tanh"], ACT2FN["gelu_new"]
    y_fused, y_reference = fused(x), reference(x)
    torch.testing.assert_close(y_fused, y_reference, rtol=0, atol=1e-6)
    (g_fused,) = torch.autograd.grad(y_fused.sum(), x)
    (g_reference,) = torch.autograd.grad(y_reference.sum(), x)
    torch.testing.assert_close(g_fused, g_reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "family", "positions"), [(r.model, r.family, r.positions) for r in FAMILY_CASES]
)
def test_family_of_a_model_and_the_positions_its_input_may_use(tiny_model, name, family, positions):
    """RoBERTa's position ids start at padding_idx + 1 = 2: 128 of its 130 rows are usable, and a
    longer benchmark batch fails at once rather than inside the embedding lookup."""
    from lora_exp.errors import UserError
    from lora_exp.measure import bench
    from lora_exp.models import family_of, input_positions

    model, _ = tiny_model(name)
    assert family_of(model).name == family
    assert input_positions(family_of(model), model.config) == positions
    assert bench.random_batch(model, 1, positions, "cpu", 0).shape == (1, positions)
    with pytest.raises(UserError, match=f"seq_len {positions + 1} exceeds the model's {positions}"):
        bench.random_batch(model, 1, positions + 1, "cpu", 0)
