"""Count the aten ops a piece of code dispatches (each is one host-side dispatch, and on a GPU
usually one kernel launch): how `scripts/lora_overhead.py` and the LoRA function's tests compare
the host cost of LoRA implementations without timing anything.

    with CountOps() as counter:
        layer(x).sum().backward()
    counter.total()     # ops dispatched, forward and backward
"""

from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode


class CountOps(TorchDispatchMode):
    """A dispatch mode that counts every aten op by name (`ops`) while it is active."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    def total(self) -> int:
        return sum(self.ops.values())
