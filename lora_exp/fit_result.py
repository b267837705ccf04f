"""What building and fitting a run return to `run_cell.py`, which alone turns them into the record.

Each layer below `run_cell.py` returns what it found instead of writing into the run record: the
set-up (`RunSetup`: data, parameter counts, the planned training step) before training starts,
and the outcome (`FitResult`: the epochs, the best one, the test, measurements and timings) after
testing. `run_cell.py` records the set-up before fitting, so a run that fails or is interrupted
while training still has its data description and parameter counts on record, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunSetup:
    """What a built run knows before its first step.

    Attributes:
        import_s: seconds spent importing the libraries the build needed (timing/imports).
        task_info: the data module's description (fingerprint, split sizes, majority baseline),
            merged into the record's `task`.
        params: the parameter counts (`measure/params.py`), the record's `params`.
        step: the planned training step {requested, mode, reason, buckets} (`run_plan.py`).
        init_from: the checkpoint the method's weights started from (App. D), if any.
    """

    import_s: float
    task_info: dict
    params: dict
    step: dict
    init_from: str | None = None


@dataclass(frozen=True)
class FitResult:
    """What fitting and testing a run produced.

    Attributes:
        history: one entry per validation epoch {epoch, step, val/<metric>..., train/loss_mean}.
        resumed_from_epoch: the epoch of the last.ckpt training resumed from, else None.
        step: how the step ran {requested, mode, reason, fallback, graphs_captured, capture_s}.
        best: the history entry of the best validation epoch (None if there was none).
        test: {test/<metric>: value} of the best checkpoint, extra splits included.
        measurements: latency, throughput, memory and checkpoint size (`measure/run_metrics.py`).
        timing: {timing/<phase>: seconds} of data, model load, capture, training and checkpoints.
        task_info: what testing learned about the task's scoring (E2E: the PTB tokenizer used).
        extras: the problem's own top-level record fields (`examples_scored`, `predictions`).
    """

    history: list[dict]
    resumed_from_epoch: int | None
    step: dict
    best: dict | None
    test: dict[str, float]
    measurements: dict
    timing: dict
    task_info: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
