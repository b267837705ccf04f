"""What torch.compile makes of one LoRA layer, ours vs PEFT's (issue 5: compiled LoRA was slower).

    python scripts/inspect_compiled_lora.py 2>/dev/null   # CPU is enough: counts, not timings

For each implementation, on one d x d projection with r = 8 (frozen base, bf16 autocast):
dynamo's graph and graph-break counts, and from Inductor's generated code (forward + backward)
the number of fused kernels and of extern GEMM calls. A slower compiled model with no extra
breaks and no extra kernels points away from the layer itself.
"""

from __future__ import annotations

import logging
import re
import sys

import torch
import torch._dynamo as dynamo
from torch import nn

from lora_exp.frozen_precision import store_frozen_projections_in
from lora_exp.methods.lora_layer import LoRALinear


def build(impl: str, d: int = 256) -> nn.Module:
    torch.manual_seed(0)
    base = nn.Linear(d, d).requires_grad_(False)
    if impl == "lora_exp":
        layer = LoRALinear(base, 8, 16.0)
        store_frozen_projections_in(layer)  # as run_plan.py does under bf16-mixed
    else:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=8, lora_alpha=16, target_modules=["0"], lora_dropout=0.0)
        layer = get_peft_model(nn.Sequential(base), config)
    for name, param in layer.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(param)  # B = 0 at init would let Inductor simplify the product away
    return layer


class CodeCapture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.text = []

    def emit(self, record):
        self.text.append(record.getMessage())


def inspect(impl: str) -> dict:
    layer = build(impl)
    x = torch.randn(4, 32, 256, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = dynamo.explain(layer)(x)
    dynamo.reset()
    capture = CodeCapture()
    torch._logging.set_logs(output_code=True)
    logger = logging.getLogger("torch._inductor.codecache")
    logger.addHandler(capture)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.compile(layer)(x)
        y.float().sum().backward()
    finally:
        logger.removeHandler(capture)
        torch._logging.set_logs(output_code=False)
        dynamo.reset()
    code = "\n".join(capture.text)
    return {
        "graphs": explained.graph_count,
        "graph_breaks": explained.graph_break_count,
        "fused_kernels": len(set(re.findall(r"cpp_fused_\w+|triton_\w+_fused_\w+", code))),
        "extern_gemms": len(re.findall(r"extern_kernels\.(?:mm|addmm|bmm)\(", code)),
    }


def main() -> int:
    for impl in ("lora_exp", "peft"):
        print(impl, inspect(impl), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
