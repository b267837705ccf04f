"""Build the pieces of a training run and fit/test them with Lightning."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp.errors import UserError
from lora_exp.records import environment, redact

log = logging.getLogger("lora_exp")


def quiet_library_logging() -> None:
    """Route Lightning's messages through Hydra's handlers once (it adds its own handler)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def trainer_plugins() -> list:
    """Atomic checkpoints with an integrity sidecar; under SLURM, no Lightning requeue.

    AtomicCheckpointIO (checkpoint_io.py): a checkpoint is never half-written, and one that is
    damaged later is detected before a resume. Requeueing is the launcher's job (submitit, or
    slurm/array.sbatch's trap); the requeued job resumes from checkpoints/last.ckpt (resume.py).
    Two competing mechanisms would requeue twice, so Lightning's own is switched off.
    """
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from lora_exp.checkpoint_io import AtomicCheckpointIO

    slurm = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    return [AtomicCheckpointIO(), *slurm]


def resolve_precision(precision: str) -> str:
    """auto -> bf16-mixed on a bf16-capable GPU (the paper trains in mixed precision), else fp32."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """The CSV log always (a plain-file copy of every metric), plus wandb when chosen and it starts
    (wandb_start.py: the environment's WANDB_MODE respected; a failed start never fails the run)."""
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]  # run_dir/csv/metrics.csv
    if cfg.logger.name == "wandb":
        from lora_exp.wandb_start import start_wandb

        wandb_logger = start_wandb(cfg, run_dir)
        if wandb_logger is not None:
            loggers.append(wandb_logger)
    return loggers


def checkpoint_callbacks(run_dir: Path, monitor: str, mode: str) -> tuple:
    """(best, last): the checkpoints every training run keeps, for the test and for resuming.

    best.ckpt holds what the method saves, at the best validation epoch (tested, kept); last.ckpt
    adds optimizer, scheduler, loop and RNG state, every epoch. (save_last with save_top_k=0
    writes only when training ends in Lightning 2.6: not resumable.)
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    directory = str(run_dir / "checkpoints")
    best = ModelCheckpoint(
        dirpath=directory,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_weights_only=True,
    )
    last = ModelCheckpoint(
        dirpath=directory, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    return best, last


def store_frozen_in_bf16(cfg: DictConfig, model, precision: str) -> None:
    """Under bf16-mixed, frozen projections stored in bf16: exact (see frozen_precision.py)."""
    if precision == "bf16-mixed" and cfg.trainer.get("frozen_projections_bf16", True):
        import torch

        from lora_exp.frozen_precision import store_frozen_projections_in

        store_frozen_projections_in(model, torch.bfloat16)


def plan_training_step(cfg: DictConfig, precision: str, problem: str):
    """`trainer.step` resolved for this run (`engine/modes.py`): the mode and why."""
    from lora_exp.distributed import world_size
    from lora_exp.engine.modes import plan_step

    device = "cuda" if trains_on_cuda(cfg) else "cpu"
    distributed = world_size(cfg.trainer) > 1 or str(cfg.trainer.get("strategy", "auto")) != "auto"
    return plan_step(cfg.trainer.get("step", "auto"), device, distributed, precision, problem)


def length_buckets(cfg: DictConfig, plan) -> list[int] | None:
    """The padded lengths of a static-shape step (`engine/buckets.py`); None: dynamic padding."""
    if not plan.static_shapes:
        return None
    from lora_exp.engine.buckets import check_buckets, default_buckets

    max_len = int(cfg.task.max_seq_len)
    requested = cfg.trainer.get("buckets")
    if requested is None:
        return default_buckets(max_len)
    try:
        return check_buckets(list(requested), max_len)
    except (TypeError, ValueError) as err:
        raise UserError(f"trainer.buckets: {err}") from err


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


def plan_run(cfg: DictConfig, problem: str):
    """(precision, step plan, length buckets) of this run: decided before any data or weights
    load, so a mode that cannot run here fails in seconds."""
    precision = resolve_precision(cfg.trainer.precision)
    plan = plan_training_step(cfg, precision, problem)
    return precision, plan, length_buckets(cfg, plan)


def prepare_for_training(cfg: DictConfig, model, method, family, record: dict, run_plan) -> None:
    """After the method is applied: train mode, the parameter counts (into the record and the
    log), frozen projections in bf16 and, for compiled modes, the compiled blocks. `run_plan` is
    `plan_run`'s. Shared by the classification and generation paths."""
    from lora_exp.measure.params import count_parameters

    precision, plan, buckets = run_plan
    model.train()  # from_pretrained returns eval mode and Lightning keeps it: dropout would be off
    counts = count_parameters(model, family)  # before the strategy wraps (FSDP holds shards)
    store_frozen_in_bf16(cfg, model, precision)
    compile_for_step(model, plan, buckets)
    record["params"] = counts
    record["step"] = {"requested": plan.requested, "mode": plan.mode, "reason": plan.reason,
                      "buckets": buckets}  # fmt: skip
    log.info(
        "%s on %s: %s",
        method.describe(),
        cfg.model.name,
        ", ".join(f"{k}={v:,}" for k, v in counts.items()),
    )
    log.info("training step: %s (%s)", plan.mode, plan.reason)


