"""Build a run's pieces, then fit and test them with Lightning; return what happened.

`build_run` builds a classification or regression run (generation tasks: `fit_generation.py`)
and returns a `BuiltRun`, whose `setup` says what the record learns before training;
`fit_and_test` fits and tests any built run and returns a `FitResult`. Neither sees the run
record: `run_cell.py` turns both into it. The pieces both problems build the same way live below
both: the run's precision and step plan (`run_plan.py`), the Trainer, loggers and callbacks
(`trainer_build.py`) and what a fitted run measures (`fit_summary.py`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp.built_run import BuiltRun
from lora_exp.fit_generation import build_generation_run
from lora_exp.fit_result import FitResult, RunSetup
from lora_exp.fit_summary import measured, phase_timings
from lora_exp.records import redact
from lora_exp.run_plan import (
    dataloader_workers,
    plan_run,
    planned_step,
    prepare_for_training,
    trains_on_cuda,
)
from lora_exp.trainer_build import (
    build_loggers,
    build_trainer,
    checkpoint_callbacks,
    quiet_library_logging,
    run_measurements,
)

log = logging.getLogger("lora_exp")


def best_entry(history: list[dict], key: str, mode: str = "max") -> dict | None:
    """The validation epoch with the highest (mode max) or lowest (min) `key`, first on ties."""
    scored = [h for h in history if key in h]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda h: h[key])


def build_run(
    cfg: DictConfig, run_dir: Path, overrides: list[str], resume_from: Path | None = None
) -> BuiltRun:
    """Data, backbone, method, module, Trainer of one run, ready for `fit_and_test`.

    Args:
        overrides: the command-line overrides (a rank given to a method without one is noted).
        resume_from: a `last.ckpt` of the same configuration that fitting continues from; every
            data-parallel rank must agree on it (`distributed.resume_agreement`).
    """
    if cfg.task.problem == "generation":  # E2E: causal LM, beam search (fit_generation.py)
        return build_generation_run(cfg, run_dir)
    importing = time.perf_counter()
    import lightning as L

    from lora_exp.distributed import build_strategy, resume_agreement, shards_parameters
    from lora_exp.measure.phases import PhaseTimer
    from lora_exp.methods import build_method
    from lora_exp.models import get_family, load_backbone, load_tokenizer
    from lora_exp.module import ClassificationModule
    from lora_exp.tasks.datamodule import TaskDataModule

    import_s = time.perf_counter() - importing  # torch, transformers, Lightning
    quiet_library_logging()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    task, family = cfg.task, get_family(cfg.model.family)
    method = build_method(cfg.method)
    method.check(family)  # a method that cannot apply to this family fails before data loads
    precision, plan, buckets = plan_run(cfg.trainer, task)  # so does a step mode that cannot run
    if not method.uses_rank and any(o.startswith(("rank=", "alpha=")) for o in overrides):
        log.warning("method %s has no rank or alpha; the override is ignored", method.name)

    tokenizer = load_tokenizer(cfg.model)
    data = TaskDataModule(
        task,
        cfg.budget,
        tokenizer,
        int(cfg.batch_size),
        int(cfg.eval_batch_size),
        dataloader_workers(cfg.trainer),
        shuffle_seed=int(cfg.seed),
    )
    data.setup()  # load the data before the model: a missing data set fails fast

    regression = task.problem == "regression"
    loading = time.perf_counter()
    model = load_backbone(
        cfg.model, 1 if regression else len(task.label_names), task.problem, tokenizer.pad_token_id
    )
    method.apply(model, family)
    init_from = None
    if task.get("init_from"):  # MRPC/RTE/STS-B from the best MNLI checkpoint (App. D)
        from lora_exp.tasks.init_from import find_init_checkpoint, load_init_checkpoint

        source = find_init_checkpoint(cfg, Path(str(cfg.records_root)))
        load_init_checkpoint(model, source, family)
        init_from = str(source)
    params = prepare_for_training(
        cfg.trainer, cfg.model.name, model, method, family, (precision, plan, buckets)
    )
    model_load_s = time.perf_counter() - loading
    data.use_static_shapes(buckets, pin_memory=trains_on_cuda(cfg.trainer))

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
    measurements, phases = run_measurements(cfg.get("measure"), family), PhaseTimer()
    loggers = build_loggers(cfg.logger, run_dir, cfg.method.name)
    strategy = build_strategy(
        cfg.trainer, model
    )  # trainer=ddp / trainer=fsdp; "auto" on one device
    trainer = build_trainer(
        cfg.trainer,
        cfg.epochs,
        run_dir,
        precision,
        loggers,
        callbacks=[best, last, measurements, phases, resume_agreement(resume_from)],
        devices=cfg.trainer.devices,
        num_nodes=int(cfg.trainer.get("num_nodes", 1)),
        strategy=strategy,
        use_distributed_sampler=False,  # our samplers shard themselves (tasks/sampler.py)
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(redact(OmegaConf.to_container(cfg, resolve=True)))
        logger.log_metrics(
            {**params, "test/majority_acc": data.info["majority_test_acc"] or 0.0}, step=0
        )
    setup = RunSetup(import_s, dict(data.info), params, planned_step(plan, buckets), init_from)
    return BuiltRun(setup, module, data, trainer, best, measurements, phases, monitor, "max",
                    task, run_dir, model_load_s)  # fmt: skip


def fit_and_test(run: BuiltRun, resume_from: Path | None = None) -> FitResult:
    """Train, pick the best validation epoch, test its checkpoint (and any extra splits).

    Args:
        resume_from: a `last.ckpt` of the same configuration to continue from (see resume.py).
    """
    from lora_exp.tasks.extra_eval import score_extra_splits

    trainer, module, data = run.trainer, run.module, run.data
    run.phases.wrap_checkpoint_io(trainer)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume_from) if resume_from else None)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")
    history, resumed_from_epoch = list(module.history), module.resumed_from_epoch
    step = module.step_report()
    results = trainer.test(module, datamodule=data, ckpt_path="best", verbose=False)
    test = {k: float(v) for k, v in results[0].items()}
    extras = module.record_extras()  # before extra splits run more test passes
    test.update(score_extra_splits(trainer, module, data, run.task_cfg))  # MNLI: test/acc_mm
    result = FitResult(
        history=history,
        resumed_from_epoch=resumed_from_epoch,
        step=step,
        best=best_entry(history, run.monitor, run.mode),
        test=test,
        measurements=measured(run.measurements, run.best, trainer),
        timing=phase_timings(data.timings, run.model_load_s, run.phases, run.measurements, module),
        task_info=module.task_info(),
        extras=extras,
    )
    for logger in trainer.loggers:
        logger.save()
    if trainer.is_global_zero:
        (run.run_dir / "checkpoints" / "last.ckpt").unlink(missing_ok=True)  # finished: no resume
    return result
