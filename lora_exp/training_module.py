"""What every problem's LightningModule shares: the method, the training step, merges, checkpoints.

A problem (classification and regression in `module.py`, generation in `generation_module.py`)
is a subclass that says how a batch is scored for validation and test; everything about training
is here, once:

* Optimisation follows the paper's appendix D: AdamW over the method's trainable parameters only,
  linear warm-up over `warmup_ratio` of the steps (or `warmup_steps`), then linear decay to zero.
* The training step is `lora_exp.engine.step.TrainStep` (forward, loss, backward, clipping,
  optimizer and schedule in one object, run eagerly, compiled or replayed as a CUDA graph), so the
  module uses Lightning's manual optimization and reads the loss back once per logging interval,
  never per step.
* Methods that can merge (LoRA) are merged for validation and test, so evaluation runs the model
  that would be deployed, with no extra latency (Sec. 4.1), and unmerged before training resumes.
* Checkpoints hold only what the method saves (`model.<name>` keys), plus the epoch history and
  the RNG state a resume needs. No hyperparameters are saved: the run record holds the config.

Each subclass calls this constructor with its loss; none copies these fields by hand.
"""

from __future__ import annotations

import lightning as L
import torch

from lora_exp.engine.modes import StepPlan
from lora_exp.methods import Method

AUTOCAST = {"bf16-mixed": torch.bfloat16, "bf16-true": None, "16-mixed": torch.float16}


class TrainingModule(L.LightningModule):
    """A (method-modified) HF model trained by `TrainStep`, evaluated merged.

    Args:
        model: a transformers model after `method.apply`.
        method: the method, asked which parameters train, how to merge and what to save.
        loss_fn: (model, batch) -> scalar training loss (`engine/losses.py`).
        optim: dict with lr, weight_decay, warmup_ratio (and optional warmup_steps, clip_val).
        merge_on_eval: merge the method into the weights for validation and test.
        step_plan: how the training step executes (`engine/modes.py`); eager when None.
        log_every_n_steps: how often the mean training loss is read and logged.
    """

    def __init__(self, model, method: Method, loss_fn, optim: dict, merge_on_eval: bool = True,
                 step_plan: StepPlan | None = None, log_every_n_steps: int = 10):  # fmt: skip
        super().__init__()
        self.model, self.method, self.optim, self.loss_fn = model, method, optim, loss_fn
        self.merge_on_eval = merge_on_eval and method.can_merge
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

    def record_extras(self) -> dict:
        """The problem's own top-level fields of the run record, read after the test."""
        return {}

    def task_info(self) -> dict:
        """What the test learned about the task's scoring, for the record's `task`."""
        return {}

    # --- training: one TrainStep call per batch ---
    def _build_train_step(self):
        from lora_exp.engine.step import TrainStep

        optimizer = self.optimizers().optimizer  # the torch optimizer inside Lightning's wrapper
        clip_val = self.optim.get("clip_val")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        loss_scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None

        def clip():
            if loss_scaled:  # fp16: Lightning unscales the gradients before it clips them
                self.clip_gradients(
                    optimizer, gradient_clip_val=clip_val, gradient_clip_algorithm="norm"
                )
            else:
                # bf16 and fp32 have no loss scale, so the gradients are the true ones and torch
                # clips them exactly (no host synchronisation, so it captures in a CUDA graph).
                # Lightning's AMP plugin refuses to clip for the fused AdamW used on a GPU.
                torch.nn.utils.clip_grad_norm_(params, clip_val)

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

    def _add_to_history(self, values: dict) -> None:
        """One validation epoch's metrics (and the epoch's mean training loss) for the record."""
        if self.trainer.sanity_checking:
            return
        entry = {"epoch": self.current_epoch, "step": self.global_step, **values}
        mean = self._epoch_train_loss()
        if mean is not None:
            entry["train/loss_mean"] = mean
        self.history.append(entry)

    def step_report(self) -> dict:
        """For the run record: the mode that ran, why, and whether it fell back to eager."""
        plan = self.step_plan
        report = {"requested": plan.requested, "mode": plan.mode, "reason": plan.reason}
        if self.train_step is not None:
            report.update(self.train_step.report())
            if report["fallback"]:
                report["mode"] = "eager"
        return report

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
