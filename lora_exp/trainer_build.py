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


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """The CSV log always (a plain-file copy of every metric), plus wandb when chosen and it starts
    (wandb_start.py: the environment's WANDB_MODE respected; a failed start never fails the run)."""
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]  # run_dir/csv/metrics.csv
    if cfg.logger.name == "wandb":
        from lora_exp.wandb_start import start_wandb

        wandb_logger = start_wandb(cfg, run_dir)
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


def run_measurements(cfg: DictConfig):
    """The callback that measures latency, memory and throughput of every run (issue 5)."""
    from lora_exp.measure.run_metrics import RunMeasurements
    from lora_exp.models import get_family

    measure_cfg = cfg.get("measure") or {}
    return RunMeasurements(
        get_family(cfg.model.family),
        latency_batch_size=measure_cfg.get("latency_batch_size", 1),
        latency_seq_len=measure_cfg.get("latency_seq_len", 128),
        latency_trials=measure_cfg.get("latency_trials", 20),
    )


def build_trainer(cfg: DictConfig, run_dir: Path, precision: str, loggers, callbacks, **layout):
    """The Lightning Trainer of every training run; `layout` sets devices, nodes and strategy."""
    import lightning as L

    every = int(cfg.trainer.log_every_n_steps)
    if cfg.trainer.enable_progress_bar:
        # Lightning's bar redraws the terminal after every batch by default (set_postfix writes
        # at once); a captured step is done in ~3 ms, so the redraw would cost a fixed share of
        # each step. The loss it shows changes once per logging interval: redraw then.
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=every)]
    return L.Trainer(
        max_epochs=int(cfg.epochs),
        accelerator=cfg.trainer.accelerator,
        precision=precision,
        gradient_clip_val=None,  # manual optimization: TrainStep clips (engine/step.py)
        deterministic=bool(cfg.trainer.deterministic),
        log_every_n_steps=every,
        enable_progress_bar=bool(cfg.trainer.enable_progress_bar),
        num_sanity_val_steps=0,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        enable_model_summary=False,
        plugins=trainer_plugins(),
        **layout,
    )
