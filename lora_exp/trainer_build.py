"""The Lightning pieces every training run shares: Trainer, loggers, checkpoints, measurements.

Both fit paths (`fit.py` for classification and regression, `fit_generation.py` for generation)
build their Trainer from these, so the two keep the same checkpoints, the same metric streams and
the same plugins; they live below both rather than in either, so neither imports the other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig


def quiet_library_logging() -> None:
    """Route Lightning's messages through Hydra's handlers once (it adds its own handler)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def trainer_plugins() -> list:
    """Atomic checkpoints with an integrity sidecar; under SLURM, no Lightning requeue.

    AtomicCheckpointIO (checkpoint_io.py): a checkpoint is never half-written, and one that is
    damaged later is detected before a resume. Requeueing is the launcher's job (submitit, or
    slurm/array.sbatch's trap); the requeued job resumes from checkpoints/last.ckpt (resume.py).
    Two competing mechanisms would requeue twice, so Lightning's own is switched off.
    """
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from lora_exp.checkpoint_io import AtomicCheckpointIO

    slurm = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    return [AtomicCheckpointIO(), *slurm]


def build_loggers(logger_cfg: DictConfig, run_dir: Path, job_type: str) -> list:
    """The CSV log always (a plain-file copy of every metric), plus wandb when chosen and it starts
    (wandb_start.py: the environment's WANDB_MODE respected; a failed start never fails the run).

    Args:
        logger_cfg: the `logger` config group (name; wandb's mode, project, entity, group, tags).
        run_dir: the run directory (csv/ and wandb/ go there).
        job_type: what wandb groups runs by within a project (the method's name).
    """
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]  # run_dir/csv/metrics.csv
    if logger_cfg.name == "wandb":
        from lora_exp.wandb_start import start_wandb

        wandb_logger = start_wandb(logger_cfg, run_dir, job_type)
        if wandb_logger is not None:
            loggers.append(wandb_logger)
    return loggers


def checkpoint_callbacks(run_dir: Path, monitor: str, mode: str) -> tuple:
    """(best, last): the checkpoints every training run keeps, for the test and for resuming.

    best.ckpt holds what the method saves, at the best validation epoch (tested, kept); last.ckpt
    adds optimizer, scheduler, loop and RNG state, every epoch. (save_last with save_top_k=0
    writes only when training ends in Lightning 2.6: not resumable.)
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    directory = str(run_dir / "checkpoints")
    best = ModelCheckpoint(
        dirpath=directory,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_weights_only=True,
    )
    last = ModelCheckpoint(
        dirpath=directory, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    return best, last


def run_measurements(measure_cfg: DictConfig | None, family):
    """The callback that measures latency, memory and throughput of every run (issue 5).

    Args:
        measure_cfg: the `measure` config group (latency batch, length, trials), or None.
        family: the model family (`models.Family`): which modules the latency probe times.
    """
    from lora_exp.measure.run_metrics import RunMeasurements

    measure_cfg = measure_cfg or {}
    return RunMeasurements(
        family,
        latency_batch_size=measure_cfg.get("latency_batch_size", 1),
        latency_seq_len=measure_cfg.get("latency_seq_len", 128),
        latency_trials=measure_cfg.get("latency_trials", 20),
    )


def build_trainer(trainer_cfg: DictConfig, epochs: int, run_dir: Path, precision: str, loggers,
                  callbacks, **layout):  # fmt: skip
    """The Lightning Trainer of every training run; `layout` sets devices, nodes and strategy.

    Args:
        trainer_cfg: the `trainer` config group (accelerator, logging, progress bar, determinism).
        epochs: the top-level `epochs`.
    """
    import lightning as L

    every = int(trainer_cfg.log_every_n_steps)
    if trainer_cfg.enable_progress_bar:
        # Lightning's bar redraws the terminal after every batch by default (set_postfix writes
        # at once); a captured step is done in ~3 ms, so the redraw would cost a fixed share of
        # each step. The loss it shows changes once per logging interval: redraw then.
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=every)]
    return L.Trainer(
        max_epochs=int(epochs),
        accelerator=trainer_cfg.accelerator,
        precision=precision,
        gradient_clip_val=None,  # manual optimization: TrainStep clips (engine/step.py)
        deterministic=bool(trainer_cfg.deterministic),
        log_every_n_steps=every,
        enable_progress_bar=bool(trainer_cfg.enable_progress_bar),
        num_sanity_val_steps=0,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        enable_model_summary=False,
        plugins=trainer_plugins(),
        **layout,
    )
