"""Timing one call of a function, and interleaving many variants trial by trial.

A timer is any callable `timer(runner) -> milliseconds` that calls `runner()` exactly once:

* `cpu_timer`: wall clock (`time.perf_counter`) around the call.
* `CudaEventTimer`: the GPU is idle when the trial starts (synchronize), a CUDA event is recorded
  before and after the call, and the elapsed time between the two events is read after the second
  has completed. The call's CPU-side launch overhead is inside the window whenever the GPU waits
  for it (small batches), which is the latency a user sees.

`interleave` visits the variants round-robin: trial 1 of every variant, then trial 2 of every
variant, and so on, so slow drifts (GPU clocks, temperature, other processes) hit all variants
alike instead of favouring whichever ran first. Each trial starts one variant further along
(trial t visits variants t, t+1, ..., wrapping around), so every variant takes every position in
the round equally often: what runs just before a variant (a CUDA-graph replay, a larger model
that evicted the CPU caches) is no longer always the same, which at batch 1, where eager timing
is launch-bound, biased the first variant by a few percent. Tests inject a fake timer to check
the order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Timer = Callable[["Runner"], float]


@dataclass
class Runner:
    """One thing to time: `key` names it (e.g. ("adapter_h", "eager")), `fn` runs it once."""

    key: tuple
    fn: Callable[[], object]

    def __call__(self):
        return self.fn()


def cpu_timer(runner: Runner) -> float:
    """Milliseconds of wall clock around one call."""
    start = time.perf_counter()
    runner()
    return (time.perf_counter() - start) * 1e3


class CudaEventTimer:
    """Milliseconds between CUDA events around one call, starting from an idle GPU."""

    def __init__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, runner: Runner) -> float:
        torch.cuda.synchronize()
        self.start.record()
        runner()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end)


def default_timer(device: torch.device) -> Timer:
    """CUDA events on a GPU, perf_counter on the CPU."""
    return CudaEventTimer() if device.type == "cuda" else cpu_timer


def interleave(
    runners: Sequence[Runner], trials: int, warmup: int, timer: Timer
) -> dict[tuple, list[float]]:
    """Time every runner `trials` times, round-robin with a rotating start, after `warmup`
    untimed rounds.

    Returns:
        runner key -> the `trials` timings in milliseconds, in trial order.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    for _ in range(warmup):
        for runner in runners:
            runner()
    times: dict[tuple, list[float]] = {runner.key: [] for runner in runners}
    for trial in range(trials):
        start = trial % len(runners)
        for runner in [*runners[start:], *runners[:start]]:
            times[runner.key].append(float(timer(runner)))
    return times
