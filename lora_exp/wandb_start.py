"""Starting the wandb mirror of a run: the user's mode respected, a failure never costs the run.

wandb is a mirror of the metric stream (the CSV log and the run record hold every number), so:

* the mode: `logger.mode` when set (online | offline | disabled); with `auto` (the default) the
  environment's `WANDB_MODE` when set, else online only with credentials, so a run never stops
  at a login prompt. The mode is passed to `wandb.init`; `os.environ` is left as the user set it
  (it used to be overwritten, which sent `WANDB_MODE=offline` runs online when a key was set).
* the start: `wandb.init` runs here, before training, not at the first logged metric. If it fails
  (a rejected key, no network, a full disk), the run goes on offline, or with the CSV log only if
  offline fails too, with one warning line that says which and why.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from lora_exp.records import redact

log = logging.getLogger("lora_exp")


def wandb_mode(requested: str, environ: dict | None = None) -> str:
    """The mode wandb runs in: `requested`, or for `auto` the environment's, else by credentials."""
    environ = os.environ if environ is None else environ
    if requested != "auto":
        return requested
    if environ.get("WANDB_MODE"):
        return "offline" if environ["WANDB_MODE"] == "dryrun" else environ["WANDB_MODE"]
    if environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def _why(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}")[:200]


def start_wandb(logger_cfg: DictConfig, run_dir: Path, job_type: str):
    """A started `WandbLogger`, offline if online fails, or None (CSV only) if both fail.

    Args:
        logger_cfg: the `logger` config group (mode, project, entity, group, tags).
        run_dir: where wandb writes its run directory.
        job_type: wandb's job type (the method's name).
    """
    from lightning.pytorch.loggers import WandbLogger

    mode = wandb_mode(logger_cfg.mode)
    attempts = [mode, "offline"] if mode == "online" else [mode]
    failures = []
    for attempt in attempts:
        logger = WandbLogger(
            project=logger_cfg.project,
            entity=logger_cfg.entity,
            group=logger_cfg.group,
            tags=redact(list(logger_cfg.tags)),
            save_dir=str(run_dir),
            job_type=job_type,
            mode=attempt,  # to wandb.init: above the environment, which stays as it was
        )
        try:
            logger.experiment  # noqa: B018  (wandb.init now, so a failure is caught here)
        except Exception as exc:  # wandb raises its own CommError, UsageError, ... and OSError
            failures.append(f"{attempt}: {_why(exc)}")
            _finish_quietly()
            continue
        if failures:
            log.warning(
                "wandb could not start %s; logging to wandb %s instead (sync later with "
                "`wandb sync %s/wandb/offline-run-*`)",
                "; ".join(failures),
                attempt,
                run_dir,
            )
        return logger
    log.warning(
        "wandb could not start (%s); this run logs to %s/csv/metrics.csv and its record only",
        "; ".join(failures),
        run_dir,
    )
    return None


def _finish_quietly() -> None:
    """End a half-started wandb run so the next attempt starts clean."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception:  # cleaning up after a failure must not fail the run
        pass
