"""Fit and test a classification or regression run with Lightning; fill its run record.

Generation tasks hand over to `fit_generation.py`. The pieces both paths build the same way live
below both: the run's precision and step plan (`run_plan.py`), the Trainer, loggers and callbacks
(`trainer_build.py`) and what a fitted run writes into its record (`fit_record.py`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp.fit_generation import fit_and_test_generation
from lora_exp.fit_record import add_import_time, print_summary, record_measurements, record_timings
from lora_exp.records import environment, redact
from lora_exp.run_plan import dataloader_workers, plan_run, prepare_for_training, trains_on_cuda
from lora_exp.trainer_build import (
    build_loggers,
    build_trainer,
    checkpoint_callbacks,
    quiet_library_logging,
    run_measurements,
)

log = logging.getLogger("lora_exp")


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