def run_measurements(cfg: DictConfig):
    """The callback that measures latency, memory and throughput of every run (issue 5)."""
    from lora_exp.measure.run_metrics import RunMeasurements
    from lora_exp.models import get_family

    measure_cfg = cfg.get("measure") or {}
    return RunMeasurements(
        get_family(cfg.model.family),
        latency_batch_size=measure_cfg.get("latency_batch_size", 1),
        latency_seq_len=measure_cfg.get("latency_seq_len", 128),
        latency_trials=measure_cfg.get("latency_trials", 20),
    )


def record_measurements(record: dict, measurements, best, trainer) -> None:
    """Put what the run measured (and its best checkpoint's size) in the record and the loggers."""
    if best.best_model_path:
        measurements.results["checkpoint/saved_bytes"] = Path(best.best_model_path).stat().st_size
    record["measurements"] = dict(measurements.results)
    numeric = {k: v for k, v in measurements.results.items() if isinstance(v, int | float)}
    for logger in trainer.loggers:
        logger.log_metrics(numeric, step=trainer.global_step)


def add_import_time(record: dict, seconds: float) -> None:
    """The heavy libraries, imported when the run needs them, count as timing/imports too."""
    timing = record.setdefault("timing", {})
    timing["timing/imports"] = round(timing.get("timing/imports", 0.0) + seconds, 3)


def record_timings(record: dict, data_timings: dict, model_load_s: float, phases, measurements,
                   module) -> None:  # fmt: skip
    """The phase times (`measure/phases.py`) into `record["timing"]`, beside timing/imports."""
    from lora_exp.measure.clock import timing_record

    step = module.train_step
    record.setdefault("timing", {}).update(
        timing_record(
            {
                **data_timings,
                "model_load": model_load_s,
                "capture": step.capture_seconds if step is not None else 0.0,
                "train": measurements.results.get("throughput/train_seconds", 0.0),
                **phases.times,
            }
        )
    )


def build_trainer(cfg: DictConfig, run_dir: Path, precision: str, loggers, callbacks, **layout):
    """The Lightning Trainer of every training run; `layout` sets devices, nodes and strategy."""
    import lightning as L

    every = int(cfg.trainer.log_every_n_steps)
    if cfg.trainer.enable_progress_bar:
        # Lightning's bar redraws the terminal after every batch by default (set_postfix writes
        # at once); a captured step is done in ~3 ms, so the redraw would cost a fixed share of
        # each step. The loss it shows changes once per logging interval: redraw then.
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=every)]
    return L.Trainer(
        max_epochs=int(cfg.epochs),
        accelerator=cfg.trainer.accelerator,
        precision=precision,
        gradient_clip_val=None,  # manual optimization: TrainStep clips (engine/step.py)
        deterministic=bool(cfg.trainer.deterministic),
        log_every_n_steps=every,
        enable_progress_bar=bool(cfg.trainer.enable_progress_bar),
        num_sanity_val_steps=0,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        enable_model_summary=False,
        plugins=trainer_plugins(),
        **layout,
    )


