"""One training step, in four execution modes, for `python run.py` and the GPU benchmarks alike.

The step is everything between two batches: forward and loss (under bf16 autocast on a GPU),
backward, gradient clipping if set, the optimizer step, the learning-rate schedule and the
running sum of the loss. The modes execute that same step differently:

* `eager`: op by op, as PyTorch runs by default. Exact, and the only mode on a CPU.
* `compiled`: each transformer block compiled by Inductor (`lora_exp/compiling.py`); fused
  kernels round differently from eager ones, so not bit-identical.
* `graphed`: the whole step captured as one CUDA graph per batch shape and replayed: one launch
  per step instead of thousands. Eager training of small models and of LoRA is bound by the host
  (measured: the GPU is busy 18 of 74 ms of a roberta-large LoRA step at length 128), and a replay
  takes the step's GPU time. The kernels are the eager step's; what differs is (1) dropout draws
  from the graph-safe generator (fresh masks on every replay, from a different random stream than
  eager), and (2) batches are padded to a few fixed shapes (`buckets.py`), which changes rounding
  but not the loss.
* `compiled-graphed`: the compiled step, captured.

Captured steps need: inputs copied into fixed buffers, gradients that persist between replays
(zeroed inside the graph), an optimizer whose state and step count live on the GPU (fused AdamW
with `capturable=True` and a tensor learning rate that the schedule fills in place), no autocast
weight-cast cache (a cast cached across the capture would be freed under the graph), and no host
synchronisation inside the step. The loss is accumulated on the GPU and read once per logging
interval. Every bucket's graph shares one memory pool: each frees all its intermediates by the end
of its capture, so the pool holds one step's activations, not one per bucket.

A capture or compile that fails at run time falls back to eager with one warning line;
`fallback` says why, and the run record reports it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger("lora_exp")

MODES = ("eager", "compiled", "graphed", "compiled-graphed")


def build_optimizer(params, lr: float, weight_decay: float, mode: str, device: torch.device):
    """AdamW (decoupled weight decay, the paper's optimizer) for `mode` on `device`.

    Captured modes get the fused, capturable implementation with the learning rate as a device
    tensor (the schedule writes it in place, and each replay reads it). Other CUDA modes get the
    fused kernel too (one launch for all parameters); the CPU keeps PyTorch's default.
    """
    params = list(params)
    if mode.endswith("graphed"):
        lr_tensor = torch.tensor(float(lr), device=device)
        return torch.optim.AdamW(
            params, lr=lr_tensor, weight_decay=weight_decay, fused=True, capturable=True
        )
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, fused=True if device.type == "cuda" else None
    )


class TrainStep:
    """Call it with a batch (tensors on the model's device) to train one step.

    Args:
        model: the network being trained (possibly with compiled blocks).
        loss_fn: (model, batch) -> scalar loss (`losses.py`).
        optimizer: a torch optimizer over the trainable parameters (`build_optimizer`).
        scheduler: a learning-rate scheduler stepped once per step, or None.
        mode: one of MODES.
        autocast_dtype: mixed-precision dtype (bf16 on a GPU), or None for full precision.
        backward: loss -> None; `loss.backward()` unless given (Lightning's `manual_backward`).
        clip: () -> None, clips gradients in place (no host synchronisation), or None.
        warmup: forward/backward passes before each capture (cuBLAS workspaces, compilation).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, optimizer, scheduler=None, *,
                 mode: str = "eager", autocast_dtype=None, backward=None, clip=None,
                 warmup: int = 2):  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"unknown step mode '{mode}'; one of {MODES}")
        self.model, self.loss_fn, self.optimizer, self.scheduler = (
            model,
            loss_fn,
            optimizer,
            scheduler,
        )
        self.mode, self.autocast_dtype, self.clip, self.warmup = mode, autocast_dtype, clip, warmup
        self.backward = backward or (lambda loss: loss.backward())
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.device = self.params[0].device
        for group in optimizer.param_groups:  # a restored optimizer may bring its lr on the CPU
            if torch.is_tensor(group["lr"]) and group["lr"].device != self.device:
                group["lr"] = group["lr"].to(self.device)
        self.captures = mode.endswith("graphed")
        self.fallback: str | None = None  # why a captured/compiled mode went back to eager
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict]] = {}
        self.pool = None
        self.capture_seconds = 0.0
        # Loss sums on the device: read (one synchronisation) per logging interval and per epoch.
        self.interval, self.epoch = LossMeter(self.device), LossMeter(self.device)

    # --- the step ---
    def __call__(self, batch: dict) -> None:
        if self.captures and self.fallback is None:
            try:
                self._replay(batch)
            except Exception as err:  # a capture that fails: train eagerly, say so once
                self._fall_back(f"CUDA-graph capture failed ({type(err).__name__}: {err})")
                self._eager(batch)
        elif self.mode.startswith("compiled") and self.fallback is None:
            try:
                self._eager(batch)
            except Exception as err:
                self._fall_back(f"compilation failed ({type(err).__name__}: {err})")
                self._eager(batch)
        else:
            self._eager(batch)
        self.interval.steps += 1
        self.epoch.steps += 1

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # No weight-cast cache under capture: a cached cast would be freed under the graph.
        return torch.autocast(
            self.device.type, dtype=self.autocast_dtype, cache_enabled=not self.captures
        )

    def _forward_backward(self, batch: dict) -> torch.Tensor:
        with self._autocast():
            loss = self.loss_fn(self.model, batch)
        self.backward(loss)
        return loss.detach()

    def _update(self, loss: torch.Tensor) -> None:
        """Clip, step the optimizer, accumulate the loss (the part every mode shares)."""
        if self.clip is not None:
            self.clip()
        self.optimizer.step()
        self.interval.total.add_(loss)  # in place: a captured graph updates the same tensors
        self.epoch.total.add_(loss)

    def _eager(self, batch: dict) -> None:
        loss = self._forward_backward(batch)
        self._update(loss)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()

    def _replay(self, batch: dict) -> None:
        key = tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(batch.items()))
        if key not in self.graphs:
            self.graphs[key] = self._capture(batch)
        graph, static = self.graphs[key]
        for name, tensor in batch.items():
            static[name].copy_(tensor, non_blocking=True)
        graph.replay()
        if self.scheduler is not None:
            self.scheduler.step()  # fills the tensor learning rate in place: no synchronisation

    # --- capture ---
    def _capture(self, batch: dict) -> tuple[torch.cuda.CUDAGraph, dict]:
        """Warm up on `batch` (forward and backward only: no parameter changes), then capture."""
        from lora_exp.engine.capture_path import one_attention_path_for_capture

        start = time.perf_counter()
        static = {name: t.clone() for name, t in batch.items()}
        # Capturing must not move the random stream: a resumed run captures at another step than
        # an uninterrupted one and must still draw the same dropout masks in its replays.
        rng = torch.cuda.get_rng_state(self.device)
        padded = "attention_mask" in batch
        with one_attention_path_for_capture(self.model, padded=padded):
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self._forward_backward(static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._ensure_optimizer_state()
            grads = [self._persistent_grad(p) for p in self.params]
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                torch._foreach_zero_(grads)
                loss = self._forward_backward(static)
                self._update(loss)
        self.pool = graph.pool()
        torch.cuda.set_rng_state(rng, self.device)
        torch.cuda.synchronize(self.device)
        self.capture_seconds += time.perf_counter() - start
        log.info(
            "captured the training step for shape %s in %.1f s",
            tuple(batch["input_ids"].shape),
            time.perf_counter() - start,
        )
        return graph, static

    @staticmethod
    def _persistent_grad(param: torch.Tensor) -> torch.Tensor:
        """The parameter's gradient buffer, allocated outside the graph so it outlives captures."""
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        return param.grad

    @torch.no_grad()
    def _ensure_optimizer_state(self) -> None:
        """Create AdamW's state before capture, so the graph updates it instead of creating it.

        A fresh optimizer creates its moments at its first step; inside a capture that creation
        would be recorded and replayed (zeroing the moments every step). One step at learning
        rate 0 with zero gradients creates them without changing anything: the weight decay
        factor is 1 - 0 * wd = 1, both moments stay 0 and the update is 0 * m / (sqrt(v) + eps)
        = 0. The step counts are then reset to 0. A resumed optimizer already has its state.
        """
        if all(p in self.optimizer.state for p in self.params):
            return
        grads = [self._persistent_grad(p) for p in self.params]
        torch._foreach_zero_(grads)
        saved = []
        for group in self.optimizer.param_groups:
            saved.append(group["lr"].clone())
            group["lr"].fill_(0.0)
        self.optimizer.step()
        for group, lr in zip(self.optimizer.param_groups, saved, strict=True):
            group["lr"].copy_(lr)
        for state in self.optimizer.state.values():
            state["step"].zero_()

    def _fall_back(self, reason: str) -> None:
        """Go back to eager for the rest of the run (one warning line)."""
        self.fallback = reason.splitlines()[0][:300]
        log.warning("trainer.step=%s fell back to eager: %s", self.mode, self.fallback)
        self.graphs.clear()
        self.captures = False
        if self.mode.startswith("compiled"):
            from lora_exp.compiling import uncompile_model

            uncompile_model(self.model)
        self.optimizer.zero_grad(set_to_none=True)  # a failed step may have left partial grads

    def report(self) -> dict:
        """What the run record says about the step: mode, fallback, captures, capture time."""
        return {
            "fallback": self.fallback,
            "graphs_captured": len(self.graphs),
            "capture_s": round(self.capture_seconds, 3),
        }

    # --- the loss, read rarely ---
    def interval_loss(self, reduce=None) -> float | None:
        """Mean loss since the last call (one host synchronisation), or None if no step ran.

        Args:
            reduce: tensor -> tensor, the mean over data-parallel ranks (None on one device).
        """
        return self.interval.take(reduce)

    def epoch_loss(self, reduce=None) -> float | None:
        """Mean loss since the last call: the epoch's training loss (`reduce` as above)."""
        return self.epoch.take(reduce)


class LossMeter:
    """A running sum of the loss on the device, and the steps it covers (read rarely)."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), device=device)
        self.steps = 0

    def take(self, reduce=None) -> float | None:
        """The mean since the last `take` (one host synchronisation), then start again."""
        if not self.steps:
            return None
        total = reduce(self.total) if reduce is not None else self.total
        value = total.item() / self.steps
        self.total.zero_()
        self.steps = 0
        return value
