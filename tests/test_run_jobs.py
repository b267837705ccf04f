"""scripts/run_jobs.sh and run_manifest.sh (the local process pool the GPU sweeps use), with a
stand-in python that records each run.py call instead of training."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE = """#!/usr/bin/env bash
if [ "$1" = run.py ]; then shift; echo "$*" >> "$CALLS"; exit ${FAKE_RC:-0}; fi
exec "$REAL_PYTHON" "$@"
"""


def pool_env(tmp_path, **extra):
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    env = {**os.environ, "LORA_EXP_PYTHON": str(fake), "REAL_PYTHON": sys.executable}
    return {**env, "CALLS": str(tmp_path / "calls.txt"), **extra}


def test_a_manifest_runs_each_line_in_its_numbered_directory(tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("rank=1 'targets=[q,v]' seed=0\nrank=4 'targets=[q,v]' seed=1\n")
    out = subprocess.run(
        ["bash", "scripts/run_manifest.sh", str(manifest), "2", str(tmp_path / "runs"), "x=1"],
        cwd=ROOT, env=pool_env(tmp_path, FIRST_NUMBER="7"), capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    status = sorted(out.stdout.splitlines())
    assert status == [
        f"ok   {tmp_path}/runs/007_rank-1_targets-_q+v_seed-0",
        f"ok   {tmp_path}/runs/008_rank-4_targets-_q+v_seed-1",
    ]
    calls = sorted((tmp_path / "calls.txt").read_text().splitlines())
    # the quoted override stays one argument; the extra overrides and the run directory follow
    assert calls[0].startswith("rank=1 targets=[q,v] seed=0 x=1 hydra.mode=RUN hydra.run.dir=")
    assert calls[0].endswith(
        "/runs/007_rank-1_targets-_q+v_seed-0 trainer.enable_progress_bar=false"
    )


def test_jobs_of_several_roots_share_one_pool_and_failures_are_named(tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text(f"{tmp_path}/a/runs\t1\tseed=0\n{tmp_path}/b/runs\t3\tseed=1\n")
    out = subprocess.run(
        ["bash", "scripts/run_jobs.sh", str(jobs), "2"],
        cwd=ROOT, env=pool_env(tmp_path, FAKE_RC="1"), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert sorted(out.stdout.splitlines()) == [
        f"FAIL {tmp_path}/a/runs/001_seed-0 (see {tmp_path}/a/runs/001_seed-0.out)",
        f"FAIL {tmp_path}/b/runs/003_seed-1 (see {tmp_path}/b/runs/003_seed-1.out)",
    ]


def test_no_job_starts_after_the_launch_deadline(tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text(f"{tmp_path}/runs\t1\tseed=0\n")
    past = str(int(time.time()) - 1)
    out = subprocess.run(
        ["bash", "scripts/run_jobs.sh", str(jobs), "1"],
        cwd=ROOT, env=pool_env(tmp_path, LAUNCH_UNTIL=past), capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert out.stdout == f"SKIP {tmp_path}/runs/001_seed-0 (launch deadline passed)\n"
    assert not (tmp_path / "calls.txt").exists()


def test_run_done_finds_a_successful_run_under_any_number(tmp_path):
    run = tmp_path / "runs" / "012_rank-1_seed-0"
    run.mkdir(parents=True)
    (run / "record.json").write_text('{"status": "success"}')
    other = tmp_path / "runs" / "014_lr-0.001_rank-4_seed-0"  # another cell ending alike
    other.mkdir(parents=True)
    (other / "record.json").write_text('{"status": "success"}')
    failed = tmp_path / "runs" / "013_rank-2_seed-0"
    failed.mkdir()
    (failed / "record.json").write_text('{"status": "failed"}')

    def done(line):
        script = f'source scripts/run_name.sh; run_done "{tmp_path}/runs" "{line}"'
        return subprocess.run(["bash", "-c", script], cwd=ROOT).returncode == 0

    assert done("rank=1 seed=0")
    assert not done("rank=2 seed=0") and not done("rank=1 seed=1")
    assert done("lr=0.001 rank=4 seed=0") and not done("rank=4 seed=0")
