"""The LightningModule for sequence classification (and regression, for STS-B).

Optimisation follows the paper's appendix D: AdamW over the method's trainable parameters only,
linear warm-up over `warmup_ratio` of the steps, then linear decay to zero (Table 9). Methods that
can merge (LoRA) are merged for validation and test, so evaluation runs the model that would be
deployed, with no extra latency, and unmerged exactly before training resumes.
"""

from __future__ import annotations

import lightning as L
import torch
from omegaconf import DictConfig

from lora_exp.methods import Method
from lora_exp.tasks.metrics import build_metrics


class ClassificationModule(L.LightningModule):
    """Wraps a (method-modified) HF sequence-classification model.

    Args:
        model: a transformers `*ForSequenceClassification` after `method.apply`.
        method: the method, asked which parameters train, how to merge and what to save.
        task_cfg: the `task` config group (metrics, problem type).
        optim: dict with lr, weight_decay, warmup_ratio.
        merge_on_eval: merge the method into the weights for validation and test.
    """

    def __init__(
        self, model, method: Method, task_cfg: DictConfig, optim: dict, merge_on_eval: bool = True
    ):
        super().__init__()
        self.model, self.method, self.optim = model, method, optim
        self.merge_on_eval = merge_on_eval and method.can_merge
        self.regression = task_cfg.problem == "regression"
        num_labels = 1 if self.regression else len(task_cfg.label_names)
        metrics = build_metrics(list(task_cfg.metrics), num_labels)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Examples scored per evaluation, summed over data-parallel ranks (each exactly once).
        from torchmetrics.aggregation import SumMetric

        self.val_scored, self.test_scored = SumMetric(), SumMetric()
        self.examples_scored: dict[str, int] = {}  # {"validation": n, "test": n}, latest pass
        self.history: list[dict] = []  # one entry per validation epoch, for the run record
        self._train_losses: list[float] = []
        self.resumed_from_epoch: int | None = None  # set when fit resumes from a last.ckpt
        # Checkpoints hold only what the method saves, so loading must not demand frozen weights.
        self.strict_loading = False

    def forward(self, **batch):
        return self.model(**batch)

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        # sync_dist: the mean over the global batch under DDP (a no-op on one device).
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=True)
        self._train_losses.append(loss.detach().item())
        return loss

    def _predictions(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        # eval_mask: 0 marks the padding that evens out data-parallel shards (tasks/sampler.py).
        keep = batch.pop("eval_mask", None)
        logits = self.model(**batch).logits  # (batch, num_labels)
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
        if self.trainer.sanity_checking:
            return
        entry = {"epoch": self.current_epoch, "step": self.global_step, **values}
        if self._train_losses:
            mean = sum(self._train_losses) / len(self._train_losses)
            if self.trainer.world_size > 1:  # ranks take equal steps: their mean is the global one
                local = torch.tensor(mean, device=self.device)
                mean = self.trainer.strategy.reduce(local, reduce_op="mean").item()
            entry["train/loss_mean"] = mean
            self._train_losses = []
        self.history.append(entry)

    def on_test_epoch_end(self):
        values = {k: v.item() for k, v in self.test_metrics.compute().items()}
        self.test_metrics.reset()
        self.examples_scored["test"] = int(self.test_scored.compute().item())
        self.test_scored.reset()
        self.log_dict(values)

    # --- merge for evaluation (LoRA Sec. 4.1: no additional inference latency) ---
    def on_validation_model_eval(self):
        super().on_validation_model_eval()
        if self.merge_on_eval:
            self.method.merge(self.model)

    def on_validation_model_train(self):
        if self.merge_on_eval:
            self.method.unmerge(self.model)
        super().on_validation_model_train()

    def on_test_model_eval(self):
        super().on_test_model_eval()
        if self.merge_on_eval:
            self.method.merge(self.model)

    def on_test_model_train(self):
        if self.merge_on_eval:
            self.method.unmerge(self.model)
        super().on_test_model_train()

    # --- checkpoints hold only what trained ---
    def on_save_checkpoint(self, checkpoint):
        keep = {f"model.{name}" for name in self.method.state_to_save(self.model)}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        # For exact resumption: the epoch history and the RNG that drives dropout.
        checkpoint["lora_exp"] = {
            "history": list(self.history),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint):
        self.method.unmerge(self.model)  # load A, B into the unmerged model, never a stale merge
        state = checkpoint.get("lora_exp")
        if state is not None and "optimizer_states" in checkpoint:  # a resume, not a best.ckpt test
            self.history = list(state["history"])
            self.resumed_from_epoch = int(checkpoint["epoch"])
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        params = self.method.trainable_parameters(self.model)
        optimizer = torch.optim.AdamW(
            params, lr=self.optim["lr"], weight_decay=self.optim["weight_decay"]
        )
        total = self.trainer.estimated_stepping_batches
        warmup = int(self.optim["warmup_ratio"] * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
