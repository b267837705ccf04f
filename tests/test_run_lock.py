"""Run-directory and configuration locks: one owner, named; stale locks taken over; released."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lora_exp import run_lock
from lora_exp.errors import UserError
from tests.conftest import ROOT, run_cli


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_lock_file_names_the_owner_and_is_released(tmp_path):
    run_dir = tmp_path / "run"
    with run_lock.hold(run_dir, tmp_path, "cell1", whole_cell=True):
        owner = json.loads((run_dir / "run.lock").read_text())
        assert owner["host"] == socket.gethostname() and owner["pid"] == os.getpid()
        assert owner["started_at"] and owner["config_hash"] == "cell1"
        assert json.loads((tmp_path / ".locks" / "cell1.lock").read_text()) == owner
    assert not (run_dir / "run.lock").exists()
    assert not (tmp_path / ".locks" / "cell1.lock").exists()


def test_released_when_the_run_raises(tmp_path):
    with pytest.raises(RuntimeError), run_lock.hold(tmp_path / "run", tmp_path, "c", True):
        raise RuntimeError("the run failed")
    assert not (tmp_path / "run" / "run.lock").exists()
    assert not (tmp_path / ".locks" / "c.lock").exists()


def test_a_live_owner_of_the_directory_is_named(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    owner = {"host": socket.gethostname(), "pid": os.getppid(), "started_at": "T0"}
    (run_dir / "run.lock").write_text(json.dumps({**owner, "run_dir": str(run_dir)}))
    with pytest.raises(UserError) as err, run_lock.hold(run_dir, tmp_path, "c", whole_cell=True):
        pass
    message = str(err.value)
    assert f"run directory {run_dir} is in use by pid {os.getppid()}" in message
    assert socket.gethostname() in message and "since T0" in message
    assert (run_dir / "run.lock").exists()  # not ours: left alone
    assert not (tmp_path / ".locks" / "c.lock").exists()


def test_another_directory_running_the_same_configuration_is_named(tmp_path):
    with run_lock.hold(tmp_path / "first", tmp_path, "cell9", whole_cell=True):
        second = run_lock.hold(tmp_path / "second", tmp_path, "cell9", whole_cell=True)
        with pytest.raises(UserError) as err, second:
            pass
        assert f"configuration cell9 (records_root={tmp_path}) is in use by pid" in str(err.value)
        assert str(tmp_path / "first") in str(err.value)
        assert not (tmp_path / "second" / "run.lock").exists()  # released on the way out
        with run_lock.hold(tmp_path / "forced", tmp_path, "cell9", whole_cell=False):
            pass  # force=true: the directory only


def test_a_stale_lock_is_taken_over_with_one_line(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = {"host": socket.gethostname(), "pid": _dead_pid(), "started_at": "T0"}
    (run_dir / "run.lock").write_text(json.dumps(dead))
    lock = run_lock.hold(run_dir, tmp_path, "c", whole_cell=False)
    with caplog.at_level("WARNING", logger="lora_exp"), lock:
        assert json.loads((run_dir / "run.lock").read_text())["pid"] == os.getpid()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "taking over the stale lock" in warnings[0]


def test_a_reused_pid_is_stale(tmp_path):
    me = run_lock.me(tmp_path, "c")
    assert me["pid_started"] is not None  # Linux /proc
    assert not run_lock.is_stale(me)
    assert run_lock.is_stale({**me, "pid_started": "1"})  # same pid, another process


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    path = tmp_path / "run" / "run.lock"
    path.parent.mkdir()
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started_at": "T0"}))
    lock = run_lock.hold(tmp_path / "run", tmp_path, "c", whole_cell=False)
    with pytest.raises(UserError, match=f"if that process is gone, delete {path}"), lock:
        pass


@pytest.mark.slow
def test_a_second_run_into_a_live_run_directory_exits_2_and_the_first_succeeds(tmp_path):
    tiny = [
        "model=tiny-bert",
        "budget.max_train_examples=256",
        "budget.max_eval_examples=64",
        "epochs=2",
        "trainer.enable_progress_bar=false",
        f"records_root={tmp_path}",
    ]
    run_dir = tmp_path / "shared"
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *tiny, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (run_dir / "run.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = run_cli([*tiny, f"hydra.run.dir={run_dir}"])
    other_dir = run_cli([*tiny, f"hydra.run.dir={tmp_path / 'other'}"])
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    for result, what in ((second, f"run directory {run_dir}"), (other_dir, "configuration")):
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"{what}" in result.stderr and f"pid {first.pid}" in result.stderr
        assert "Traceback" not in result.stderr
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("record.json")]
    assert [r["status"] for r in records] == ["success"]  # one run, one success record
    assert not list(tmp_path.rglob("*.lock"))
