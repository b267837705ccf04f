"""Sweeps on a real one-node Slurm cluster (slurm/start.sh): arrays, failures, skip, requeue.

The session fixture uses the local cluster in $LOCAL_SLURM_DIR (default /tmp/lora-exp-slurm),
starting it with slurm/start.sh when it is not running (this needs root or passwordless sudo),
and stops it at the end if it started it. Without a cluster the tests are skipped with the reason;
LORA_EXP_REQUIRE_SLURM=1 (CI) turns that skip into a failure. Deselect with `-m "not slurm"`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slurm

SLURM_DIR = Path(os.environ.get("LOCAL_SLURM_DIR", "/tmp/lora-exp-slurm"))
# Tiny runs: random tiny BERT, 64 BBC News articles (the fastest embedded task to load).
TINY = [
    "model=tiny-bert",
    "method=lora",
    "task=bbc_news",
    "task.max_seq_len=128",  # tiny-bert has 130 positions
    "budget.max_train_examples=64",
    "budget.max_eval_examples=32",
    "epochs=1",
    "trainer.enable_progress_bar=false",
]
# conf/launcher/slurm.yaml sized for this cluster (no GPUs, 1 CPU per run); ~local ignores a
# developer's conf/local/slurm.yaml (site partition, account, module loads).
ON_LOCAL_CLUSTER = ["launcher=slurm_localhost", "~local"]


def _unavailable(reason: str):
    if os.environ.get("LORA_EXP_REQUIRE_SLURM") == "1":
        pytest.fail(f"LORA_EXP_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def _ping(conf: Path) -> bool:
    if not conf.exists() or shutil.which("scontrol") is None:
        return False
    env = {**os.environ, "SLURM_CONF": str(conf)}
    out = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and " is UP" in out.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of the running local cluster (started here, and stopped after, if needed)."""
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
        import submitit  # noqa: F401
    except ImportError:
        _unavailable("hydra-submitit-launcher is not installed (pip install -e '.[slurm]')")
    conf = SLURM_DIR / "etc" / "slurm.conf"
    started = False
    if not _ping(conf):
        if os.environ.get("LORA_EXP_SLURM_AUTOSTART", "1") == "0":
            _unavailable(f"no Slurm controller answers for {conf} (LORA_EXP_SLURM_AUTOSTART=0)")
        tic = time.time()
        out = subprocess.run(
            ["bash", str(ROOT / "slurm" / "start.sh")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0 or not _ping(conf):
            # Leave no half-started daemons behind.
            subprocess.run(
                ["bash", str(ROOT / "slurm" / "stop.sh")], capture_output=True, timeout=120
            )
            tail = (out.stdout + out.stderr).strip().splitlines()[-15:]
            _unavailable("slurm/start.sh could not start a cluster:\n" + "\n".join(tail))
        started = True
        print(f"\nlocal Slurm cluster started in {time.time() - tic:.1f}s", file=sys.stderr)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        yield conf
    if started:
        subprocess.run(["bash", str(ROOT / "slurm" / "stop.sh")], capture_output=True, timeout=120)


def _sweep(args: list[str], sweep_dir: Path, root: Path, timeout: float = 420):
    """`python run.py -m <args>` on the cluster; records are looked up under `root`."""
    return run_cli(
        [
            "-m",
            *TINY,
            *ON_LOCAL_CLUSTER,
            *args,
            f"hydra.sweep.dir={sweep_dir}",
            f"records_root={root}",
        ],
        timeout=timeout,
    )


def _records(sweep_dir: Path) -> dict[int, dict]:
    """Job number -> parsed record.json (the sweep's subdirs are the job numbers)."""
    found = {}
    for path in sweep_dir.glob("*/record.json"):
        found[int(path.parent.name)] = json.loads(path.read_text())
    return found


def _slurm(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout


def _explain(result) -> str:
    out, err = result.stdout[-3000:], result.stderr[-3000:]
    return f"rc={result.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


# --- a 2 x 2 sweep (rank x seed): records, concurrency, resubmission -----------------------------


@pytest.fixture(scope="module")
def sweep_2x2(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep2x2")
    tic = time.time()
    result = _sweep(["rank=1,2", "seed=0,1"], root / "first", root)
    return root, result, time.time() - tic


def test_a_2x2_sweep_ends_with_4_successful_records(sweep_2x2):
    root, result, _ = sweep_2x2
    assert result.returncode == 0, _explain(result)
    records = _records(root / "first")
    assert sorted(records) == [0, 1, 2, 3]
    assert all(r["status"] == "success" for r in records.values())
    cells = {(r["config"]["rank"], r["config"]["seed"]) for r in records.values()}
    assert cells == {(1, 0), (1, 1), (2, 0), (2, 1)}
    for record in records.values():
        assert record["test"]["test/acc"] >= 0.0
        assert record["params"]["params/trainable"] > 0


def test_concurrent_jobs_write_all_records_valid_and_apart(sweep_2x2):
    root, _, _ = sweep_2x2
    records = _records(root / "first")
    assert len(records) == 4
    # Four array tasks of one job, each with its own directory, record and identity.
    slurm = [r["environment"]["slurm"] for r in records.values()]
    assert len({s["array_job_id"] for s in slurm}) == 1
    assert sorted(int(s["array_task_id"]) for s in slurm) == [0, 1, 2, 3]
    assert len({r["run_dir"] for r in records.values()}) == 4
    assert len({r["config_hash"] for r in records.values()}) == 4
    # They ran at the same time (2 CPUs, 1 CPU per job), so their writes did overlap.
    spans = sorted((r["started_at"], r["finished_at"]) for r in records.values())
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), spans
    # Atomic writes leave no temporary files behind.
    assert not list((root / "first").glob("*/.record.json.*"))


def test_resubmitting_a_finished_sweep_runs_nothing(sweep_2x2):
    root, _, _ = sweep_2x2
    before = {p: p.stat().st_mtime_ns for p in (root / "first").glob("*/record.json")}
    again = root / "again"
    result = _sweep(["rank=1,2", "seed=0,1"], again, root)
    assert result.returncode == 0, _explain(result)
    assert not list(again.glob("*/checkpoints")), "a finished cell ran again"
    # Each skipped cell's directory holds a copy of the finished record, saying which one.
    copies = [json.loads(p.read_text()) for p in again.glob("*/record.json")]
    assert len(copies) == 4
    assert {Path(c["reused_from"]) for c in copies} == set(before)
    logs = [p.read_text() for p in again.glob(".submitit/*/*_log.out")]
    assert len(logs) == 4 and all("already done" in log for log in logs)
    assert {p: p.stat().st_mtime_ns for p in before} == before


# --- the documented command: launcher=slurm with a site file ------------------------------------

# conf/local/slurm.yaml as a user of this cluster writes it (slurm/README.md, section 5). The test
# keeps it in a temporary search path and selects it with local=..., so a developer's own
# conf/local/slurm.yaml is neither read nor touched.
SITE_FILE = """# @package _global_
hydra:
  launcher:
    partition: debug
    gpus_per_node: null
    cpus_per_task: 1
    mem_gb: 2
    timeout_min: 60
"""


def test_embedded_rank_with_launcher_slurm_and_a_site_file_then_resubmitted(
    slurm_cluster, tmp_path
):
    """`python run.py -m sweep=embedded_rank launcher=slurm` (README) on MiniLM, shrunk to two
    cells of 64 tweets; the same command again runs nothing."""
    (tmp_path / "conf" / "local").mkdir(parents=True)
    (tmp_path / "conf" / "local" / "pytest_localhost.yaml").write_text(SITE_FILE)
    args = [
        "-m",
        "sweep=embedded_rank",
        "launcher=slurm",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "local=pytest_localhost",
        *("budget=quick", "budget.max_train_examples=64", "budget.max_eval_examples=32"),
        *("epochs=1", "rank=1,2", "seed=0", "targets=[q]", "trainer.enable_progress_bar=false"),
        f"records_root={tmp_path}",
    ]
    first = run_cli([*args, f"hydra.sweep.dir={tmp_path / 'first'}"], timeout=420)
    assert first.returncode == 0, _explain(first)
    records = {
        p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("first/*/record.json")
    }
    assert sorted(records) == ["0_r1_s0", "1_r2_s0"]  # the sweep file's subdir names
    for record in records.values():
        assert record["status"] == "success"
        assert record["config"]["model"]["name"] == "minilm"
        assert record["config"]["task"]["name"] == "tweet_sentiment"
        assert record["config"]["targets"] == ["q"]
        assert record["environment"]["slurm"]["array_task_id"] in ("0", "1")
    again = run_cli([*args, f"hydra.sweep.dir={tmp_path / 'again'}"], timeout=300)
    assert again.returncode == 0, _explain(again)
    logs = [p.read_text() for p in tmp_path.glob("again/.submitit/*/*_log.out")]
    assert len(logs) == 2 and all("already done" in log for log in logs)
    assert not list(tmp_path.glob("again/*/checkpoints")), "a finished cell ran again"


# --- failures ----------------------------------------------------------------------------------


def test_a_failing_job_leaves_a_failed_record_and_the_rest_complete(slurm_cluster, tmp_path):
    # 3 attention heads do not divide the hidden size 32: the model cannot be built (a runtime
    # error inside the job, after its record was written); 4 heads are the working default.
    result = _sweep(["model.arch.num_attention_heads=3,4"], tmp_path / "s", tmp_path)
    assert result.returncode != 0
    records = _records(tmp_path / "s")
    assert sorted(records) == [0, 1]
    assert records[0]["status"] == "failed"
    assert "not a multiple of the number of attention heads" in records[0]["error"]
    assert records[1]["status"] == "success", records[1]["error"]


def _job_ids(array_job: str) -> dict[int, str]:
    ids = {}
    for line in _slurm("squeue", "-h", "-r", "-o", "%i").split():
        if line.startswith(f"{array_job}_"):
            ids[int(line.split("_")[1])] = line
    return ids


def _array_job(sweep_dir: Path) -> str:
    """The Slurm id of the sweep's job array, from submitit's `<array>_<task>` folders."""
    names = [p.name for p in (sweep_dir / ".submitit").iterdir()]
    return next(m.group(1) for n in names if (m := re.fullmatch(r"(\d+)_\d+", n)))


def _release_begin_time(job_ids: list[str], deadline: float) -> None:
    """Slurm holds a requeued job for ~2 min (BeginTime); start it now instead."""
    waiting = set(job_ids)
    while waiting and time.time() < deadline:
        for line in _slurm("squeue", "-h", "-r", "-o", "%i %T %r").splitlines():
            job, state, reason = [*line.split(), "", "", ""][:3]
            if job in waiting and state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
                waiting.discard(job)
        time.sleep(0.2)


def test_killed_and_timed_out_jobs_are_requeued_and_resume(slurm_cluster, tmp_path):
    """Job 0 is killed and requeued by Slurm (preemption); job 1 gets submitit's time-limit signal
    (USR2), so submitit requeues it (max_num_timeout). Both resume from their last checkpoint."""
    sweep_dir = tmp_path / "s"
    args = [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        *TINY,
        *ON_LOCAL_CLUSTER,
        "budget.max_train_examples=128",
        "epochs=12",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
        f"records_root={tmp_path}",
    ]
    deadline = time.time() + 400
    with subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as sweep:
        lasts = [sweep_dir / str(i) / "checkpoints" / "last.ckpt" for i in (0, 1)]
        # Each job is interrupted as soon as it has a last.ckpt, whether or not the other has
        # started: waiting for both at once failed when Slurm ran the two one after the other.
        interrupt = {
            0: ["scontrol", "requeue"],  # killed now, requeued
            1: ["scancel", "--signal=USR2"],  # "time limit near": submitit requeues
        }
        jobs: dict[int, str] = {}
        while len(jobs) < 2:
            assert time.time() < deadline, "no last.ckpt within the time limit"
            assert sweep.poll() is None, "the sweep ended before its jobs were interrupted"
            for num in sorted(set(interrupt) - set(jobs)):
                if lasts[num].exists():
                    job = _job_ids(_array_job(sweep_dir)).get(num)
                    assert job is not None, f"job {num} wrote last.ckpt but is not queued"
                    subprocess.run([*interrupt[num], job], check=True)
                    jobs[num] = job
            time.sleep(0.1)
        _release_begin_time([jobs[0], jobs[1]], deadline)
        output, _ = sweep.communicate(timeout=max(1.0, deadline - time.time()))
    assert sweep.returncode == 0, output.decode()[-4000:]
    records = _records(sweep_dir)
    for num in (0, 1):
        record = records[num]
        assert record["status"] == "success"
        assert record["resumed_from"] == str(lasts[num])
        assert [h["epoch"] for h in record["history"]] == list(range(12))
        assert not lasts[num].exists()  # finished: nothing left to resume


# --- the plain sbatch path (no submitit) -------------------------------------------------------


def test_sbatch_array_over_a_manifest(slurm_cluster, tmp_path):
    manifest = tmp_path / "manifest.txt"
    made = subprocess.run(
        [sys.executable, str(ROOT / "slurm" / "make_manifest.py"), *TINY, "rank=1,2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    manifest.write_text(made.stdout)
    assert len(made.stdout.splitlines()) == 2
    env = {**os.environ, "LORA_EXP_PYTHON": sys.executable, "LORA_EXP_RUN_ROOT": str(tmp_path)}
    submitted = subprocess.run(
        [
            *("sbatch", "--parsable", "--wait", "--array=1-2", "-c1", "--mem=2G"),
            f"--output={tmp_path}/%A_%a.out",
            str(ROOT / "slurm" / "array.sbatch"),
            str(manifest),
            f"records_root={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert submitted.returncode == 0, submitted.stderr + "".join(
        p.read_text()[-2000:] for p in tmp_path.glob("*.out")
    )
    job = submitted.stdout.strip().split(";")[0]
    records = [json.loads(p.read_text()) for p in (tmp_path / job).glob("*/record.json")]
    assert sorted(r["config"]["rank"] for r in records) == [1, 2]
    assert all(r["status"] == "success" for r in records)
    assert sorted(r["environment"]["slurm"]["array_task_id"] for r in records) == ["1", "2"]


# --- bad input: one message, nothing submitted ---------------------------------------------------


def _fails_before_submitting(result, sweep_dir: Path, *needles: str) -> None:
    assert result.returncode == 2, _explain(result)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0]
    assert not sweep_dir.exists()  # the sweeper never started: nothing was submitted


def test_an_unreachable_controller_fails_with_one_message(slurm_cluster, tmp_path):
    with socket.socket() as sock:  # a port where no controller listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = tmp_path / "slurm.conf"
    text = Path(slurm_cluster).read_text()
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", f"SlurmctldPort={port}", text))
    tic = time.time()
    result = run_cli(
        ["-m", *TINY, *ON_LOCAL_CLUSTER, "rank=1,2", f"hydra.sweep.dir={tmp_path / 's'}"],
        env={"SLURM_CONF": str(conf)},
        timeout=120,
    )
    _fails_before_submitting(result, tmp_path / "s", "controller is unreachable", str(conf))
    assert time.time() - tic < 30


def test_an_unknown_partition_says_which_setting_to_fill_in(slurm_cluster, tmp_path):
    result = _sweep(["rank=1,2", "hydra.launcher.partition=nosuch"], tmp_path / "s", tmp_path)
    _fails_before_submitting(result, tmp_path / "s", "nosuch", "hydra.launcher.partition", "debug")


def test_a_gpu_request_on_a_cpu_only_cluster_says_what_to_change(slurm_cluster, tmp_path):
    result = _sweep(["rank=1,2", "hydra.launcher.gpus_per_node=1"], tmp_path / "s", tmp_path)
    _fails_before_submitting(result, tmp_path / "s", "hydra.launcher.gpus_per_node")


def test_a_sweep_naming_a_method_that_does_not_exist_submits_nothing(slurm_cluster, tmp_path):
    jobs_before = _slurm("sacct", "-X", "-n", "-a", "-o", "JobID", "-S", "now-1hour")
    result = _sweep(["method=lora,nosuch"], tmp_path / "s", tmp_path)
    assert result.returncode != 0
    assert "Could not find 'method/nosuch'" in result.stderr
    assert not (tmp_path / "s" / ".submitit").exists()
    assert _slurm("sacct", "-X", "-n", "-a", "-o", "JobID", "-S", "now-1hour") == jobs_before


# --- trainer=ddp through srun: one task per device, ranks from Lightning's SLURMEnvironment -------


def test_ddp_through_srun_writes_one_record_matching_one_local_process(slurm_cluster, tmp_path):
    """launcher=slurm + trainer=ddp: sbatch --ntasks-per-node=2, srun starts both ranks (CPU, gloo).

    The same tiny configuration as tests/test_ddp.py: one local process and two srun tasks with the
    same global batch end with the same metrics, and the job leaves exactly one record.
    """
    from tests.test_ddp import ENV, TINY_DDP
    from tests.test_ddp import LOSS_RTOL as DDP_LOSS_RTOL
    from tests.test_ddp import METRIC_TOLERANCE as DDP_METRIC_TOLERANCE

    local = tmp_path / "one"
    result = run_cli([*TINY_DDP, f"hydra.run.dir={local}", f"records_root={local}"], env=ENV)
    assert result.returncode == 0, _explain(result)
    sweep = tmp_path / "srun"
    ddp = ["trainer=ddp", "trainer.devices=2", f"hydra.sweep.dir={sweep}", f"records_root={sweep}"]
    result = run_cli(["-m", *TINY_DDP, *ON_LOCAL_CLUSTER, *ddp], env=ENV, timeout=420)
    assert result.returncode == 0, _explain(result)
    assert sorted(p.relative_to(sweep) for p in sweep.rglob("record.json")) == [
        Path("0/record.json")
    ]
    one = json.loads((local / "record.json").read_text())
    two = json.loads((sweep / "0" / "record.json").read_text())
    assert two["status"] == "success" and two["distributed"]["world_size"] == 2
    assert two["environment"]["slurm"]["job_id"]  # it ran as a Slurm job
    submission = next((sweep / ".submitit").rglob("*_submission.sh")).read_text()
    assert "--ntasks-per-node=2" in submission  # tasks per node = trainer.devices
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_1_log.err"))
    logs += "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_1_log.out"))
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs  # the second srun task was rank 1 of 2
    for key, value in one["test"].items():
        assert two["test"][key] == pytest.approx(value, abs=DDP_METRIC_TOLERANCE)
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train/loss_mean"] == pytest.approx(a["train/loss_mean"], rel=DDP_LOSS_RTOL)
    assert two["examples_scored"] == one["examples_scored"]
