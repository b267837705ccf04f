"""Checks before a sweep is submitted to SLURM: bad input fails with one message, no traceback.

`conf/launcher/slurm.yaml` registers `SlurmPreflight` as a Hydra callback. Its `on_multirun_start`
runs in the submitting process after the sweep's config is composed and before the launcher
submits anything. It checks, in order:

1. the Slurm commands are installed (`sbatch`, `srun`, `sinfo`, `sacct`, `scontrol`);
2. the controller answers (`scontrol ping`; `sinfo` would retry for many seconds);
3. the launcher settings are consistent (time limit vs. the requeue signal, tasks vs. devices);
4. the partition exists (or the cluster has a default one when `partition` is null);
5. `sbatch --test-only` accepts the job script submitit would submit, which catches an account,
   QOS, GPU or memory request this cluster rejects.

A failed check prints `error: <what is wrong and which setting to fill in>` and exits with status 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lora_exp.errors import UserError

TOOLS = ("sbatch", "srun", "sinfo", "sacct", "scontrol")
SITE_FILE = "conf/local/slurm.yaml"
START_HINT = "for this machine's test cluster: sudo bash slurm/start.sh, then export SLURM_CONF"


def _slurm(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise UserError(
            f"the Slurm controller did not answer `{' '.join(args)}` within {timeout:.0f} s; "
            f"check SLURM_CONF ({os.environ.get('SLURM_CONF', 'not set')}) or {START_HINT}"
        ) from exc


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(line for line in lines if not line.startswith("*")) or "(no output)"


def _show(value: Any) -> str:
    """A setting as the user writes it on the command line (None -> null)."""
    return "null" if value is None else str(value)


def check_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise UserError(
            f"Slurm commands not found on PATH: {', '.join(missing)}. launcher=slurm submits from "
            f"a Slurm login node; use launcher=local here, or {START_HINT}"
        )


def check_controller() -> None:
    """`scontrol ping` answers at once; `sinfo` retries an unreachable controller for ~10 s."""
    ping = _slurm(["scontrol", "ping"])
    if ping.returncode != 0 or " is UP" not in ping.stdout:
        conf = os.environ.get("SLURM_CONF") or "not set: /etc/slurm/slurm.conf or DNS is used"
        raise UserError(
            f"the Slurm controller is unreachable ({_one_line(ping.stdout + ping.stderr)}); "
            f"SLURM_CONF is {conf}. Nothing was submitted. Check that slurmctld runs, or "
            f"{START_HINT}"
        )


def check_settings(launcher: dict, devices: Any) -> None:
    timeout_min = launcher.get("timeout_min") or 0
    delay = launcher.get("signal_delay_s") or 0
    if timeout_min * 60 <= delay:
        raise UserError(
            f"hydra.launcher.timeout_min={timeout_min} ({timeout_min * 60} s) must exceed "
            f"hydra.launcher.signal_delay_s={delay}: the requeue signal would arrive at the start "
            "of every job; raise timeout_min or lower signal_delay_s"
        )
    tasks = launcher.get("tasks_per_node")
    if isinstance(devices, int) and tasks != devices:
        raise UserError(
            f"hydra.launcher.tasks_per_node={tasks} but trainer.devices={devices}: Lightning "
            "expects one SLURM task per device; set both to the same number"
        )


def partitions() -> tuple[list[str], str | None]:
    """Partition names and the default one (marked with '*' by sinfo)."""
    out = _slurm(["sinfo", "-h", "-o", "%P"])
    if out.returncode != 0:
        raise UserError(f"sinfo failed: {_one_line(out.stderr)}")
    names, default = [], None
    for raw in out.stdout.split():
        name = raw.rstrip("*")
        if raw.endswith("*"):
            default = name
        if name not in names:
            names.append(name)
    return names, default


def check_partition(partition: str | None, names: list[str], default: str | None) -> None:
    where = f"set hydra.launcher.partition in {SITE_FILE} (or on the command line)"
    if not partition:
        if default is None:
            raise UserError(
                f"this cluster has no default partition: {where}; partitions: {', '.join(names)}"
            )
        return
    unknown = [p for p in str(partition).split(",") if p not in names]
    if unknown:
        raise UserError(
            f"partition {', '.join(unknown)} does not exist on this cluster: {where}; "
            f"partitions: {', '.join(names) or 'none'}"
        )


def explain_sbatch_error(message: str, launcher: dict) -> str:
    """Turn sbatch's rejection into the setting to change."""
    text = message.lower()
    account, partition = launcher.get("account"), launcher.get("partition")
    if "account" in text:
        if not account:
            return (
                f"this cluster needs an account: set hydra.launcher.account in {SITE_FILE} "
                "(your accounts: sacctmgr -n show assoc user=$USER format=account)"
            )
        return (
            f"account '{account}' is not valid here (or not on partition "
            f"'{partition or 'default'}'): fix hydra.launcher.account in {SITE_FILE}"
        )
    if "qos" in text:
        return (
            f"QOS '{launcher.get('qos')}' is not valid here: fix hydra.launcher.qos in {SITE_FILE}"
        )
    if "partition" in text:
        return f"set a valid hydra.launcher.partition in {SITE_FILE} (sinfo -s lists them)"
    if "gres" in text or "gpu" in text:
        return (
            f"the partition has no GPUs matching hydra.launcher.gpus_per_node="
            f"{_show(launcher.get('gpus_per_node'))}: on a CPU-only partition set "
            "hydra.launcher.gpus_per_node=null, or choose a GPU partition"
        )
    if "time limit" in text:
        return (
            f"hydra.launcher.timeout_min={launcher.get('timeout_min')} exceeds the partition's "
            "time limit: lower it (runs that hit the limit are requeued and resumed)"
        )
    if "node configuration is not available" in text or "memory" in text:
        return (
            f"no node can satisfy cpus_per_task={_show(launcher.get('cpus_per_task'))}, "
            f"mem_gb={_show(launcher.get('mem_gb'))}, "
            f"gpus_per_node={_show(launcher.get('gpus_per_node'))}, "
            f"tasks_per_node={_show(launcher.get('tasks_per_node'))}: lower hydra.launcher.* "
            "to what `sinfo -o '%P %c %m %G'` shows"
        )
    return "fix the hydra.launcher settings it names"


