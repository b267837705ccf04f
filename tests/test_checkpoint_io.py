"""Checkpoints: atomic writes with an integrity sidecar; a damaged one is set aside, not resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lora_exp.checkpoint_io import AtomicCheckpointIO, problem_with, save_atomic, sidecar
from lora_exp.resume import find_resume_checkpoint
from tests.conftest import ROOT, TINY_RUN, run_cli

CELL = "abc123"


def _state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return {"state_dict": {"w": torch.randn(64, 64)}, "epoch": seed}


def _run_dir(root, name: str, status: str = "running", cell: str = CELL):
    run_dir = root / name
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "record.json").write_text(json.dumps({"config_hash": cell, "status": status}))
    return run_dir


def test_save_is_atomic_and_the_sidecar_names_size_and_sha256(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_state(1), path)
    entry = json.loads(sidecar(path).read_text())
    assert entry["size"] == path.stat().st_size and entry["previous"] is None
    import hashlib

    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "last.ckpt.sha256.json"]
    assert oct(sidecar(path).stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert torch.load(path, weights_only=False)["epoch"] == 1
    assert problem_with(path) is None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_second_save_keeps_the_previous_digest(tmp_path):
    path = tmp_path / "last.ckpt"
    save_atomic(_state(1), path)
    first = json.loads(sidecar(path).read_text())
    old_bytes = path.read_bytes()
    save_atomic(_state(2), path)
    second = json.loads(sidecar(path).read_text())
    assert second["previous"] == {"size": first["size"], "sha256": first["sha256"]}
    # A crash after the sidecar's write but before the rename leaves the old file: still good.
    path.write_bytes(old_bytes)
    assert problem_with(path) is None


def test_truncated_checkpoint_is_named_by_its_size(tmp_path):
    path = tmp_path / "last.ckpt"
    save_atomic(_state(), path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    assert problem_with(path) == f"{size // 2} bytes where last.ckpt.sha256.json says {size}"


def test_same_size_different_bytes_is_caught_by_the_hash(tmp_path):
    path = tmp_path / "last.ckpt"
    save_atomic(_state(), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit inside a tensor: torch.load would not notice
    path.write_bytes(bytes(data))
    assert "differs from last.ckpt.sha256.json" in problem_with(path)


def test_without_a_sidecar_torch_load_decides(tmp_path):
    good, bad = tmp_path / "good.ckpt", tmp_path / "bad.ckpt"
    torch.save(_state(), good)
    bad.write_bytes(good.read_bytes()[:1000])
    assert problem_with(good) is None
    assert problem_with(bad).startswith("torch.load fails: ")


def test_a_corrupt_own_checkpoint_is_set_aside_and_a_good_sibling_used(tmp_path, caplog):
    own = _run_dir(tmp_path, "own")
    sibling = _run_dir(tmp_path, "sibling")
    save_atomic(_state(1), sibling / "checkpoints" / "last.ckpt")
    last = own / "checkpoints" / "last.ckpt"
    save_atomic(_state(2), last)
    last.write_bytes(last.read_bytes()[:-100])
    with caplog.at_level("WARNING", logger="lora_exp"):
        chosen = find_resume_checkpoint(own, [tmp_path, own], CELL)
    assert chosen == sibling / "checkpoints" / "last.ckpt"
    aside = list((own / "checkpoints").glob("last.ckpt.corrupt-*"))
    assert len(aside) == 1 and not last.exists() and not sidecar(last).exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(last) in warnings[0] and str(aside[0]) in warnings[0]


def test_with_only_corrupt_checkpoints_the_run_starts_from_scratch(tmp_path):
    own = _run_dir(tmp_path, "own")
    (own / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    assert find_resume_checkpoint(own, [tmp_path, own], CELL) is None
    assert len(list((own / "checkpoints").glob("last.ckpt.corrupt-*"))) == 1


def test_a_sibling_held_by_a_live_process_is_not_resumed(tmp_path):
    own = _run_dir(tmp_path, "own")
    sibling = _run_dir(tmp_path, "sibling")
    save_atomic(_state(1), sibling / "checkpoints" / "last.ckpt")
    import socket

    owner = {"host": socket.gethostname(), "pid": os.getppid(), "run_dir": str(sibling)}
    (sibling / "run.lock").write_text(json.dumps(owner))  # the parent process: alive
    assert find_resume_checkpoint(own, [tmp_path, own], CELL) is None


TINY = TINY_RUN


def _killed_after_first_checkpoint(run_dir, root):
    args = [*TINY, f"hydra.run.dir={run_dir}", f"records_root={root}"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists()
    return args, last


@pytest.mark.slow
def test_a_truncated_last_ckpt_restarts_the_run_with_one_warning(tmp_path):
    run_dir = tmp_path / "k"
    _, last = _killed_after_first_checkpoint(run_dir, tmp_path)
    with open(last, "r+b") as handle:
        handle.truncate(last.stat().st_size // 3)
    # A fresh directory under the same records_root would have picked it up too: same path.
    result = run_cli([*TINY, f"hydra.run.dir={tmp_path / 'fresh'}", f"records_root={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr  # Hydra's console log handler writes to stdout
    warnings = [line for line in output.splitlines() if "unreadable" in line]
    assert len(warnings) == 1 and str(last) in warnings[0], result.stderr[-3000:]
    record = json.loads((tmp_path / "fresh" / "record.json").read_text())
    assert record["status"] == "success" and record["resumed_from"] is None
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2]  # from scratch
    assert len(list(last.parent.glob("last.ckpt.corrupt-*"))) == 1


@pytest.mark.slow
def test_force_never_resumes(tmp_path):
    run_dir = tmp_path / "k"
    args, _ = _killed_after_first_checkpoint(run_dir, tmp_path)
    result = run_cli([*args, "force=true"])
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "success" and record["resumed_from"] is None
    assert record["resumed_from_epoch"] is None
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2]
