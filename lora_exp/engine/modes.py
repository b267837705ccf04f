"""Which execution mode a run's training step uses (`trainer.step`), and why.

`auto` (the default) picks the fastest mode that is valid where the run executes:

* one CUDA device: `graphed`, the whole step replayed as a CUDA graph. Measured on an H100
  (results/training_path): the MiniLM default's training with validation took 14.4 s against
  56.4 s eager (3.9x). Compilation stays opt-in (`compiled-graphed`): it costs 5-13 s per run
  on an H200 (results/efficiency), about the whole captured training of the embedded default;
  whether it pays on long runs of large models has not been measured through `run.py` yet.
* the CPU: `eager` (CUDA graphs need a GPU; eager is exact).
* data parallelism (DDP, FSDP) or several devices: `eager`; the gradient all-reduce runs in
  hooks outside the step, which a single-device capture does not cover.
* fp16 mixed precision (`16-mixed`): `eager`; loss scaling skips steps on a host-side check.

An explicit mode where it cannot run is bad input (exit 2), never a silent switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from lora_exp.engine.step import MODES
from lora_exp.errors import UserError


@dataclass(frozen=True)
class StepPlan:
    """The mode a run's training step executes in, and the reason it was chosen."""

    requested: str
    mode: str
    reason: str

    @property
    def captured(self) -> bool:
        return self.mode.endswith("graphed")

    @property
    def compiled(self) -> bool:
        return self.mode.startswith("compiled")

    @property
    def static_shapes(self) -> bool:
        """Captured and compiled steps want a few fixed batch shapes (`buckets.py`)."""
        return self.mode != "eager"


def plan_step(requested: str, device_type: str, distributed: bool, precision: str,
              problem: str) -> StepPlan:  # fmt: skip
    """Resolve `trainer.step` for this run.

    Args:
        requested: auto | eager | compiled | graphed | compiled-graphed.
        device_type: "cuda" or "cpu" (the device the run trains on).
        distributed: data parallelism (DDP, FSDP) or more than one device.
        precision: the resolved Lightning precision ("bf16-mixed", "32-true", ...).
        problem: the task's problem (generation tasks decode with a growing cache).
    """
    requested = str(requested)
    if requested not in ("auto", *MODES):
        raise UserError(
            f"trainer.step must be auto or one of {', '.join(MODES)}; got '{requested}'"
        )
    blockers = []
    if device_type != "cuda":
        blockers.append("CUDA graphs need a GPU (this run trains on the CPU)")
    if distributed:
        blockers.append("under data parallelism the gradient all-reduce runs outside the step")
    if precision.startswith("16"):
        blockers.append("fp16 loss scaling skips steps on a host-side check")
    compile_blocker = (
        "generation tasks decode by beam search with a growing key/value cache, which the "
        "compiled blocks would recompile for"
        if problem == "generation"
        else None
    )
    if requested == "auto":
        if blockers:
            return StepPlan(requested, "eager", f"auto: eager, since {blockers[0]}")
        return StepPlan(
            requested,
            "graphed",
            "auto: one CUDA device, so the whole step is captured as CUDA graphs "
            "(compilation is opt-in: trainer.step=compiled-graphed)",
        )
    if requested.endswith("graphed") and blockers:
        raise UserError(
            f"trainer.step={requested} cannot run here: {blockers[0]}; use eager or auto"
        )
    if requested.startswith("compiled") and compile_blocker:
        raise UserError(f"trainer.step={requested} cannot run here: {compile_blocker}")
    return StepPlan(requested, requested, "requested")