def sbatch_script(launcher: dict, folder: Path) -> str:
    """The job script hydra-submitit-launcher would submit, built by submitit itself."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = {k: v for k, v in launcher.items() if k not in ("_target_", "submitit_folder")}
    init = {"slurm_max_num_timeout": params.pop("max_num_timeout", 0)}
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k if k in base else f"slurm_{k}": v for k, v in params.items()}
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", **init)
    executor.update_parameters(**params)
    return executor._executor._make_submission_file_text("true", "preflight")


def check_sbatch_accepts(launcher: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="lora_exp_preflight_") as tmp:
        script = Path(tmp) / "job.sh"
        script.write_text(sbatch_script(launcher, Path(tmp)))
        out = _slurm(["sbatch", "--test-only", str(script)])
    if out.returncode != 0:
        message = _one_line(out.stderr)
        raise UserError(
            f"Slurm rejects the launcher settings ({message}): "
            f"{explain_sbatch_error(message, launcher)}. Nothing was submitted."
        )


def check_slurm(config: DictConfig) -> None:
    """All checks, on the composed multirun config (with its `hydra` node)."""
    launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True)
    devices = config.get("trainer", {}).get("devices")
    check_tools()
    check_controller()
    check_settings(launcher, devices)
    check_partition(launcher.get("partition"), *partitions())
    check_sbatch_accepts(launcher)


class SlurmPreflight(Callback):
    """Hydra callback (see conf/launcher/slurm.yaml): check Slurm before a sweep is submitted."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_slurm(config)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(err.exit_code)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        print(
            "note: launcher=slurm submits multiruns only; without -m this run stays in this "
            "process (python run.py -m ... launcher=slurm submits it)",
            file=sys.stderr,
            flush=True,
        )
