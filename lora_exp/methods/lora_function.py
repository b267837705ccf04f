"""The LoRA projection as one autograd function: fewer kernels, same function (Sec. 4.1).

    y = x W0ᵀ + b + s · (x' Aᵀ) B̂ᵀ,      s = alpha / r,  x' = dropout(x)  (x' = x without dropout)

Shapes, with tokens flattened to rows: x (n × d_in), W0 (d_out × d_in), A (P r × d_in),
B̂ (d_out × P r). For a plain projection P = 1 and B̂ = B. For a fused projection (GPT-2's c_attn
= [q; k; v]) with P adapted parts, B̂ is block-structured: part p's rows hold its own B_p in
columns p r .. (p+1) r and zeros elsewhere, so one GEMM adds every part's update and leaves the
unadapted parts (k) untouched (0 · h is exactly 0). ΔW = s B̂ A is then one product too.

Why a hand-written backward: autograd's generic path for the formula dispatches more ops per
adapted projection per training step (one layer, forward + backward under bf16 autocast: 32 here,
40 for the same formula in plain autograd, 40 for PEFT; scripts/lora_overhead.py), several of
them passes over (tokens × d) tensors: separate scale, add and cast kernels. On the H200 this
path takes less GPU time than PEFT's (roberta-large, length 512: 73.1 vs 83.2 ms per step) and
less memory. It does not take less host time: its backward runs in Python (208 µs per layer and
step on the dev CPU, against 176 µs for plain autograd and 222 µs for PEFT), so at length 128,
where an eager step is host-bound, it gains little.
The gradients, with g = dy B̂ (n × P r):

    dx  = dy W0 + s · g A            (one GEMM, then one GEMM whose epilogue adds: no extra add)
    dx' = s · g A                    (only when dropout makes x' a different tensor from x)
    dA  = s · gᵀ x'                  (the scale rides on the GEMM's alpha)
    dB̂ = s · dyᵀ h,  h = x' Aᵀ      (for a fused projection only B̂'s diagonal blocks are kept)

W0 and b are frozen (LoRA trains A and B only); `LoRALinear` falls back to plain autograd when
they are not. All operands arrive in one dtype (the autocast dtype, cast by the caller), and sums
happen in the GEMM's fp32 accumulator: the same function as the unfused formula, with fewer
bf16 roundings in the forward output and one rounding of dx's two terms together.
"""

from __future__ import annotations

import torch


def block_b(lora_b: torch.Tensor, parts: tuple[int, ...], num_parts: int) -> torch.Tensor:
    """B̂ (d_out × P r) from the stacked per-part B (P o × r); B itself when P = num_parts = 1."""
    p = len(parts)
    if num_parts == 1:
        return lora_b
    o, r = lora_b.shape[0] // p, lora_b.shape[1]
    full = lora_b.new_zeros(num_parts, o, p, r)
    for i, part in enumerate(parts):
        full[part, :, i, :] = lora_b[i * o : (i + 1) * o]
    return full.view(num_parts * o, p * r)


def unblock_b(grad_full: torch.Tensor, parts: tuple[int, ...], num_parts: int) -> torch.Tensor:
    """The gradient of the stacked B (P o × r) from the gradient of B̂ (its diagonal blocks)."""
    p = len(parts)
    if num_parts == 1:
        return grad_full
    o, r = grad_full.shape[0] // num_parts, grad_full.shape[1] // p
    blocks = grad_full.view(num_parts, o, p, r)
    return torch.cat([blocks[part, :, i, :] for i, part in enumerate(parts)])


class LoRAProjection(torch.autograd.Function):
    """y = x W0ᵀ + b + s · (x' Aᵀ) B̂ᵀ with the backward written out (see the module docstring).

    Args of `apply`: x, x_lora (None when the low-rank path reads x itself, else dropout(x);
    not x twice, which torch.compile cannot trace), weight (W0 as stored: d_out × d_in, or
    d_in × d_out when `transposed`, GPT-2's Conv1D), bias (or None), lora_a, lora_b (stacked per
    part), scaling, parts, num_parts, transposed. Tensors share one dtype.
    """

    @staticmethod
    def forward(
        ctx, x, x_lora, weight, bias, lora_a, lora_b, scaling, parts, num_parts, transposed
    ):
        b_hat = block_b(lora_b, parts, num_parts)
        w_io = weight if transposed else weight.t()  # (d_in × d_out): x @ w_io
        x2 = x.reshape(-1, x.shape[-1])
        shared_input = x_lora is None
        xl2 = x2 if shared_input else x_lora.reshape(-1, x.shape[-1])
        h = xl2 @ lora_a.t()  # (n × P r)
        y = torch.addmm(bias, x2, w_io) if bias is not None else x2 @ w_io
        y.addmm_(h, b_hat.t(), alpha=scaling)  # y += s h B̂ᵀ in the GEMM epilogue
        ctx.save_for_backward(xl2, weight, lora_a, b_hat, h)
        ctx.scaling, ctx.parts, ctx.num_parts = scaling, parts, num_parts
        ctx.transposed, ctx.shared_input = transposed, shared_input
        ctx.x_shape = x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        xl2, weight, lora_a, b_hat, h = ctx.saved_tensors
        s = ctx.scaling
        dy2 = dy.reshape(-1, dy.shape[-1])
        need_x, need_xl, _, _, need_a, need_b = ctx.needs_input_grad[:6]
        g = dy2 @ b_hat  # (n × P r)
        dx = dxl = da = db = None
        if need_x:
            dx = dy2 @ (weight.t() if ctx.transposed else weight)  # dy W0: (n × d_in)
            if ctx.shared_input:  # dx carries both terms
                dx.addmm_(g, lora_a, alpha=s)
            dx = dx.view(ctx.x_shape)
        if need_xl:  # x' = dropout(x): its own gradient
            dxl = torch.mm(g, lora_a).mul_(s).view(ctx.x_shape)  # dropout keeps the shape
        if need_a:
            da = torch.addmm(lora_a, g.t(), xl2, beta=0, alpha=s)  # beta=0: lora_a only sizes it
        if need_b:
            db_hat = torch.addmm(b_hat, dy2.t(), h, beta=0, alpha=s)
            db = unblock_b(db_hat, ctx.parts, ctx.num_parts)
        return dx, dxl, None, None, da, db, None, None, None, None
