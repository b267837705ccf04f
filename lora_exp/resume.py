"""Idempotent and resumable runs: find a finished cell, or the checkpoint to resume from.

A *cell* is one configuration (one table cell for one seed), identified by `records.config_hash`.
Before training, `main` looks under `records_root` (and in its own run directory) for a record of
the same cell:

* status success  -> the run is skipped with a log line (a resubmitted sweep runs only the missing
  cells); `force=true` trains again.
* not finished, with `checkpoints/last.ckpt` -> training resumes from that checkpoint. The own run
  directory comes first: a SLURM job requeued after a time limit or preemption keeps its directory
  (submitit re-runs the same job), so this is the one resume mechanism, for crashes and requeues.
  A checkpoint that fails its integrity check (checkpoint_io.py) is moved aside, never resumed;
  `force=true` never resumes (run_cell.py).

Checkpoints are written at the end of every epoch; together with the epoch-seeded sampler and the
saved RNG state, a resumed run ends with the same metrics as an uninterrupted one (CPU, fixed seed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RECORD_NAME = "record.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def _records(root: Path):
    if not root.exists():
        return
    for path in sorted(root.rglob(RECORD_NAME)):
        try:
            yield path, json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a record being replaced right now, or not ours


def find_success(roots: list[Path], cell: str, own: Path | None = None) -> Path | None:
    """Path of a successful record of `cell` under any of `roots`, else None.

    The run's own record (`own`) wins: a resubmitted cell keeps the record it trained. Otherwise an
    original record (one that trained) is preferred to a copy (`reused_from`) of one, so copies
    always point at the run that trained, never at another copy: a cell shared by two sweeps must
    not end up as two copies pointing at each other, with the original overwritten.
    """
    if own is not None and own.exists():
        try:
            record = json.loads(own.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if record.get("config_hash") == cell and record.get("status") == "success":
            return own
    copy = None
    for root in roots:
        for path, record in _records(root):
            if record.get("config_hash") == cell and record.get("status") == "success":
                if not record.get("reused_from"):
                    return path
                copy = copy or path
    if copy is not None:  # only copies here: follow one to the run it names, if that still exists
        original = Path(json.loads(copy.read_text())["reused_from"])
        return original if original.exists() else copy
    return None


def find_resume_checkpoint(run_dir: Path, roots: list[Path], cell: str) -> Path | None:
    """The checkpoint to resume `cell` from: the own run directory's, else the newest elsewhere.

    Every candidate is checked first (checkpoint_io.problem_with): one that cannot be read is moved
    aside with one warning line and the next candidate is tried, so a truncated `last.ckpt` costs
    the epochs since the previous good checkpoint (or a restart from scratch), never the run.
    Another directory's checkpoint is skipped while a process still holds that directory's lock
    (a `force=true` run writing it right now).
    """
    own = run_dir / LAST_CHECKPOINT
    candidates = []
    for root in roots:
        for path, record in _records(root):
            last = path.parent / LAST_CHECKPOINT
            if (
                record.get("config_hash") == cell
                and record.get("status") != "success"
                and last.exists()
                and last.resolve() != own.resolve()
                and not _held_by_another_process(path.parent)
            ):
                candidates.append(last)
    candidates.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in [own, *candidates] if own.exists() else candidates:
        if _usable(candidate):
            return candidate
    return None


def _held_by_another_process(run_dir: Path) -> bool:
    from lora_exp.run_lock import RUN_LOCK, is_stale, read_owner

    owner = read_owner(run_dir / RUN_LOCK)
    return owner is not None and owner.get("pid") != os.getpid() and not is_stale(owner)


def _usable(checkpoint: Path) -> bool:
    """Whether `checkpoint` is intact; if not, it is moved aside (and its sidecar removed)."""
    from lora_exp.checkpoint_io import problem_with, sidecar
    from lora_exp.records import set_aside

    problem = problem_with(checkpoint)
    if problem is None:
        return True
    set_aside(checkpoint, f"{problem}; not resuming from it")
    sidecar(checkpoint).unlink(missing_ok=True)  # it describes the file that was meant to be there
    return False
