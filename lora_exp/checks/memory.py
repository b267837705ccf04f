"""Refuse a model that cannot fit the device, before a byte of it is allocated.

`model=gpt3-175b` without `dry_run=true` used to allocate until the out-of-memory killer ended the
process (exit 137), leaving the record at `running`. The architecture numbers in conf/model/*.yaml
give the exact parameter counts without weights (dry_run.dry_counts builds the model on the meta
device), so the memory the run needs at the least is known in a second:

    every parameter, stored in fp32 (4 bytes; 2 for frozen ones under bf16-mixed, which stores
    frozen projections in bf16: frozen_precision.py)
  + every trainable parameter's gradient (4 bytes) and AdamW's two moments (8 bytes)

Activations, the data and the framework come on top, so this is a lower bound: a run it lets
through can still run out of memory, but one it stops could never have fitted. It is compared
with the memory available now: free memory on the GPU the run will use
(`torch.cuda.mem_get_info`), else the host's available memory (MemAvailable), shared by the
processes a CPU run starts on this node. Under FSDP every process holds 1/world_size of the model.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lora_exp.errors import UserError

FP32, BF16 = 4, 2
GRAD_AND_ADAM = 4 + 8  # fp32 gradient + AdamW's exp_avg and exp_avg_sq
GIB = 1024**3


def estimate_bytes(cfg: DictConfig) -> tuple[int, str]:
    """(bytes this run needs per process at the least, how that number was made)."""
    from lora_exp.distributed import shards_parameters
    from lora_exp.dry_run import dry_counts
    from lora_exp.run_plan import resolve_precision

    counts, _ = dry_counts(cfg)
    total, trainable = counts["params/total"], counts["params/trainable_with_head"]
    frozen = total - trainable
    bf16 = resolve_precision(cfg.trainer.precision) == "bf16-mixed"
    frozen_bytes = BF16 if bf16 and cfg.trainer.get("frozen_projections_bf16", True) else FP32
    needed = frozen * frozen_bytes + trainable * (FP32 + GRAD_AND_ADAM)
    how = (
        f"{total:,} parameters, {frozen:,} frozen at {frozen_bytes} bytes and {trainable:,} "
        f"trainable at {FP32 + GRAD_AND_ADAM} bytes with gradient and AdamW state"
    )
    if shards_parameters(cfg.trainer):
        world = _devices(cfg.trainer) * int(cfg.trainer.get("num_nodes", 1) or 1)
        needed //= world
        how += f", sharded over {world} processes"
    return needed, how


def _devices(trainer_cfg: DictConfig) -> int:
    devices = trainer_cfg.get("devices", 1)
    return devices if isinstance(devices, int) and devices > 0 else 1


def host_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Memory the host can give a new process now (psutil, else Linux's MemAvailable)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def available(trainer_cfg: DictConfig) -> tuple[int | None, str]:
    """(bytes available to one process of this run, where), or (None, where) if unknown.

    Args:
        trainer_cfg: the `trainer` config group (accelerator, devices).
    """
    import torch

    if trainer_cfg.accelerator != "cpu" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free, f"free on {torch.cuda.get_device_name()}"
    host = host_available_bytes()
    processes = _devices(
        trainer_cfg
    )  # CPU data parallelism: the processes share this node's memory
    if host is None:
        return None, "host memory"
    where = "available on this host" + (
        f", shared by {processes} processes" if processes > 1 else ""
    )
    return host // processes, where


def check_memory(cfg: DictConfig) -> None:
    """Raise `UserError` if the model, its gradients and optimizer state cannot fit."""
    needed, how = estimate_bytes(cfg)
    have, where = available(cfg.trainer)
    if have is None or needed <= have:
        return
    raise UserError(
        f"model={cfg.model.name} method={cfg.method.name} needs at least {needed / GIB:,.1f} GiB "
        f"({how}), more than the {have / GIB:,.1f} GiB {where}; dry_run=true counts its "
        "parameters without allocating them, or choose a smaller model or a method that trains "
        "fewer parameters"
    )