def best_entry(history: list[dict], key: str) -> dict | None:
    """The validation epoch with the highest `key` (the first one on ties)."""
    scored = [h for h in history if key in h]
    return max(scored, key=lambda h: h[key]) if scored else None


def fit_and_test(
    cfg: DictConfig,
    record: dict,
    run_dir: Path,
    overrides: list[str],
    resume_from: Path | None = None,
) -> None:
    """Train, pick the best validation epoch, test its checkpoint; fill `record` in place.

    Args:
        resume_from: a `last.ckpt` of the same configuration to continue from (see resume.py).
    """
    if cfg.task.problem == "generation":  # E2E: causal LM, beam search (fit_generation.py)
        from lora_exp.fit_generation import fit_and_test_generation

        return fit_and_test_generation(cfg, record, run_dir, overrides, resume_from)
    importing = time.perf_counter()
    import lightning as L

    from lora_exp.distributed import build_strategy, resume_agreement, shards_parameters
    from lora_exp.measure.phases import PhaseTimer
    from lora_exp.methods import build_method
    from lora_exp.models import get_family, load_backbone, load_tokenizer
    from lora_exp.module import ClassificationModule
    from lora_exp.tasks.datamodule import TaskDataModule

    add_import_time(record, time.perf_counter() - importing)  # torch, transformers, Lightning
    quiet_library_logging()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    record["environment"] = environment()
    task, family = cfg.task, get_family(cfg.model.family)
    method = build_method(cfg.method)
    method.check(family)  # a method that cannot apply to this family fails before data loads
    precision, plan, buckets = plan_run(cfg, task.problem)  # so does a step mode that cannot run
    if not method.uses_rank and any(o.startswith(("rank=", "alpha=")) for o in overrides):
        log.warning("method %s has no rank or alpha; the override is ignored", method.name)

    tokenizer = load_tokenizer(cfg.model)
    data = TaskDataModule(
        task,
        cfg.budget,
        tokenizer,
        int(cfg.batch_size),
        int(cfg.eval_batch_size),
        dataloader_workers(cfg),
        shuffle_seed=int(cfg.seed),
    )
    data.setup()  # load the data before the model: a missing data set fails fast
    record["task"].update(data.info)

    regression = task.problem == "regression"
    loading = time.perf_counter()
    model = load_backbone(
        cfg.model, 1 if regression else len(task.label_names), task.problem, tokenizer.pad_token_id
    )
    method.apply(model, family)
    if task.get("init_from"):  # MRPC/RTE/STS-B from the best MNLI checkpoint (App. D)
        from lora_exp.tasks.init_from import find_init_checkpoint, load_init_checkpoint

        source = find_init_checkpoint(cfg, Path(str(cfg.records_root)))
        load_init_checkpoint(model, source, family)
        record["init_from"] = str(source)
    prepare_for_training(cfg, model, method, family, record, (precision, plan, buckets))
    model_load_s = time.perf_counter() - loading
    data.use_static_shapes(buckets, pin_memory=trains_on_cuda(cfg))

    module = ClassificationModule(
        model,
        method,
        task,
        optim={
            "lr": float(cfg.lr),
            "weight_decay": float(cfg.weight_decay),
            "warmup_ratio": float(cfg.warmup_ratio),
            "clip_val": cfg.trainer.gradient_clip_val,
        },
        # A shard cannot merge B @ A into the slice of W it holds (distributed.py).
        merge_on_eval=bool(cfg.method.get("merge_on_eval", True))
        and not shards_parameters(cfg.trainer),
        step_plan=plan,
        log_every_n_steps=int(cfg.trainer.log_every_n_steps),
    )
    monitor = f"val/{task.primary_metric}"
    best, last = checkpoint_callbacks(run_dir, monitor, "max")
    measurements, phases = run_measurements(cfg), PhaseTimer()
    loggers = build_loggers(cfg, run_dir)
    trainer = build_trainer(
        cfg,
        run_dir,
        precision,
        loggers,
        callbacks=[best, last, measurements, phases, resume_agreement(resume_from)],
        devices=cfg.trainer.devices,
        num_nodes=int(cfg.trainer.get("num_nodes", 1)),
        strategy=build_strategy(cfg, model),  # trainer=ddp / trainer=fsdp; "auto" on one device
        use_distributed_sampler=False,  # our samplers shard themselves (tasks/sampler.py)
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(redact(OmegaConf.to_container(cfg, resolve=True)))
        logger.log_metrics(
            {**record["params"], "test/majority_acc": data.info["majority_test_acc"] or 0.0},
            step=0,
        )

    phases.wrap_checkpoint_io(trainer)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume_from) if resume_from else None)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")
    record["history"] = module.history
    record["resumed_from_epoch"] = module.resumed_from_epoch
    record["step"].update(module.step_report())
    record["best"] = best_entry(module.history, monitor)
    results = trainer.test(module, datamodule=data, ckpt_path="best", verbose=False)
    record["test"] = {k: float(v) for k, v in results[0].items()}
    # Summed over ranks: equal to the split sizes when nothing was dropped or scored twice.
    record["examples_scored"] = dict(module.examples_scored)
    from lora_exp.tasks.extra_eval import score_extra_splits

    record["test"].update(score_extra_splits(trainer, module, data, task))  # MNLI: test/acc_mm
    record_measurements(record, measurements, best, trainer)
    record_timings(record, data.timings, model_load_s, phases, measurements, module)
    for logger in trainer.loggers:
        logger.save()
    if trainer.is_global_zero:
        (run_dir / "checkpoints" / "last.ckpt").unlink(missing_ok=True)  # finished: no resume
        print_summary(cfg, record)


