"""Build a generation run (`task.problem: generation`, E2E): tokenizer, causal LM, module, Trainer.

`fit.build_run` hands over to `build_generation_run` for these tasks, and `fit.fit_and_test` fits
the `BuiltRun` it returns like any other. The pieces mirror the classification path (same method
interface, loggers, checkpoints, run record) with a causal-LM backbone (`AutoModelForCausalLM`,
GPT-2's `GPT2LMHeadModel`), `tasks/lm_data.py` and `generation_module.py`. The best epoch is the
one with the lowest `val/loss`.

Tokenizer: `model.tokenizer` may also be a directory holding a saved tokenizer (what
`save_pretrained` writes): tests use a small byte-level BPE trained on the fly, since GPT-2's
vocabulary cannot be downloaded here. With random weights the vocabulary size follows the tokenizer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp.built_run import BuiltRun
from lora_exp.errors import UserError
from lora_exp.fit_result import RunSetup
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


def load_generation_tokenizer(model_cfg: DictConfig):
    """`model.tokenizer` as a directory, else what `models.load_tokenizer` resolves."""
    from transformers import AutoTokenizer

    from lora_exp.models import load_tokenizer

    source = Path(str(model_cfg.tokenizer)).expanduser()
    if source.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    return load_tokenizer(model_cfg)


def load_causal_lm(model_cfg: DictConfig, tokenizer):
    """A stock `AutoModelForCausalLM`: hub/local_path weights, or random from `arch`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lora_exp.models import _hub_errors, config_overrides, weights_source
    from lora_exp.tasks.lm_data import eos_id

    end = eos_id(tokenizer)
    source = weights_source(model_cfg)
    if source is None:
        arch = OmegaConf.to_container(model_cfg.arch, resolve=True)
        model_type = arch.pop("model_type")
        arch.update(vocab_size=len(tokenizer), bos_token_id=end, eos_token_id=end)
        config = AutoConfig.for_model(model_type, **arch, **config_overrides(model_cfg))
        config.pad_token_id = tokenizer.pad_token_id
        return AutoModelForCausalLM.from_config(config)
    with _hub_errors(model_cfg, "weights"):
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32, **config_overrides(model_cfg)
        )
    if len(tokenizer) > model.config.vocab_size:
        raise UserError(
            f"the tokenizer has {len(tokenizer):,} tokens but model={model_cfg.name} only "
            f"{model.config.vocab_size:,} embeddings: use the tokenizer saved with the weights"
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def causal_lm_on_meta(model_cfg: DictConfig):
    """The full-size causal LM with parameters on the meta device (dry runs: shapes only)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    arch = OmegaConf.to_container(model_cfg.arch, resolve=True)
    model_type = arch.pop("model_type")
    config = AutoConfig.for_model(model_type, **arch)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def build_generation_run(cfg: DictConfig, run_dir: Path) -> BuiltRun:
    """Data, causal LM, method, module, Trainer of a generation run, ready for `fit_and_test`.

    The best epoch is the one with the lowest `val/loss`; the test generates and scores the MRs.
    """
    importing = time.perf_counter()
    import lightning as L

    from lora_exp.generation_module import GenerationModule
    from lora_exp.measure.phases import PhaseTimer
    from lora_exp.methods import build_method
    from lora_exp.models import get_family
    from lora_exp.tasks.lm_data import GenerationDataModule, eos_id

    import_s = time.perf_counter() - importing
    quiet_library_logging()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    task, family = cfg.task, get_family(cfg.model.family)
    method = build_method(cfg.method)
    method.check(family)
    precision, plan, buckets = plan_run(cfg.trainer, task)  # a mode that cannot run fails now
    if cfg.trainer.devices not in (1, "1") or int(cfg.trainer.get("num_nodes", 1)) != 1:
        raise UserError(f"task={task.name} trains and tests on one device: pass trainer.devices=1")

    tokenizer = load_generation_tokenizer(cfg.model)
    data = GenerationDataModule(
        task,
        cfg.budget,
        tokenizer,
        int(cfg.batch_size),
        int(cfg.eval_batch_size),
        dataloader_workers(cfg.trainer),
        shuffle_seed=int(cfg.seed),
    )
    data.setup()  # the data before the model: a missing data set fails fast

    loading = time.perf_counter()
    model = load_causal_lm(cfg.model, tokenizer)
    method.apply(model, family)
    params = prepare_for_training(
        cfg.trainer, cfg.model.name, model, method, family, (precision, plan, buckets)
    )
    model_load_s = time.perf_counter() - loading
    data.use_static_shapes(buckets, pin_memory=trains_on_cuda(cfg.trainer))
    module = GenerationModule(
        model,
        method,
        task,
        optim={
            "lr": float(cfg.lr),
            "weight_decay": float(cfg.weight_decay),
            "warmup_ratio": float(cfg.warmup_ratio),
            "warmup_steps": task.get("warmup_steps"),
            "clip_val": cfg.trainer.gradient_clip_val,
        },
        tokenizer=tokenizer,
        eos_token_id=eos_id(tokenizer),
        pad_token_id=data.pad_id,
        test_references=data.test_references,
        output_dir=run_dir / "predictions",
        merge_on_eval=bool(cfg.method.get("merge_on_eval", True)),
        step_plan=plan,
        log_every_n_steps=int(cfg.trainer.log_every_n_steps),
    )
    monitor = "val/loss"
    best, last = checkpoint_callbacks(run_dir, monitor, "min")
    measurements, phases = run_measurements(cfg.get("measure"), family), PhaseTimer()
    loggers = build_loggers(cfg.logger, run_dir, cfg.method.name)
    trainer = build_trainer(
        cfg.trainer,
        cfg.epochs,
        run_dir,
        precision,
        loggers,
        callbacks=[best, last, measurements, phases],
        devices=1,
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(redact(OmegaConf.to_container(cfg, resolve=True)))
        logger.log_metrics(params, step=0)
    setup = RunSetup(import_s, dict(data.info), params, planned_step(plan, buckets))
    return BuiltRun(setup, module, data, trainer, best, measurements, phases, monitor, "min",
                    task, run_dir, model_load_s)  # fmt: skip
