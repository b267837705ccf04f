"""What GPT-2's activation keeps for the backward: `gelu_new` against the fused tanh-GELU.

Counts the tensors autograd saves in one GPT-2-medium-width block (d = 1024, 4d = 4096; batch
8 x 128 tokens, bf16 autocast on the CPU) with each `activation_function`, through
`torch.autograd.graph.saved_tensors_hooks`. The README's speed section and
`conf/model/gpt2-*.yaml` quote its output
(results/training_path/logs/gpt2_activation_saved_tensors.txt).

    python scripts/gpt2_activation_saved_tensors.py
"""

from __future__ import annotations

import collections

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification


def saved_tensors(activation: str) -> collections.Counter:
    """(shape, dtype) -> how many tensors one forward pass saves for the backward."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=1024, n_head=16, num_labels=4, pad_token_id=0,
                        activation_function=activation)  # fmt: skip
    model = GPT2ForSequenceClassification(config)
    ids = torch.randint(3, 1000, (8, 128), generator=torch.Generator().manual_seed(0))
    saved: collections.Counter = collections.Counter()

    def pack(tensor):
        saved[(tuple(tensor.shape), str(tensor.dtype))] += 1
        return tensor

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with hooks, torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return saved


def main() -> None:
    for activation in ("gelu_new", "gelu_pytorch_tanh"):
        saved = saved_tensors(activation)
        total = sum(
            n * torch.Size(shape).numel() * getattr(torch, dtype[6:]).itemsize
            for (shape, dtype), n in saved.items()
        )
        wide = sum(n for (s, _), n in saved.items() if s == (8, 128, 4096))
        print(f"{activation}: {wide} saved (8, 128, 4096) tensors, {total / 2**20:.1f} MiB in all")


if __name__ == "__main__":
    main()
