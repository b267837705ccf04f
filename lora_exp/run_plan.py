"""How a run will train, decided before data or weights load, and the model made ready for it.

The precision, the training-step mode (`engine/modes.py`) and its length buckets are resolved first
(`plan_run`), so a mode that cannot run here fails in seconds; once the method is applied,
`prepare_for_training` counts the parameters, stores frozen projections in bf16 and compiles the
blocks the plan asks for. Both fit paths use these (`fit.py` for classification and regression,
`fit_generation.py` for generation), which is why they live below both rather than in either.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from lora_exp.errors import UserError

log = logging.getLogger("lora_exp")


def resolve_precision(precision: str) -> str:
    """auto -> bf16-mixed on a bf16-capable GPU (the paper trains in mixed precision), else fp32."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def trains_on_cuda(trainer_cfg: DictConfig) -> bool:
    """Whether the run trains on a GPU (pinned host memory makes its batch copies asynchronous).

    Args:
        trainer_cfg: the `trainer` config group (`accelerator`).
    """
    import torch

    accelerator = str(trainer_cfg.accelerator)
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def dataloader_workers(trainer_cfg: DictConfig) -> int:
    """`trainer.num_workers`: auto = 0, the batches are collated in the training process.

    The data is tokenised once, so collating a batch is padding a few lists: about 0.3 ms for 32
    tweets. A worker process costs more than it saves: every batch then crosses processes as
    shared-memory tensors, and receiving them took the training process 2.0 ms per batch on an
    H100 host (median over 930 MiniLM steps, 2026-12-06), about as long as the captured step
    it feeds (2.2 ms). In one call on that H100, MiniLM `budget=full` trained in 11.2 s with
    no worker and 13.1 s with one (before the per-step synchronisation was removed). On a
    2-core CPU a worker only competes with training for the cores. Set a number for datasets
    whose batches are expensive to build.
    """
    value = trainer_cfg.get("num_workers", "auto")
    if value == "auto":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise UserError(f"trainer.num_workers must be auto or an integer, got '{value}'") from err


def plan_training_step(trainer_cfg: DictConfig, precision: str, problem: str):
    """`trainer.step` resolved for this run (`engine/modes.py`): the mode and why."""
    from lora_exp.distributed import world_size
    from lora_exp.engine.modes import plan_step

    device = "cuda" if trains_on_cuda(trainer_cfg) else "cpu"
    distributed = world_size(trainer_cfg) > 1 or str(trainer_cfg.get("strategy", "auto")) != "auto"
    return plan_step(trainer_cfg.get("step", "auto"), device, distributed, precision, problem)


def length_buckets(trainer_cfg: DictConfig, max_seq_len: int, plan) -> list[int] | None:
    """The padded lengths of a static-shape step (`engine/buckets.py`); None: dynamic padding."""
    if not plan.static_shapes:
        return None
    from lora_exp.engine.buckets import check_buckets, default_buckets

    max_len = int(max_seq_len)
    requested = trainer_cfg.get("buckets")
    if requested is None:
        return default_buckets(max_len)
    try:
        return check_buckets(list(requested), max_len)
    except (TypeError, ValueError) as err:
        raise UserError(f"trainer.buckets: {err}") from err


def plan_run(trainer_cfg: DictConfig, task_cfg: DictConfig):
    """(precision, step plan, length buckets) of this run: decided before any data or weights
    load, so a mode that cannot run here fails in seconds.

    Args:
        trainer_cfg: the `trainer` config group (precision, step, buckets, devices).
        task_cfg: the `task` config group (`problem`, `max_seq_len`).
    """
    precision = resolve_precision(trainer_cfg.precision)
    plan = plan_training_step(trainer_cfg, precision, task_cfg.problem)
    return precision, plan, length_buckets(trainer_cfg, task_cfg.max_seq_len, plan)


def store_frozen_in_bf16(trainer_cfg: DictConfig, model, precision: str) -> None:
    """Under bf16-mixed, frozen projections stored in bf16: exact (see frozen_precision.py)."""
    if precision == "bf16-mixed" and trainer_cfg.get("frozen_projections_bf16", True):
        import torch

        from lora_exp.frozen_precision import store_frozen_projections_in

        store_frozen_projections_in(model, torch.bfloat16)


def compile_for_step(model, plan, buckets: list[int] | None) -> None:
    """Compiled modes: compile each transformer block in place (lora_exp/compiling.py).

    In place, so the module tree, the checkpoints' keys and the method's merge and save see the
    same model. Static shapes (`dynamic=False`): one graph per length bucket. Merging for
    evaluation changes LoRALinear's `merged` flag, which dynamo guards on: more graphs, each
    compiled once.
    """
    if not plan.compiled:
        return
    from lora_exp.compiling import compile_model

    try:
        compile_model(model, "blocks", dynamic=False, extra_graphs=4 * len(buckets or [1]))
    except ValueError as err:
        raise UserError(f"trainer.step={plan.mode}: {err}") from err


def planned_step(plan, buckets: list[int] | None) -> dict:
    """The record's `step` before training: the mode asked for, the one chosen, why, buckets."""
    return {"requested": plan.requested, "mode": plan.mode, "reason": plan.reason,
            "buckets": buckets}  # fmt: skip


def prepare_for_training(trainer_cfg: DictConfig, model_name: str, model, method, family,
                         run_plan) -> dict:  # fmt: skip
    """After the method is applied: train mode, the parameter counts (returned, and logged),
    frozen projections in bf16 and, for compiled modes, the compiled blocks. `run_plan` is
    `plan_run`'s. Shared by the classification and generation paths.

    Args:
        trainer_cfg: the `trainer` config group (`frozen_projections_bf16`).
        model_name: the `model` config's name, for the log line.
        family: the model family (`models.Family`), which names the head for the counts.
    """
    from lora_exp.measure.params import count_parameters

    precision, plan, buckets = run_plan
    model.train()  # from_pretrained returns eval mode and Lightning keeps it: dropout would be off
    counts = count_parameters(model, family)  # before the strategy wraps (FSDP holds shards)
    store_frozen_in_bf16(trainer_cfg, model, precision)
    compile_for_step(model, plan, buckets)
    log.info(
        "%s on %s: %s",
        method.describe(),
        model_name,
        ", ".join(f"{k}={v:,}" for k, v in counts.items()),
    )
    log.info("training step: %s (%s)", plan.mode, plan.reason)
    return counts
