"""A run whose pieces are built and ready to fit: what `fit.fit_and_test` needs, for any problem.

Classification and regression (`fit.build_run`) and generation (`fit_generation.py`) build their
data, model, LightningModule, Trainer and callbacks differently; once built, they are fitted,
tested and measured the same way, so the builders return this one shape and one function fits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from lora_exp.fit_result import RunSetup

if TYPE_CHECKING:
    from lora_exp.training_module import TrainingModule


@dataclass(frozen=True)
class BuiltRun:
    """The live pieces of one run, and what building them found out.

    Attributes:
        setup: what the record learns before training (`fit_result.RunSetup`).
        module: the problem's LightningModule (`training_module.TrainingModule`).
        data: the set-up LightningDataModule (its `timings` go into the record).
        trainer: the Lightning Trainer, loggers and callbacks attached.
        best: the ModelCheckpoint keeping the best validation epoch (tested, kept).
        measurements: the RunMeasurements callback (latency, memory, throughput).
        phases: the PhaseTimer callback (phase timings, checkpoint I/O).
        monitor: the validation metric that selects the best epoch, e.g. `val/acc`.
        mode: "max" or "min": whether a higher or lower `monitor` is better.
        task_cfg: the `task` config group (extra evaluation splits).
        run_dir: the run directory (checkpoints, predictions).
        model_load_s: seconds spent loading the backbone and preparing it for training.
    """

    setup: RunSetup
    module: TrainingModule
    data: Any
    trainer: Any
    best: Any
    measurements: Any
    phases: Any
    monitor: str
    mode: str
    task_cfg: DictConfig
    run_dir: Path
    model_load_s: float
