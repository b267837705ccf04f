"""Checkpoints written atomically with an integrity sidecar, and the check before resuming.

A run resumes from `checkpoints/last.ckpt` (resume.py). A file cut short by a full disk, a killed
writer or a bad copy used to make every rerun of the configuration crash in `torch.load`, until the
user deleted it by hand. So:

* `AtomicCheckpointIO` (a Lightning `TorchCheckpointIO`, passed to the Trainer as a plugin) writes
  every checkpoint to a temporary file in the same directory while hashing it, fsyncs it and renames
  it over the target, as records.py writes records: a reader sees the old file or the new one,
  never half of one. Beside it, `<name>.sha256.json` holds `{size, sha256, previous}`: the digest
  of the new file and of the one it replaces, written (atomically) before the rename, so a crash
  between the two writes leaves a file that still matches one of them.
* `problem_with(path)` says why a checkpoint cannot be resumed from: its size or sha256 differs from
  both entries of the sidecar, or, with no readable sidecar (a checkpoint from before this module),
  `torch.load` fails. `resume.find_resume_checkpoint` moves such a file aside
  (`last.ckpt.corrupt-<stamp>`, one warning line) and goes on to the next candidate, or none: the
  run restarts from scratch instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lightning.pytorch.plugins.io import TorchCheckpointIO

SIDECAR_SUFFIX = ".sha256.json"
CHUNK = 1 << 24  # 16 MiB reads when hashing an existing file


def sidecar(path: str | Path) -> Path:
    """`last.ckpt` -> `last.ckpt.sha256.json`."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


class _HashingWriter:
    """A binary file wrapper that hashes and counts what `torch.save` writes through it."""

    def __init__(self, handle) -> None:
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (the new name survives a power cut)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_sidecar(path: Path) -> dict | None:
    try:
        entry = json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not {"size", "sha256"} <= entry.keys():
        return None
    return entry


def save_atomic(checkpoint: dict, path: str | Path) -> None:
    """`torch.save` to a temporary file, fsync, sidecar, rename over `path`."""
    import torch

    from lora_exp.records import write_json_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            writer = _HashingWriter(handle)
            torch.save(checkpoint, writer)
            handle.flush()
            os.fsync(handle.fileno())
        old = _read_sidecar(path) if path.exists() else None
        previous = {"size": old["size"], "sha256": old["sha256"]} if old else None
        entry = {"size": writer.size, "sha256": writer.digest.hexdigest(), "previous": previous}
        write_json_atomic(sidecar(path), entry)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def problem_with(path: str | Path) -> str | None:
    """Why the checkpoint at `path` cannot be resumed from, or None if it is intact."""
    path = Path(path)
    entry = _read_sidecar(path)
    if entry is None:
        return _load_problem(path)
    size = path.stat().st_size
    known = [e for e in (entry, entry.get("previous")) if isinstance(e, dict)]
    if size not in [e.get("size") for e in known]:
        return f"{size} bytes where {sidecar(path).name} says {entry['size']}"
    actual = file_digest(path)
    if actual not in [e.get("sha256") for e in known]:
        return f"sha256 {actual[:12]}... differs from {sidecar(path).name}"
    return None


def _load_problem(path: Path) -> str | None:
    """Without a sidecar, the file is good if torch can read it (memory-mapped: no copy)."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors, OSError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"torch.load fails: {type(exc).__name__}: {first}"[:300]
    return None


def discard(path: str | Path) -> None:
    """Remove a checkpoint and its sidecar (a finished run keeps nothing to resume from)."""
    Path(path).unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, with atomic writes and an integrity sidecar."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_atomic(checkpoint, path)

    def remove_checkpoint(self, path) -> None:
        discard(path)
