"""The LightningModule for sequence classification (and regression, for STS-B).

Training, merging for evaluation, checkpoints and resume state are `TrainingModule`'s
(`training_module.py`), shared with generation tasks; this module adds what classification and
regression score: the task's metrics (torchmetrics) on the argmax or the single regression
output, over validation and test, with the examples scored counted across data-parallel ranks.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from lora_exp.engine.losses import loss_for, model_inputs
from lora_exp.engine.modes import StepPlan
from lora_exp.methods import Method
from lora_exp.tasks.metrics import build_metrics
from lora_exp.training_module import TrainingModule


class ClassificationModule(TrainingModule):
    """Wraps a (method-modified) HF sequence-classification model.

    Args:
        model: a transformers `*ForSequenceClassification` after `method.apply`.
        method: the method, asked which parameters train, how to merge and what to save.
        task_cfg: the `task` config group (metrics, problem type, label names).
        optim: dict with lr, weight_decay, warmup_ratio (and optional warmup_steps, clip_val).
        merge_on_eval: merge the method into the weights for validation and test.
        step_plan: how the training step executes (`engine/modes.py`); eager when None.
        log_every_n_steps: how often the mean training loss is read and logged.
    """

    def __init__(self, model, method: Method, task_cfg: DictConfig, optim: dict,
                 merge_on_eval: bool = True, step_plan: StepPlan | None = None,
                 log_every_n_steps: int = 10):  # fmt: skip
        loss = loss_for(task_cfg.problem, float(task_cfg.get("label_smoothing") or 0.0))
        super().__init__(model, method, loss, optim, merge_on_eval, step_plan, log_every_n_steps)
        self.regression = task_cfg.problem == "regression"
        num_labels = 1 if self.regression else len(task_cfg.label_names)
        metrics = build_metrics(list(task_cfg.metrics), num_labels)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Examples scored per evaluation, summed over data-parallel ranks (each exactly once).
        from torchmetrics.aggregation import SumMetric

        self.val_scored, self.test_scored = SumMetric(), SumMetric()
        self.examples_scored: dict[str, int] = {}  # {"validation": n, "test": n}, latest pass

    def record_extras(self) -> dict:
        """`examples_scored`: examples in the last validation and test pass, over all ranks."""
        return {"examples_scored": dict(self.examples_scored)}

    def _predictions(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        # eval_mask: 0 marks the padding that evens out data-parallel shards (tasks/sampler.py)
        # and the rows that fill a batch to its static shape (engine/buckets.py).
        keep = batch.get("eval_mask")
        logits = self.model(**model_inputs(batch)).logits  # (batch, num_labels)
        preds = logits.squeeze(-1) if self.regression else logits.argmax(-1)
        labels = batch["labels"]
        if keep is not None:
            keep = keep.bool()
            preds, labels = preds[keep], labels[keep]
        return preds, labels

    def _score(self, batch, metrics, scored) -> None:
        preds, labels = self._predictions(batch)
        scored.update(float(labels.numel()))
        if labels.numel():  # a shard's last batch can be all padding
            metrics.update(preds, labels)

    def validation_step(self, batch, batch_idx):
        self._score(batch, self.val_metrics, self.val_scored)

    def test_step(self, batch, batch_idx):
        self._score(batch, self.test_metrics, self.test_scored)

    def on_validation_epoch_end(self):
        # torchmetrics gathers every rank's state in compute(): the values cover the whole split,
        # are the same on every rank, and are logged as they are (no second reduction).
        values = {k: v.item() for k, v in self.val_metrics.compute().items()}
        self.val_metrics.reset()
        self.examples_scored["validation"] = int(self.val_scored.compute().item())
        self.val_scored.reset()
        self.log_dict(values, prog_bar=True)
        self._add_to_history(values)

    def on_test_epoch_end(self):
        values = {k: v.item() for k, v in self.test_metrics.compute().items()}
        self.test_metrics.reset()
        self.examples_scored["test"] = int(self.test_scored.compute().item())
        self.test_scored.reset()
        self.log_dict(values)
