"""Signals a scheduler or a user sends mid-training: SIGTERM, SIGINT, SIGUSR1 -> the record says
`interrupted`, the exit status is 128 + N, and the same command resumes (README, "Failure
behaviour")."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TINY_RUN, run_cli

TINY = TINY_RUN


# --- signals: record `interrupted`, exit 128 + N, the next submission resumes -----------------


def _interrupt_mid_training(tmp_path, signum: int):
    run_dir = tmp_path / "run"
    args = [*TINY, f"hydra.run.dir={run_dir}", f"records_root={tmp_path}"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr, run_dir, args


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGUSR1, 138)],
    ids=["SIGTERM", "SIGINT", "SIGUSR1"],
)
def test_a_signal_mid_training_exits_128_plus_n_and_the_rerun_resumes(tmp_path, signum, status):
    returncode, stderr, run_dir, args = _interrupt_mid_training(tmp_path, signum)
    assert returncode == status, stderr[-3000:]
    name = signal.Signals(signum).name
    assert f"interrupted by {name}" in stderr and "Traceback" not in stderr, stderr[-3000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "interrupted" and name in record["error"]
    assert (run_dir / "checkpoints" / "last.ckpt").exists()  # kept for the next submission
    assert not (run_dir / "run.lock").exists()  # released on this exit path too
    if signum != signal.SIGTERM:
        return  # one resume is enough: the path after the signal is the same
    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((run_dir / "record.json").read_text())
    assert resumed["status"] == "success" and resumed["resumed_from"].endswith("last.ckpt")
