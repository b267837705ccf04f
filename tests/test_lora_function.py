"""LoRA's hand-written backward (lora_function.py) and the shared input cast (input_cast.py).

The fast path must compute the formula h = W0 x + b + s · B̂ A dropout(x) and its gradients exactly
as plain autograd does (float64: gradcheck and equality with `forward_autograd`), on plain and
fused projections, nn.Linear and GPT-2's Conv1D; trace under torch.compile without graph breaks;
and dispatch fewer ops per training step than the autograd formula (the reason it exists).
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from torch import nn
from transformers.pytorch_utils import Conv1D

from lora_exp.measure.op_count import CountOps
from lora_exp.methods.input_cast import SharedInputCast
from lora_exp.methods.lora_function import LoRAProjection
from lora_exp.methods.lora_layer import LoRALinear

SHAPES = [((0,), 1), ((0, 2), 3), ((0, 1, 2), 3), ((1,), 3)]  # plain, GPT-2 q/v, q/k/v, k only


def _layer(kind: str, parts, num_parts, dtype=torch.float64, dropout=0.0, seed=0) -> LoRALinear:
    torch.manual_seed(seed)
    base = nn.Linear(12, 18) if kind == "linear" else Conv1D(18, 12)
    base = base.to(dtype).requires_grad_(False)
    layer = LoRALinear(base, 2, 4.0, dropout=dropout, parts=parts, num_parts=num_parts)
    nn.init.normal_(layer.lora_B)  # B = 0 would hide errors in dA and in the update
    return layer


def _grads(out, layer, x):
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return torch.autograd.grad((out * weights).sum(), (x, layer.lora_A, layer.lora_B))


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("parts,num_parts", SHAPES)
def test_fast_path_equals_autograd_formula_and_passes_gradcheck(kind, parts, num_parts):
    layer = _layer(kind, parts, num_parts)
    x = torch.randn(3, 5, 12, dtype=torch.float64, requires_grad=True)
    fast, reference = layer(x), layer.forward_autograd(x)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    for got, want in zip(_grads(fast, layer, x), _grads(reference, layer, x), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)

    def projection(x, x_lora, a, b):
        w, bias = layer.base.weight, layer.base.bias
        args = (layer.scaling, layer.parts, layer.num_parts, layer.fan_in_fan_out)
        return LoRAProjection.apply(x, x_lora, w, bias, a, b, *args)

    a = layer.lora_A.detach().clone().requires_grad_()
    b = layer.lora_B.detach().clone().requires_grad_()
    x_lora = torch.randn(3, 5, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, b: projection(x, None, a, b), (x, a, b))
    assert torch.autograd.gradcheck(projection, (x, x_lora, a, b))  # the dropout case


def test_fast_path_with_dropout_draws_the_same_mask_as_the_formula():
    layer = _layer("linear", (0,), 1, dropout=0.3).train()
    x = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(5)
    fast = layer(x)
    torch.manual_seed(5)
    reference = layer.forward_autograd(x)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    for got, want in zip(_grads(fast, layer, x), _grads(reference, layer, x), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_trainable_base_weight_falls_back_to_autograd_and_gets_its_gradient():
    layer = _layer("linear", (0,), 1)
    layer.base.weight.requires_grad_(True)
    x = torch.randn(4, 12, dtype=torch.float64)
    layer(x).sum().backward()
    assert layer.base.weight.grad is not None and layer.lora_A.grad is not None


def test_shared_cast_is_made_once_for_layers_reading_the_same_input():
    q, v = (
        _layer("linear", (0,), 1, torch.float32),
        _layer("linear", (0,), 1, torch.float32, seed=1),
    )
    cast = SharedInputCast()
    q.input_cast = v.input_cast = cast
    x = torch.randn(4, 12, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_q = q(x)
        first = cast._cast
        out_v = v(x)
        assert cast._cast is first and first.dtype == torch.bfloat16
        ref_q, ref_v = q.forward_autograd(x), v.forward_autograd(x)
    assert out_q.dtype == torch.bfloat16
    # bf16 outputs: at most one rounding apart from autocast's unfused formula
    torch.testing.assert_close(out_q.float(), ref_q.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out_v.float(), ref_v.float(), rtol=1e-2, atol=1e-2)
    (out_q.float().sum() + out_v.float().sum()).backward()
    fast_grad, x.grad = x.grad, None
    (ref_q.float().sum() + ref_v.float().sum()).backward()
    torch.testing.assert_close(fast_grad, x.grad, rtol=1e-2, atol=5e-2)


def test_shared_cast_never_returns_a_stale_copy():
    cast = SharedInputCast()
    x = torch.randn(3, 4)
    with torch.no_grad():
        no_grad_copy = cast(x, torch.bfloat16)
    assert cast(x, torch.bfloat16) is not no_grad_copy  # grad mode differs
    first = cast(x, torch.bfloat16)
    x.add_(1.0)  # in place: the version counter moves
    assert torch.equal(cast(x, torch.bfloat16), x.to(torch.bfloat16)) and cast._cast is not first
    assert cast(x, torch.float16).dtype == torch.float16
    assert cast(x, torch.float32) is x
    with torch.inference_mode():
        y = torch.randn(3, 4)
        assert torch.equal(cast(y, torch.bfloat16), y.to(torch.bfloat16))


@pytest.mark.parametrize("parts,num_parts", [((0,), 1), ((0, 2), 3)])
def test_fast_path_dispatches_fewer_ops_per_training_step(parts, num_parts):
    layer = _layer("linear", parts, num_parts, torch.float32)
    x = torch.randn(4, 12, requires_grad=True)

    def ops(forward) -> int:
        with CountOps() as counter, torch.autocast("cpu", dtype=torch.bfloat16):
            forward(x).float().sum().backward()
        return counter.total()

    fast, formula = ops(layer), ops(layer.forward_autograd)
    assert fast < formula, (fast, formula)


@pytest.mark.parametrize("parts,num_parts", [((0,), 1), ((0, 2), 3)])
def test_fast_path_traces_whole_under_torch_compile(parts, num_parts):
    layer = _layer("conv1d", parts, num_parts, torch.float32)
    layer.input_cast = SharedInputCast()
    x = torch.randn(2, 3, 12, requires_grad=True)
    dynamo.reset()
    explained = dynamo.explain(layer)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    eager = _grads(layer(x), layer, x)
    compiled = _grads(torch.compile(layer, backend="aot_eager")(x), layer, x)
    dynamo.reset()
    for got, want in zip(compiled, eager, strict=True):
        torch.testing.assert_close(got, want)