def dataloader_workers(cfg: DictConfig) -> int:
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
    value = cfg.trainer.get("num_workers", "auto")
    if value == "auto":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise UserError(f"trainer.num_workers must be auto or an integer, got '{value}'") from err


def trains_on_cuda(cfg: DictConfig) -> bool:
    """Whether the run trains on a GPU (pinned host memory makes its batch copies asynchronous)."""
    import torch

    accelerator = str(cfg.trainer.accelerator)
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def print_summary(cfg: DictConfig, record: dict) -> None:
    """A short human summary at the end of a run."""
    primary = record["primary_metric"]
    best, test, info = record["best"] or {}, record["test"] or {}, record["task"]
    params = record["params"]
    lines = [
        f"model={cfg.model.name} method={cfg.method.name} task={cfg.task.name} seed={cfg.seed}",
        f"trainable params: {params['params/trainable']:,} (head excluded, the paper's count); "
        f"{params['params/trainable_with_head']:,} with the head; {params['params/total']:,} total",
        f"train examples used: {info['split_sizes_used']['train']:,} of "
        f"{info['split_sizes_full']['train']:,} (budget={cfg.budget.name})",
        f"best val/{primary}: {best.get('val/' + primary, float('nan')):.4f} "
        f"(epoch {best.get('epoch')})",
        "test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()),
    ]
    if info.get("majority_test_acc") is not None:
        lines.append(f"majority-class baseline test/acc: {info['majority_test_acc']:.4f}")
    print("\n".join(["", "== lora_exp run summary ==", *lines]), flush=True)
