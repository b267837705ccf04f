"""Extra evaluation splits, scored once with the best checkpoint (MNLI mismatched).

A task may name splits beside `validation` (which selects the best epoch) and `test` (scored once
with the best checkpoint):

    extra_eval_splits:
      validation_mismatched: mm    # hub split -> suffix of the metric names

Each is scored like `test`, with the same best checkpoint, and its metrics are logged and recorded
as `test/<metric>_<suffix>`, e.g. `test/acc_mm` next to MNLI's matched `test/acc` (the official
README reports "m/mm"; Table 2 prints matched). The loader returns these splits under their names
and the data module tokenises them with the others.

`fit.py` calls `score_extra_splits` right after `trainer.test(...)` and merges the result into
the run's test metrics (a task without extra splits, generation included, adds none); the module
is not changed (its test metrics are swapped for a copy whose names carry the suffix, then
restored).
"""

from __future__ import annotations

from omegaconf import DictConfig


def score_extra_splits(trainer, module, datamodule, task_cfg: DictConfig) -> dict[str, float]:
    """`{"test/<metric>_<suffix>": value}` for every `task.extra_eval_splits` entry.

    Args:
        trainer: the Lightning Trainer that fitted `module` (its best checkpoint is used).
        module: the ClassificationModule (its `test_metrics` are swapped temporarily).
        datamodule: the set-up TaskDataModule holding the extra splits, tokenised.
        task_cfg: the `task` config group.
    """
    extras = dict(task_cfg.get("extra_eval_splits") or {})
    results: dict[str, float] = {}
    if not extras:
        return results
    original = module.test_metrics
    try:
        for split, suffix in extras.items():
            module.test_metrics = original.clone(postfix=f"_{suffix}")
            loader = datamodule.eval_dataloader(split)  # this rank's shard, each example once
            out = trainer.test(module, dataloaders=loader, ckpt_path="best", verbose=False)
            results.update({key: float(value) for key, value in out[0].items()})
    finally:
        module.test_metrics = original
    return results
