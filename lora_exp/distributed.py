"""Data-parallel training (trainer=ddp, trainer=fsdp): the global batch, the strategy, rank zero.

Semantics (the same for every method):

* `batch_size` is the *global* training batch. Each of the `devices * num_nodes` processes takes
  `batch_size / world_size` examples a step (it must divide), and the samplers in
  `tasks/sampler.py` give step i of an N-process run the same examples as step i of a 1-process
  run, so the two train the same configuration: the device layout is not part of a cell's
  `config_hash` (records.py), and a checkpoint resumes on another device count.
  `eval_batch_size` is per device: it changes memory, never results.
* Processes. Locally, `python run.py trainer=ddp trainer.devices=2` is rank 0; Lightning's
  subprocess launcher re-runs `run.py` with the same overrides plus `hydra.run.dir=<this run's
  directory>` for the other ranks (Lightning's Hydra support), so every rank shares one run
  directory and config. Under SLURM (`launcher=slurm`: one task per device, `nodes` =
  `trainer.num_nodes`) srun starts every rank and Lightning's SLURMEnvironment reads the ranks.
  A Hydra multirun with an in-process launcher cannot use the subprocess launcher (the children
  would re-run the whole sweep), so `checks/layout.py` refuses it with the way out.
* Every rank runs `run_cell.main` (so all make the same skip/resume decisions from the same files);
  only global rank 0 writes the record, the CSV/wandb runs and checkpoints. `ResumeAgreement`
  stops a run whose ranks would resume from different checkpoints.
* FSDP (FSDP1 through Lightning) shards the frozen base too, one unit per transformer block,
  with `use_orig_params=True` so frozen and trainable tensors can share a unit and the optimizer
  sees only the method's parameters. Parameters are counted before wrapping. Merging for
  evaluation is off under FSDP (a shard cannot add B @ A to a weight it holds a slice of); the
  unmerged model computes the same function. FSDP needs CUDA in torch 2.13: it is not run on CPU.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig

from lora_exp.errors import UserError

STRATEGIES = ("auto", "ddp", "fsdp")
# Environment variables that carry a process's rank: torchrun/Lightning (RANK, LOCAL_RANK,
# NODE_RANK) and srun (SLURM_PROCID). A process is rank zero only if every one present is 0.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def _int_knob(trainer_cfg: DictConfig, key: str, default: int) -> int:
    value = trainer_cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"trainer.{key} must be a positive integer, got {value!r}")
    return value


def world_size(trainer_cfg: DictConfig) -> int:
    """Number of processes that share the global batch: devices x nodes."""
    return _int_knob(trainer_cfg, "devices", 1) * _int_knob(trainer_cfg, "num_nodes", 1)


def per_device_batch(batch_size: int, world: int) -> int:
    """Training examples per process and step; the global batch must split evenly."""
    if batch_size % world:
        raise UserError(
            f"batch_size={batch_size} is the global batch and must divide evenly over "
            f"{world} processes (trainer.devices x trainer.num_nodes); choose a multiple of {world}"
        )
    return batch_size // world


def strategy_name(trainer_cfg: DictConfig) -> str:
    name = str(trainer_cfg.get("strategy", "auto"))
    if name not in STRATEGIES:
        raise UserError(f"trainer.strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    return name


def shards_parameters(trainer_cfg: DictConfig) -> bool:
    """True when each process holds only a slice of the weights (FSDP)."""
    return strategy_name(trainer_cfg) == "fsdp"


def processes_created_externally() -> bool:
    """True under srun (SLURM) or torchrun: every rank is started by the launcher, not by us."""
    slurm = "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
        "bash",
        "interactive",
    )
    torchrun = all(v in os.environ for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))
    return slurm or torchrun


def is_global_zero() -> bool:
    """Whether this process is global rank 0, readable before the process group exists."""
    return all(os.environ.get(var, "0") == "0" for var in RANK_VARIABLES)


def layout(cfg: DictConfig) -> dict:
    """The device layout and batch sizes, for the run record."""
    world = world_size(cfg.trainer)
    return {
        "strategy": strategy_name(cfg.trainer),
        "devices": int(cfg.trainer.devices),
        "num_nodes": int(cfg.trainer.get("num_nodes", 1)),
        "world_size": world,
        "per_device_batch_size": per_device_batch(int(cfg.batch_size), world),
        "effective_batch_size": int(cfg.batch_size),
    }


def block_classes(model) -> set[type]:
    """The transformer block class: the element type of the longest uniform ModuleList.

    FSDP wraps each block as one unit, so only one block's weights are gathered at a time. Generic
    over families (BERT/RoBERTa `encoder.layer`, DeBERTa-v2 `encoder.layer`, GPT-2 `h`).
    """
    from torch import nn

    best: list = []
    for module in model.modules():
        uniform = isinstance(module, nn.ModuleList) and len({type(m) for m in module}) == 1
        if uniform and len(module) > len(best):
            best = list(module)
    return {type(best[0])} if best else set()


def no_forward_buffer_sync() -> dict:
    """DDP keyword that stops the buffer broadcast before every forward.

    Transformers' buffers are constants (position ids), and a broadcast per forward would be a
    collective in evaluation too. torch 2.13 renamed `broadcast_buffers` to `forward_sync_buffers`.
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    names = inspect.signature(DistributedDataParallel).parameters
    return {
        "forward_sync_buffers" if "forward_sync_buffers" in names else "broadcast_buffers": False
    }


def build_strategy(trainer: DictConfig, model=None):
    """The Lightning strategy for the `trainer` config group ("auto" on one device).

    Args:
        trainer: the `trainer` config group (strategy, backend, sharding).
        model: the model FSDP wraps block by block (None: no wrapping policy).
    """
    name = strategy_name(trainer)
    backend = trainer.get("process_group_backend")  # None: nccl on GPUs, gloo on CPU
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(
            process_group_backend=backend,
            find_unused_parameters=bool(trainer.get("find_unused_parameters", False)),
            **no_forward_buffer_sync(),
        )
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        policy = block_classes(model) if model is not None else set()
        return FSDPStrategy(
            process_group_backend=backend,
            sharding_strategy=str(trainer.get("sharding_strategy", "FULL_SHARD")),
            auto_wrap_policy=policy or None,
            use_orig_params=True,  # frozen and trainable tensors in one unit; optimizer sees ours
            state_dict_type="full",  # one checkpoint file, loadable on any device count
        )
    return "auto"


def resume_agreement(resume_from):
    """A callback that stops the run if ranks disagree on the checkpoint to resume from.

    Args:
        resume_from: the checkpoint this rank's `run_cell.main` chose (None: start fresh).
    """
    from lightning.pytorch.callbacks import Callback

    mine = str(resume_from) if resume_from is not None else None

    class ResumeAgreement(Callback):
        def setup(self, trainer, pl_module, stage):  # before any checkpoint is restored
            if stage != "fit" or trainer.world_size == 1:
                return
            ours = trainer.strategy.broadcast(mine, src=0)
            if mine != ours:
                raise RuntimeError(
                    f"rank {trainer.global_rank} would resume from {mine}, rank 0 from {ours}; "
                    "the ranks must share one run directory (hydra.run.dir)"
                )

    return ResumeAgreement()
