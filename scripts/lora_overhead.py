"""What one LoRA layer costs the host per training step: dispatched ops and microseconds.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/lora_overhead.py    # CPU is enough

Eager training at short lengths is host-bound on the H200 (results/efficiency/table.md: GPU busy
24% of an eager roberta-large step at length 128), so a LoRA layer's cost there is the ops it
dispatches and the Python it runs, not its FLOPs. For one 16 x 16 projection with r = 8 under
bf16 autocast, forward + backward, this prints the aten ops dispatched and the median host time
over 7 blocks of 2,000 steps for: our fast path (`LoRAProjection`), the same formula in plain
autograd (`LoRALinear.forward_autograd`), PEFT's LoRA layer, and a frozen nn.Linear alone.
Timings are of this machine's CPU; compare the rows with each other, within one run.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from lora_exp.measure.op_count import CountOps
from lora_exp.methods.input_cast import SharedInputCast
from lora_exp.methods.lora_layer import LoRALinear

D, RANK = 16, 8


def layers() -> dict[str, nn.Module]:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    ours = LoRALinear(nn.Linear(D, D).requires_grad_(False), RANK, 16.0)
    ours.input_cast = SharedInputCast()
    formula = LoRALinear(nn.Linear(D, D).requires_grad_(False), RANK, 16.0)
    formula.forward = formula.forward_autograd
    config = LoraConfig(r=RANK, lora_alpha=16, target_modules=["0"], lora_dropout=0.0)
    peft = get_peft_model(nn.Sequential(nn.Linear(D, D)), config)
    return {
        "lora_exp (LoRAProjection)": ours,
        "same formula, plain autograd": formula,
        "peft": peft,
        "frozen nn.Linear alone": nn.Linear(D, D).requires_grad_(False),
    }


def step(layer: nn.Module, x: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y.float().sum().backward()


def main() -> None:
    torch.set_num_threads(1)
    x = torch.randn(4, D, requires_grad=True)
    timings: dict[str, list[float]] = {}
    ops = {}
    built = layers()
    for name, layer in built.items():
        step(layer, x)
        with CountOps() as counter:
            step(layer, x)
        ops[name] = counter.total()
        timings[name] = []
    for _ in range(7):  # blocks interleaved across the layers, so drift hits all alike
        for name, layer in built.items():
            start = time.perf_counter()
            for _ in range(2000):
                step(layer, x)
            timings[name].append((time.perf_counter() - start) / 2000 * 1e6)
    for name in ops:
        print(f"{name:30s} {ops[name]:4d} ops  {statistics.median(timings[name]):7.1f} us/step")


if __name__ == "__main__":
    main()
