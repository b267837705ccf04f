"""Where a run's wall time goes: one number per phase, in the record as `timing/<phase>`.

    timing/imports      process start to `run_cell.main` (interpreter, Hydra, config composition),
                        plus torch, transformers and Lightning, imported when training starts
    timing/memory_check estimating the run's memory before allocating (checks/memory.py)
    timing/data_load    reading the task's splits, subsampling, fingerprinting
    timing/tokenize     tokenising every split (near 0 when the tokenised splits were cached)
    timing/model_load   building the backbone, loading weights, applying the method
    timing/capture      warm-up and CUDA-graph capture of the training step (captured modes;
                        compiled modes compile inside their first steps, counted in train)
    timing/train        training batches (validation excluded)
    timing/eval         validation passes
    timing/test         the test pass(es) and the final latency measurement
    timing/checkpoint   writing checkpoints
    timing/total        process start to the end of the run
    timing/other        total minus the phases above: Lightning's setup, moving the model to the
                        device (CUDA initialisation), loggers, the environment, writing records

The GPU is synchronised only where a phase starts or ends, never per step.
"""

from __future__ import annotations

import time

import lightning as L
import torch


def _sync(trainer) -> None:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer(L.Callback):
    """Times validation, test and checkpoint writes of a Lightning run (seconds in `self.times`).

    Training time comes from `RunMeasurements` (its training stretches), capture time from the
    training step; `wrap_checkpoint_io` times checkpoint writes whatever CheckpointIO is in use.
    """

    def __init__(self):
        self.times = {"eval": 0.0, "test": 0.0, "checkpoint": 0.0}
        self._started: dict[str, float] = {}

    def _start(self, trainer, phase: str) -> None:
        _sync(trainer)
        self._started[phase] = time.perf_counter()

    def _stop(self, trainer, phase: str) -> None:
        if phase in self._started:
            _sync(trainer)
            self.times[phase] += time.perf_counter() - self._started.pop(phase)

    def on_validation_start(self, trainer, pl_module):
        self._start(trainer, "eval")

    def on_validation_end(self, trainer, pl_module):
        self._stop(trainer, "eval")

    def on_test_start(self, trainer, pl_module):
        self._start(trainer, "test")

    def on_test_end(self, trainer, pl_module):
        self._stop(trainer, "test")

    def wrap_checkpoint_io(self, trainer) -> None:
        """Time every `save_checkpoint` of the trainer's CheckpointIO."""
        checkpoint_io = trainer.strategy.checkpoint_io
        save = checkpoint_io.save_checkpoint

        def timed_save(*args, **kwargs):
            start = time.perf_counter()
            try:
                return save(*args, **kwargs)
            finally:
                self.times["checkpoint"] += time.perf_counter() - start

        checkpoint_io.save_checkpoint = timed_save
