"""The LightningModule for sequence classification (and regression, for STS-B).

Optimisation follows the paper's appendix D: AdamW over the method's trainable parameters only,
linear warm-up over `warmup_ratio` of the steps, then linear decay to zero (Table 9). Methods that
can merge (LoRA) are merged for validation and test, so evaluation runs the model that would be
deployed, with no extra latency, and unmerged exactly before training resumes.

Lightning runs the epochs, evaluation, checkpoints and logging; the training step itself is
`lora_exp.engine.step.TrainStep` (forward, loss, backward, clipping, optimizer and schedule in
one object, run eagerly, compiled or replayed as a CUDA graph), so the module uses Lightning's
manual optimization and never reads the loss back per step: it is read once per logging interval.
"""

from __future__ import annotations

import lightning as L
import torch
from omegaconf import DictConfig

from lora_exp.engine.losses import loss_for, model_inputs
from lora_exp.engine.modes import StepPlan
from lora_exp.methods import Method
from lora_exp.tasks.metrics import build_metrics

AUTOCAST = {"bf16-mixed": torch.bfloat16, "bf16-true": None, "16-mixed": torch.float16}


class ClassificationModule(L.LightningModule):
    """Wraps a (method-modified) HF sequence-classification model.

    Args:
        model: a transformers `*ForSequenceClassification` after `method.apply`.
        method: the method, asked which parameters train, how to merge and what to save.
        task_cfg: the `task` config group (metrics, problem type).
        optim: dict with lr, weight_decay, warmup_ratio (and optional warmup_steps, clip_val).
        merge_on_eval: merge the method into the weights for validation and test.
        step_plan: how the training step executes (`engine/modes.py`); eager when None.
        log_every_n_steps: how often the mean training loss is read and logged.
    """

    def __init__(self, model, method: Method, task_cfg: DictConfig, optim: dict,
                 merge_on_eval: bool = True, step_plan: StepPlan | None = None,
                 log_every_n_steps: int = 10):  # fmt: skip
        super().__init__()
        self._init_training(model, method, task_cfg, optim, merge_on_eval, step_plan,
                            log_every_n_steps)  # fmt: skip
        self.regression = task_cfg.problem == "regression"
        num_labels = 1 if self.regression else len(task_cfg.label_names)
        metrics = build_metrics(list(task_cfg.metrics), num_labels)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Examples scored per evaluation, summed over data-parallel ranks (each exactly once).
        from torchmetrics.aggregation import SumMetric

        self.val_scored, self.test_scored = SumMetric(), SumMetric()
        self.examples_scored: dict[str, int] = {}  # {"validation": n, "test": n}, latest pass

    def _init_training(self, model, method, task_cfg, optim, merge_on_eval, step_plan,
                       log_every_n_steps) -> None:  # fmt: skip
        """The training state every problem shares (called by each module's constructor)."""
        self.model, self.method, self.optim = model, method, optim
        self.merge_on_eval = merge_on_eval and method.can_merge
        self.loss_fn = loss_for(task_cfg.problem, float(task_cfg.get("label_smoothing") or 0.0))
        self.step_plan = step_plan or StepPlan("eager", "eager", "eager")
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.automatic_optimization = False  # the step is TrainStep's, whole (engine/step.py)
        self.train_step = None  # built at the first batch, after a resume restored the optimizer
        self.history: list[dict] = []  # one entry per validation epoch, for the run record
        self.resumed_from_epoch: int | None = None  # set when fit resumes from a last.ckpt
        # Checkpoints hold only what the method saves, so loading must not demand frozen weights.
        self.strict_loading = False

    def forward(self, **batch):
        return self.model(**batch)

    # --- training: one TrainStep call per batch ---
    def _build_train_step(self):
        from lora_exp.engine.step import TrainStep

        optimizer = self.optimizers().optimizer  # the torch optimizer inside Lightning's wrapper
        clip_val = self.optim.get("clip_val")

        def clip():
            self.clip_gradients(
                optimizer, gradient_clip_val=clip_val, gradient_clip_algorithm="norm"
            )

        return TrainStep(
            self.model,
            self.loss_fn,
            optimizer,
            self.lr_schedulers(),
            mode=self.step_plan.mode,
            autocast_dtype=AUTOCAST.get(str(self.trainer.precision)),
            backward=self.manual_backward,
            clip=clip if clip_val else None,
        )

    def _reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over data-parallel ranks (they take equal steps); the value on one device."""
        if self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(value.clone(), reduce_op="mean")
        return value

    def training_step(self, batch, batch_idx):
        if self.train_step is None:
            self.train_step = self._build_train_step()
        self.train_step(batch)
        # Lightning counts optimizer steps (global_step) around its optimizer wrapper's step();
        # the step ran inside TrainStep, so count it the same way.
        optimizer = self.optimizers()
        optimizer._on_before_step()
        optimizer._on_after_step()
        if self.global_step % self.log_every_n_steps == 0:
            loss = self.train_step.interval_loss(self._reduce_mean)  # one synchronisation
            # A CPU tensor: Lightning turns a logged float into a tensor on the module's device
            # and reads the progress-bar metrics back after every batch, a host synchronisation
            # per step (found on an H100 with torch.cuda.set_sync_debug_mode; it cost MiniLM's
            # captured step about 1 ms of its 3.4).
            self.log("train/loss", torch.tensor(loss), prog_bar=True, logger=False)
            for logger in self.loggers:
                logger.log_metrics({"train/loss": loss}, step=self.global_step)

    def _epoch_train_loss(self) -> float | None:
        return self.train_step.epoch_loss(self._reduce_mean) if self.train_step else None

    def step_report(self) -> dict:
        """For the run record: the mode that ran, why, and whether it fell back to eager."""
        plan = self.step_plan
        report = {"requested": plan.requested, "mode": plan.mode, "reason": plan.reason}
        if self.train_step is not None:
            report.update(self.train_step.report())
            if report["fallback"]:
                report["mode"] = "eager"
        return report

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
        if self.trainer.sanity_checking:
            return
        entry = {"epoch": self.current_epoch, "step": self.global_step, **values}
        mean = self._epoch_train_loss()
        if mean is not None:
            entry["train/loss_mean"] = mean
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

        from lora_exp.engine.step import build_optimizer

        params = self.method.trainable_parameters(self.model)
        optimizer = build_optimizer(
            params, self.optim["lr"], self.optim["weight_decay"], self.step_plan.mode, self.device
        )
        total = self.trainer.estimated_stepping_batches
        warmup = self.optim.get("warmup_steps")
        warmup = int(warmup) if warmup is not None else int(self.optim["warmup_ratio"] * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
