"""The run record: one JSON file per run, written atomically, the source of every table.

Schema (version 1) of `record.json`:

    schema_version   1
    status           running | success | failed | interrupted | dry_run
    error            message when failed or interrupted, else null
    run_dir          the run directory (Hydra's output directory)
    config           the fully resolved config (model, method, task, knobs)
    overrides        the command-line overrides, as typed
    config_hash      sha256 of the resolved config minus paths and loggers (same cell -> same hash)
    seed             the run's seed
    task             {name, version, fingerprint, split_sizes_full, split_sizes_used,
                      majority_test_acc, test_is_validation}
    params           {params/trainable, params/head, params/trainable_with_head, params/total};
                     dry runs add params/base, params/percent_of_base and, where the paper prints
                     a figure for the configuration, paper_count {paper, source, note}
    history          one entry per epoch: {epoch, step, val/<metric>..., train/loss_mean}
    best             {epoch, step, val/<metric>...} of the best validation epoch
    test             {test/<metric>...} of the best checkpoint
    primary_metric   e.g. "acc": the metric that selects the best epoch
    effective_batch_size   the global training batch (`batch_size`), whatever the device count
    distributed      {strategy, devices, num_nodes, world_size, per_device_batch_size,
                      effective_batch_size}
    examples_scored  {validation, test}: examples scored in the last pass, summed over ranks
    measurements     latency/ms, throughput/tokens_per_s, memory/peak_bytes, checkpoint/saved_bytes
                     (lora_exp/measure/run_metrics.py)
    step             {requested, mode, reason, buckets, graphs_captured, capture_s, fallback}: how
                     the training step executed (lora_exp/engine/)
    timing           {timing/<phase>: seconds} (lora_exp/measure/phases.py)
    table_metric     the metric of the task's column in the paper's table (CoLA mcc, STS-B pearson)
    init_from        the checkpoint the method's weights started from (MRPC/RTE/STS-B from MNLI)
    resumed_from, resumed_from_epoch   the checkpoint a resumed run continued from, its epoch
    reused_from      only in a skipped cell's copy: the successful record it repeats
    wall_time_s      seconds from start to the end of testing
    started_at, finished_at   UTC ISO-8601
    environment      {device, python, packages: {torch, transformers, ...}, git: {commit, dirty},
                      slurm: {job_id, array_job_id, array_task_id} or null, hostname}

Writes go to a temporary file in the same directory, are fsync'ed, then renamed over the target,
so a reader never sees half a record and a crash never leaves one claiming success. Secrets from
the environment (API keys, tokens, passwords) are replaced by "<redacted>" before anything is
written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
PACKAGES = (
    "torch",
    "transformers",
    "lightning",
    "hydra-core",
    "torchmetrics",
    "datasets",
    "peft",
    "wandb",
    "lora_exp",
)
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
REDACTED = "<redacted>"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (at least 6 characters long)."""
    environ = os.environ if environ is None else environ
    return sorted(
        {v for k, v in environ.items() if SECRET_NAME.search(k) and len(v) >= 6},
        key=len,
        reverse=True,
    )


def redact(obj, secrets: list[str] | None = None):
    """Replace every occurrence of a secret value in strings nested anywhere in `obj`."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, str):
        for secret in secrets:
            obj = obj.replace(secret, REDACTED)
        return obj
    if isinstance(obj, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v, secrets) for v in obj]
    return obj


def write_text_atomic(path: str | Path, text: str, keep_if_same: bool = False) -> Path:
    """Write `text` to `path` atomically: a temp file in the same folder, fsync, `os.replace`
    (atomic on POSIX), so a reader never sees half a file. `keep_if_same` leaves a file that
    already holds `text` untouched (generated reports: a regeneration that changes nothing
    changes no modification time); a record is always rewritten, with the current umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_if_same and path.is_file() and path.read_text() == text:
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; a record or a report is read by report tools and colleagues like
        # every other file of the run, so it gets what open() would give: 0666 minus the umask.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write `data` as JSON to `path` atomically (write_text_atomic), secrets redacted."""
    write_text_atomic(path, json.dumps(redact(data), indent=2, sort_keys=True, default=str) + "\n")


def current_umask() -> int:
    """The process's umask (Python has no getter: set and restore it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_aside(path: str | Path, what: str) -> Path:
    """Rename an unreadable file to `<name>.corrupt-<UTC stamp>` beside it, with one warning line.

    Kept, not deleted: the user may want to inspect or salvage it, and nothing reads it again.

    Args:
        path: the unreadable file.
        what: why it is set aside, for the warning (e.g. "not valid JSON").

    Returns:
        The new path.
    """
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    os.replace(path, aside)
    logging.getLogger("lora_exp").warning("%s is unreadable (%s): moved to %s", path, what, aside)
    return aside


def load_record(path: str | Path) -> dict:
    """Read one record, checking its schema version."""
    record = json.loads(Path(path).read_text())
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {record.get('schema_version')} != {SCHEMA_VERSION}"
        )
    return record


# Settings that change where or how a run is logged or launched, never its results.
NOT_IN_HASH = (
    "logger",
    "launcher",
    "force",
    "records_root",
    "run_dir",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.num_workers",
    "trainer.frozen_projections_bf16",  # exact: the same bf16 operands either way
    "trainer.compile",  # how the same computation runs (Inductor's rounding), not what it trains
    "trainer.step",  # eager, compiled or captured: the same step, run differently (engine/step.py)
    "trainer.buckets",  # padding to static shapes: the same loss (engine/buckets.py)
    "measure",  # what the run measures about itself, not what it trains
)


# The device layout never defines a cell: batch_size is the global batch and the samplers give N
# processes the steps of one (lora_exp/distributed.py), so a sweep resubmitted on another machine
# skips finished cells and resumes unfinished ones on the new device count. The layout is hashed
# as the one-device default, which keeps the hashes of records written before trainer=ddp/fsdp.
LAYOUT_KEYS = (
    "strategy",
    "num_nodes",
    "process_group_backend",
    "find_unused_parameters",
    "sharding_strategy",
)


def config_hash(config: dict) -> str:
    """Identity of a table cell: the resolved config minus `NOT_IN_HASH` (logging, launching)
    and the device layout (`LAYOUT_KEYS`, trainer.devices)."""
    relevant = json.loads(json.dumps(config, default=str))
    trainer = relevant.get("trainer")
    if isinstance(trainer, dict):
        for key in LAYOUT_KEYS:
            trainer.pop(key, None)
        if "devices" in trainer:
            trainer["devices"] = 1
    for dotted in NOT_IN_HASH:
        *parents, leaf = dotted.split(".")
        node = relevant
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_state(repo: Path | None = None) -> dict:
    """Commit and dirty flag of the code that ran (None outside a git checkout)."""
    repo = repo or Path(__file__).resolve().parent.parent

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def environment() -> dict:
    """Where and with what the run ran."""
    import torch

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    slurm = {
        key: os.environ.get(f"SLURM_{key.upper()}")
        for key in ("job_id", "array_job_id", "array_task_id")
    }
    return {
        "device": device,
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "packages": versions,
        "git": git_state(),
        "slurm": slurm if slurm["job_id"] else None,
    }
