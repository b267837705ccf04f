"""One autocast copy of an input, shared by the LoRA layers that read the same tensor.

Under bf16 autocast every projection casts its fp32 input to bf16 on its own, and autograd keeps
each copy that a trainable weight's gradient needs: LoRA's dA = s · gᵀ x needs x, so W_q's and
W_v's updates (which read the same hidden states) each keep a bf16 copy of the same tensor. Casting
once and handing the same copy to both halves that memory (at roberta-large, batch 32, length 512:
24 × 32 MiB) and removes a cast kernel per layer. The values are the cast autocast would make.

The only numeric difference: the two layers' input gradients now meet in the shared bf16 copy
(summed in bf16, then converted), where autocast's separate copies would each convert to fp32
before the sum. That is one bf16 rounding of a sum of two bf16 terms.

One slot per model (the most recent input), matched by identity, version counter, dtype and grad
mode, so an in-place change of the input, a different autocast dtype or a no_grad call never
reuses a stale copy. Under torch.compile it is not used (`LoRALinear` checks): Inductor merges
duplicate casts itself.
"""

from __future__ import annotations

import weakref

import torch


class SharedInputCast:
    """`cast(x, dtype)` returns x.to(dtype), reusing the previous result for the same input."""

    def __init__(self):
        self._source: weakref.ref | None = None
        self._key: tuple | None = None
        self._cast: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if x.dtype == dtype:
            return x
        if x.is_inference():  # inference tensors have no version counter (and no autograd)
            return x.to(dtype)
        key = (x._version, dtype, torch.is_grad_enabled())
        if self._source is not None and self._source() is x and self._key == key:
            return self._cast
        cast = x.to(dtype)
        self._source, self._key, self._cast = weakref.ref(x), key, cast
        return cast

    def clear(self) -> None:
        self._source = self._key = self._cast = None

    # A copied or pickled model starts with an empty slot (the cached tensor belongs to the
    # original's last forward pass, and weak references do not pickle).
    def __deepcopy__(self, memo):
        return SharedInputCast()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()
