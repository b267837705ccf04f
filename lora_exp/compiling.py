"""torch.compile of a transformer, whole or one repeated block at a time.

    compiled = compile_model(model, "model")    # torch.compile(model): one graph, longest compile
    compiled = compile_model(model, "blocks")   # each encoder/decoder block compiled in place

"blocks" is PyTorch's regional compilation: the N identical blocks of a transformer (RoBERTa's
`encoder.layer`, GPT-2's `h`) share one compiled graph, because dynamo inlines module calls and
treats each block's parameters as graph inputs. Compile time is then that of one block, not N,
for nearly the same kernels: inside a block Inductor fuses exactly as in the whole-model graph;
only the embeddings and the head run eagerly and nothing fuses across block boundaries.

Both are exact in the sense that matters here: the same function, rounding as Inductor's fused
kernels round (they are not bit-identical to eager).
"""

from __future__ import annotations

import torch
from torch import nn

SCOPES = ("model", "blocks")


def repeated_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's largest `nn.ModuleList` of blocks of one class (its transformer layers).

    Raises:
        ValueError: if the model has no such list.
    """
    lists = [
        m
        for m in model.modules()
        if isinstance(m, nn.ModuleList) and len(m) > 1 and len({type(b) for b in m}) == 1
    ]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of repeated blocks to compile")
    return max(lists, key=lambda blocks: sum(p.numel() for p in blocks.parameters()))


def compile_model(model: nn.Module, scope: str = "model", extra_graphs: int = 8,
                  **options) -> nn.Module:  # fmt: skip
    """`model` compiled with `scope` "model" (returns the compiled wrapper) or "blocks" (compiles
    each repeated block in place and returns `model` itself). `options` go to torch.compile;
    `extra_graphs` is how many graphs (shapes, train/eval, merged/unmerged) a block may need."""
    if scope not in SCOPES:
        raise ValueError(f"compile scope must be one of {SCOPES}, got '{scope}'")
    if scope == "model":
        return torch.compile(model, **options)
    blocks = repeated_blocks(model)
    # One graph serves every block; the default recompile limit (8) must not make blocks 9..N
    # fall back to eager if a guard ever tells them apart.
    limit = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.cache_size_limit = max(limit, len(blocks) + extra_graphs)
    for block in blocks:
        block.compile(**options)
    return model


def uncompile_model(model: nn.Module) -> nn.Module:
    """Undo `compile_model(model, "blocks")`: every block runs eagerly again (compile fallback)."""
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
    torch._dynamo.reset()
    return model
