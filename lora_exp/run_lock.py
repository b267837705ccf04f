"""One process per run directory, and per configuration: lock files with the owner's identity.

Two runs writing into one directory used to both die in the CSV logger, losing both; two runs of
one configuration in two directories duplicated the work, and the second resumed from the first's
checkpoint while it was still being written. Now a run holds two locks while it trains:

* `<run dir>/run.lock`: the directory is this process's;
* `<records_root>/.locks/<config_hash>.lock`: the configuration (table cell) is, so a second
  submission of the same cell, in any directory under the same `records_root`, neither trains it
  again nor resumes from the live checkpoint of the first.

A lock file is created with `O_CREAT | O_EXCL` (atomic, also on NFS v3+) and holds JSON
`{host, pid, pid_started, started_at, run_dir, config_hash}`. A second process that finds it
**exits with status 2** and a message naming the owner, rather than waiting: a scheduler or a
sweep resubmission should not sit on a slot for hours, and the message says when to come back
(see README, "Failure behaviour"). A lock is *stale* when its owner is on this host and its pid
is dead, or reused by a later process (`pid_started` differs); a stale lock is taken over with one
log line. A lock from another host cannot be checked from here; the message names it and the file
to delete if that host's process is gone. Locks are released on every exit path the process
survives (`with` block); after `kill -9` or a power cut they are stale and taken over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from lora_exp.errors import UserError
from lora_exp.records import utc_now

log = logging.getLogger("lora_exp")
RUN_LOCK = "run.lock"
CELL_LOCKS = ".locks"


def process_start(pid: int) -> str | None:
    """When `pid` started, in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def read_owner(path: Path) -> dict | None:
    """The owner recorded in a lock file; {} for an unreadable (half-written) one."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def is_stale(owner: dict) -> bool:
    """True when the owner is provably gone: on this host, pid dead or reused."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    if not pid_alive(owner["pid"]):
        return True
    started = owner.get("pid_started")
    return started is not None and process_start(owner["pid"]) not in (None, started)


def describe(owner: dict, path: Path) -> str:
    if not owner:
        return f"an unreadable lock {path}"
    text = (
        f"pid {owner.get('pid')} on host {owner.get('host')} (since {owner.get('started_at')}, "
        f"in {owner.get('run_dir')})"
    )
    if owner.get("host") != socket.gethostname():
        text += f"; if that process is gone, delete {path}"
    return text


def _create(path: Path, owner: dict) -> bool:
    """Create the lock file atomically; False if it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(owner, handle)
    return True


def acquire(path: Path, owner: dict, what: str) -> None:
    """Take the lock at `path` or raise `UserError` naming its live owner.

    Args:
        path: the lock file.
        owner: this process's identity (written into the file).
        what: what the lock protects, for the message ("run directory X").
    """
    for _ in range(3):  # a stale lock taken over by another process meanwhile: look again
        if _create(path, owner):
            return
        current = read_owner(path)
        if current is None:
            continue  # released between our two looks
        if current and not is_stale(current):
            raise UserError(
                f"{what} is in use by {describe(current, path)}; wait for it to end (its record "
                "then says success, or interrupted and resumable), or choose another "
                "hydra.run.dir / records_root"
            )
        log.warning("taking over the stale lock %s (%s)", path, describe(current, path))
        path.unlink(missing_ok=True)
    raise UserError(f"could not take the lock {path}: other processes keep taking it")


def release(path: Path, owner: dict) -> None:
    """Remove the lock if it is still ours (never another process's)."""
    if read_owner(path) == owner:
        path.unlink(missing_ok=True)


def me(run_dir: Path, cell: str) -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_started": process_start(pid),
        "started_at": utc_now(),
        "run_dir": str(run_dir),
        "config_hash": cell,
    }


def cell_lock_path(records_root: Path, cell: str) -> Path:
    return records_root / CELL_LOCKS / f"{cell}.lock"


@contextlib.contextmanager
def hold(run_dir: Path, records_root: Path, cell: str, whole_cell: bool) -> Iterator[None]:
    """Hold the run directory's lock and, when `whole_cell`, the configuration's.

    Args:
        run_dir: this run's directory.
        records_root: where runs of the same configuration are looked up.
        cell: the configuration's `config_hash`.
        whole_cell: False for `force=true`, which asks for another run of a cell on purpose.
    """
    owner = me(run_dir, cell)
    held = []
    try:
        acquire(run_dir / RUN_LOCK, owner, f"run directory {run_dir}")
        held.append(run_dir / RUN_LOCK)
        if whole_cell:
            path = cell_lock_path(records_root, cell)
            acquire(path, owner, f"configuration {cell} (records_root={records_root})")
            held.append(path)
        yield
    finally:
        for path in reversed(held):
            release(path, owner)
