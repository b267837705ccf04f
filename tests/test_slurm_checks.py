"""The launcher configs and the SLURM pre-submit checks that need no cluster (fast)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, run_cli

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")

from lora_exp.checks import slurm as slurm_checks
from lora_exp.errors import UserError


def _hydra_launcher(overrides: list[str], conf_dir: Path = CONF) -> dict:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_launcher_asks_one_task_and_one_gpu_per_device():
    launcher = _hydra_launcher(["launcher=slurm", "~local", "trainer.devices=4"])
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4
    assert launcher["timeout_min"] * 60 > launcher["signal_delay_s"]
    assert launcher["max_num_timeout"] > 0  # time limits requeue and resume
    assert launcher["partition"] is None and launcher["account"] is None


def test_the_site_file_in_conf_local_overrides_the_launcher(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf, ignore=shutil.ignore_patterns("slurm.yaml"))
    shutil.copy(CONF / "launcher" / "slurm.yaml", conf / "launcher" / "slurm.yaml")
    shutil.copy(CONF / "local" / "slurm.example.yaml", conf / "local" / "slurm.yaml")
    launcher = _hydra_launcher(["launcher=slurm"], conf)
    assert launcher["partition"] == "gpu" and launcher["account"] == "my_project"
    assert any("module load" in line for line in launcher["setup"])
    # The command line still wins, and ~local drops the site file.
    assert (
        _hydra_launcher(["launcher=slurm", "hydra.launcher.partition=a"], conf)["partition"] == "a"
    )
    assert _hydra_launcher(["launcher=slurm", "~local"], conf)["partition"] is None


def test_local_parallel_launcher_runs_local_processes():
    launcher = _hydra_launcher(["launcher=local_parallel"])
    assert launcher["_target_"].endswith("LocalLauncher")


def test_the_test_cluster_launcher_is_the_slurm_launcher_without_gpus():
    launcher = _hydra_launcher(["launcher=slurm_localhost", "~local"])
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["gpus_per_node"] is None and launcher["cpus_per_task"] == 1
    assert launcher["max_num_timeout"] == _hydra_launcher(["launcher=slurm"])["max_num_timeout"]


def test_a_time_limit_shorter_than_the_requeue_signal_is_refused():
    with pytest.raises(UserError, match=r"timeout_min=2 .* must exceed .*signal_delay_s=120"):
        slurm_checks.check_settings(
            {"timeout_min": 2, "signal_delay_s": 120, "tasks_per_node": 1}, 1
        )
    with pytest.raises(UserError, match=r"tasks_per_node=1 but trainer.devices=2"):
        slurm_checks.check_settings(
            {"timeout_min": 60, "signal_delay_s": 120, "tasks_per_node": 1}, 2
        )


def test_partition_checks_name_the_setting():
    slurm_checks.check_partition(None, ["debug"], "debug")
    slurm_checks.check_partition("a,b", ["a", "b"], None)
    with pytest.raises(UserError, match=r"no default partition: set hydra.launcher.partition"):
        slurm_checks.check_partition(None, ["gpu", "cpu"], None)
    with pytest.raises(UserError, match=r"partition c does not exist.*partitions: a, b"):
        slurm_checks.check_partition("a,c", ["a", "b"], "a")


@pytest.mark.parametrize(
    ("message", "launcher", "expected"),
    [
        (
            "sbatch: error: Batch job submission failed: Invalid account or account/partition "
            "combination specified",
            {"account": None},
            "this cluster needs an account: set hydra.launcher.account in conf/local/slurm.yaml",
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid account or account/partition "
            "combination specified",
            {"account": "abc", "partition": "gpu"},
            "account 'abc' is not valid here (or not on partition 'gpu')",
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid qos specification",
            {"qos": "high"},
            "QOS 'high' is not valid here: fix hydra.launcher.qos",
        ),
        (
            "sbatch: error: Batch job submission failed: No partition specified or system "
            "default partition",
            {},
            "set a valid hydra.launcher.partition",
        ),
        (
            "sbatch: error: Invalid generic resource (gres) specification",
            {"gpus_per_node": 1},
            "hydra.launcher.gpus_per_node=1: on a CPU-only partition set "
            "hydra.launcher.gpus_per_node=null",
        ),
        (
            "sbatch: error: Batch job submission failed: Requested time limit is invalid "
            "(missing or exceeds some limit)",
            {"timeout_min": 99999},
            "timeout_min=99999 exceeds the partition's time limit",
        ),
        (
            "allocation failure: Requested node configuration is not available",
            {"cpus_per_task": 64, "mem_gb": 32, "gpus_per_node": None, "tasks_per_node": 1},
            "no node can satisfy cpus_per_task=64, mem_gb=32, gpus_per_node=null",
        ),
    ],
)
def test_sbatch_rejections_say_which_setting_to_change(message, launcher, expected):
    assert expected in slurm_checks.explain_sbatch_error(message, launcher)


def test_without_slurm_commands_a_sweep_fails_with_one_message(tmp_path):
    # PATH without Slurm (and without anything else): the check runs before any submission.
    python_dir = str(Path(sys.executable).parent)
    result = run_cli(
        ["-m", "launcher=slurm", "~local", "rank=1,2", f"hydra.sweep.dir={tmp_path / 's'}"],
        env={"PATH": python_dir if shutil.which("sbatch", path=python_dir) is None else ""},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Slurm commands not found on PATH: sbatch" in errors[0]
    assert not (tmp_path / "s").exists()


def test_make_manifest_lists_the_sweep_cells_in_hydras_order():
    spec = importlib.util.spec_from_file_location(
        "make_manifest", ROOT / "slurm" / "make_manifest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest_lines = module.manifest_lines
    lines = manifest_lines(["model=tiny-bert", "rank=1,2", "seed=0,1", "targets=[q,v],[q]"])
    assert len(lines) == 8
    assert lines[0] == "model=tiny-bert rank=1 seed=0 'targets=[q,v]'"
    assert lines[-1] == "model=tiny-bert rank=2 seed=1 'targets=[q]'"
    with pytest.raises(Exception, match="method/nosuch"):
        manifest_lines(["method=lora,nosuch"])


def test_array_sbatch_template_is_valid_bash():
    assert os.system(f"bash -n {ROOT / 'slurm' / 'array.sbatch'}") == 0
