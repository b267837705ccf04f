"""What every training run measures about itself (issue 5, item 3), beside its metrics.

* `throughput/tokens_per_s`: real (non-padding) tokens of the training batches over the seconds
  spent in training batches (validation excluded; the GPU is synchronised only where a training
  stretch starts and ends, never per step, so measuring does not slow training down; the one-time
  warm-up and capture of a captured step is excluded, and reported as timing/capture).
* `memory/peak_bytes`: on a GPU, the peak of `torch.cuda.max_memory_allocated` during training
  (what the paper's VRAM figures count); on the CPU, the process's peak resident set size
  (`memory/kind` says which).
* `checkpoint/saved_bytes`: the size of the best checkpoint on disk, which holds only what the
  method trains (module.py strips frozen weights): the paper's 350 GB → 35 MB claim, per run.
* `latency/ms`: median wall time of one forward pass of the final model, merged where the method
  can merge (the model as served), on random token ids of `measure.latency_batch_size` ×
  `measure.latency_seq_len`, under the run's precision; CUDA events on a GPU.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time

import lightning as L
import torch

from lora_exp.measure.timing import Runner, default_timer, interleave
from lora_exp.models import Family, input_positions


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RunMeasurements(L.Callback):
    """Collects throughput, peak memory and final latency into `self.results`.

    Args:
        family: the model's family (how many positions a sequence may use).
        latency_batch_size, latency_seq_len: the input of the latency measurement.
        latency_trials: timed forward passes (after `latency_trials // 5 + 1` untimed ones).
    """

    def __init__(
        self,
        family: Family,
        latency_batch_size: int = 1,
        latency_seq_len: int = 128,
        latency_trials=20,
    ):
        self.family = family
        self.latency_shape = (int(latency_batch_size), int(latency_seq_len))
        self.latency_trials = int(latency_trials)
        self.results: dict[str, float | int | str] = {}
        self._tokens: torch.Tensor | int = 0
        self._seconds = 0.0
        self._stretch_start: float | None = None

    # --- throughput: training stretches between validation runs ---
    def _open(self, trainer) -> None:
        if self._stretch_start is None:
            _synchronize(trainer.strategy.root_device)
            self._stretch_start = time.perf_counter()

    def _close(self, trainer) -> None:
        if self._stretch_start is not None:
            _synchronize(trainer.strategy.root_device)
            self._seconds += time.perf_counter() - self._stretch_start
            self._stretch_start = None

    def on_train_start(self, trainer, pl_module):
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._open(trainer)
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(batch["input_ids"])
        weight = batch.get("loss_weight")  # 0 for rows that only fill a static shape
        if weight is not None:
            mask = mask * weight.to(mask.dtype).unsqueeze(-1)
        # Summed on the device: no host synchronisation per step.
        self._tokens = self._tokens + mask.sum()

    def on_validation_start(self, trainer, pl_module):
        if trainer.training:
            self._close(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._close(trainer)

    def on_train_end(self, trainer, pl_module):
        self._close(trainer)
        tokens = int(self._tokens.item() if torch.is_tensor(self._tokens) else self._tokens)
        # A captured step's one-time warm-up and capture (timing/capture) is not throughput.
        step = getattr(pl_module, "train_step", None)
        self._seconds -= getattr(step, "capture_seconds", 0.0)
        if self._seconds > 0 and tokens:
            self.results["throughput/tokens_per_s"] = round(tokens / self._seconds, 1)
            self.results["throughput/train_seconds"] = round(self._seconds, 3)
        device = trainer.strategy.root_device
        if device.type == "cuda":
            self.results["memory/peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
            self.results["memory/kind"] = "cuda_max_allocated"
        else:  # ru_maxrss is KiB on Linux, bytes on macOS
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.results["memory/peak_bytes"] = int(rss * (1 if sys.platform == "darwin" else 1024))
            self.results["memory/kind"] = "cpu_max_rss"

    # --- latency of the final model, as served: measured once, at the first test ---
    def on_test_end(self, trainer, pl_module):
        if "latency/ms" in self.results:
            return  # the extra evaluation splits (MNLI mismatched) run test again
        autocast = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(trainer.precision)
        self.results.update(
            forward_latency(
                pl_module.model,
                self.family,
                *self.latency_shape,
                trials=self.latency_trials,
                autocast=autocast,
            )
        )


@torch.no_grad()
def forward_latency(
    model: torch.nn.Module, family: Family, batch: int, seq: int, trials: int = 20, autocast=None
) -> dict:
    """Median milliseconds of one forward pass of `model` (as it is now: merged or not).

    Args:
        autocast: the mixed-precision dtype the run trained under (None: the weights' dtype).
    """
    config = model.config
    seq = min(seq, input_positions(family, config))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.vocab_size, (batch, seq), generator=generator).to(device)
    mask = torch.ones_like(ids)
    was_training = model.training
    model.eval()

    def forward():
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            model(input_ids=ids, attention_mask=mask)

    times = interleave(
        [Runner(("final",), forward)], trials, trials // 5 + 1, default_timer(device)
    )[("final",)]
    model.train(was_training)
    return {
        "latency/ms": round(statistics.median(times), 4),
        "latency/batch_size": batch,
        "latency/seq_len": seq,
    }
