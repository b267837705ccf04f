"""One attention-mask path for a CUDA-graph capture and the warm-up before it.

Used by the training step's capture (`step.py`) and the latency benchmark's
(`lora_exp/measure/latency.py`).
"""

from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def one_attention_path_for_capture(model: nn.Module, padded: bool = False):
    """Make transformers take one attention-mask path in the warm-up and in the CUDA-graph capture
    of `model`, so that the captured kernels are the warmed-up ones.

    transformers decides per forward whether SDPA gets an explicit mask, and decides differently
    while a stream captures (its `is_tracing()` is then true): it cannot inspect a mask's contents
    under capture, so it builds the full (batch, 1, seq, seq) mask. Left alone, the warm-up and
    the capture then run different code: a compiled model recompiles inside the capture (its
    `attention_mask is None` guard fails) and the capture breaks, and an eager capture records
    a slower step than the one it was meant to replay. This pins transformers' answer for both:

    - Bidirectional encoders (RoBERTa, DeBERTa): the eager path, no mask, SDPA's flash kernel.
      The benchmarks' batches have no padding by construction, so that decision holds for every
      replay. Measured on the H200 (roberta-large, batch 32, length 512): the captured step ran
      247.5 ms against 101.8 eager, with 51.5 against 21.4 GiB, before; 99.5 ms after.
    - Causal models (GPT-2): the capture path, an explicit causal mask, in the warm-up too. Their
      eager decision copies a host value to the GPU, which capture forbids (measured: every GPT-2
      capture failed when made to take it).
    - Padded batches (`padded`, a training run's batches with an attention mask): the capture
      path for every model, an explicit padding mask. The eager decision would inspect the mask
      (a host synchronisation) and drop it when a batch happens to have no padding.
    """
    from transformers.utils import import_utils

    explicit_mask = padded or any(getattr(m, "is_causal", False) for m in model.modules())
    original = import_utils.is_cuda_stream_capturing
    import_utils.is_cuda_stream_capturing = lambda: explicit_mask
    try:
        yield
    finally:
        import_utils.is_cuda_stream_capturing = original
