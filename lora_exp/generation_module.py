"""Causal-LM fine-tuning and beam-search evaluation for generation tasks (E2E, Sec. 5.4, Table 3).

Training (Table 11; microsoft/LoRA `examples/NLG/src/gpt2_ft.py`): cross-entropy on the target
tokens only (the context is masked, `tasks/lm_data.py`), with label smoothing `task.label_smoothing`
(0.1 for E2E): loss = (1 - eps) * NLL + eps * mean over the vocabulary of -log p, which is the
official code's formula and PyTorch's `label_smoothing`. AdamW over the method's parameters, linear
warm-up over `task.warmup_steps` steps (Table 11: 500) or `warmup_ratio`, then linear decay.

Validation: the plain (unsmoothed) teacher-forced loss on the dev rows, `val/loss`, which selects
the best epoch (the official code reports the same quantity; Table 18's "val loss").

Test: one output per MR by beam search with the paper's settings (`task.generation`: beam 10,
length penalty, no repeated 4-grams, at most 64 new tokens, `transformers`' `generate`), then the
E2E challenge's metrics over all references of each MR (`tasks/e2e_metrics.py`), logged as
`test/bleu`, `test/nist`, `test/meteor`, `test/rouge_l`, `test/cider`. The outputs and references
are written in the official script's file format (`predictions/test_hyp.txt`, one line per MR, and
`predictions/test_ref.txt`, references grouped per MR by blank lines), so
`measure_scores.py test_ref.txt test_hyp.txt` from e2e-metrics can check them.

The test runs on one device (every rank would otherwise score only its shard).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from lora_exp.engine.losses import loss_for, masked_lm_loss
from lora_exp.engine.modes import StepPlan
from lora_exp.methods import Method
from lora_exp.training_module import TrainingModule

log = logging.getLogger("lora_exp")


class GenerationModule(TrainingModule):
    """Wraps a (method-modified) HF causal LM (`GPT2LMHeadModel`).

    Training, merge-for-evaluation, method-only checkpoints, resume state and the optimizer are
    `TrainingModule`'s; this class adds the label-smoothed LM loss, the teacher-forced validation
    loss and the beam-search test.

    Args:
        model: a transformers `*ForCausalLM` / `*LMHeadModel` after `method.apply`.
        method: the method (which parameters train, merge, what to save).
        task_cfg: the `task` config group (`label_smoothing`, `generation`).
        optim: dict with lr, weight_decay, warmup_ratio and optional warmup_steps.
        tokenizer: decodes generated ids.
        eos_token_id, pad_token_id: end of text and padding ids for `generate`.
        test_references: per test MR, its references (in test-dataloader index order).
        output_dir: where the predictions are written (None: not written).
        merge_on_eval: merge the method into the weights for validation and test.
        step_plan: how the training step executes (`engine/modes.py`); eager when None.
        log_every_n_steps: how often the mean training loss is read and logged.
    """

    def __init__(
        self,
        model,
        method: Method,
        task_cfg: DictConfig,
        optim: dict,
        tokenizer,
        eos_token_id: int,
        pad_token_id: int,
        test_references: list[list[str]],
        output_dir: Path | None = None,
        merge_on_eval: bool = True,
        step_plan: StepPlan | None = None,
        log_every_n_steps: int = 10,
    ):
        label_smoothing = float(task_cfg.label_smoothing)  # training only (Table 11)
        loss = loss_for(task_cfg.problem, label_smoothing)
        super().__init__(model, method, loss, optim, merge_on_eval, step_plan, log_every_n_steps)
        self.label_smoothing = label_smoothing
        self.generation = task_cfg.generation
        self.tokenizer, self.eos_token_id, self.pad_token_id = tokenizer, eos_token_id, pad_token_id
        self.test_references = test_references
        self.output_dir = output_dir
        self._val_loss_sum = self._val_tokens = 0.0
        self._outputs: dict[int, str] = {}
        self.metric_info: dict = {}

    def record_extras(self) -> dict:
        """`predictions`: the directory holding the beam-search outputs and their references."""
        return {} if self.output_dir is None else {"predictions": str(self.output_dir)}

    def task_info(self) -> dict:
        """`ptb_tokenizer`: which PTB tokenizer the E2E metrics ran (java, or the Python one)."""
        return dict(self.metric_info)

    def _loss(self, batch, label_smoothing: float) -> torch.Tensor:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return masked_lm_loss(out.logits, batch["labels"], label_smoothing)

    def validation_step(self, batch, batch_idx):
        tokens = (batch["labels"][:, 1:] != -100).sum().item()
        self._val_loss_sum += self._loss(batch, 0.0).item() * tokens
        self._val_tokens += tokens

    def on_validation_epoch_end(self):
        values = {"val/loss": self._val_loss_sum / max(self._val_tokens, 1)}
        self._val_loss_sum = self._val_tokens = 0.0
        self.log_dict(values, prog_bar=True)
        self._add_to_history(values)

    # --- test: beam search, then the corpus metrics ---
    @torch.no_grad()
    def generate(self, input_ids, attention_mask) -> list[str]:
        """Beam-search continuations of left-padded prompts, decoded, one string per prompt."""
        g = self.generation
        max_new = int(g.max_new_tokens)
        positions = getattr(self.model.config, "n_positions", None)  # GPT-2's context window
        if positions is not None:
            max_new = max(1, min(max_new, positions - input_ids.shape[1]))
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            num_beams=int(g.num_beams),
            length_penalty=float(g.length_penalty),
            no_repeat_ngram_size=int(g.no_repeat_ngram_size),
            repetition_penalty=float(g.repetition_penalty),
            max_new_tokens=max_new,
            do_sample=False,
            early_stopping=bool(g.early_stopping),
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )  # (batch, prompt_len + new)
        new = out[:, input_ids.shape[1] :]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    def on_test_epoch_start(self):
        self._outputs = {}

    def test_step(self, batch, batch_idx):
        texts = self.generate(batch["input_ids"], batch["attention_mask"])
        for index, text in zip(batch["index"].tolist(), texts, strict=True):
            self._outputs[index] = text

    def on_test_epoch_end(self):
        from lora_exp.tasks.e2e_metrics import score_e2e

        if self.trainer.world_size > 1:
            raise RuntimeError("generation metrics need the whole test set: test on one device")
        hypotheses = [self._outputs[i] for i in range(len(self.test_references))]
        scores = score_e2e(
            hypotheses, self.test_references, skip_meteor=bool(self.generation.skip_meteor)
        )
        self.metric_info = {"ptb_tokenizer": "java" if scores.pop("ptb_java") else "python"}
        self.write_predictions(hypotheses)
        self.log_dict({f"test/{k}": float(v) for k, v in scores.items()})

    def write_predictions(self, hypotheses: list[str]) -> None:
        """The official scorer's inputs: one output a line; references grouped by blank lines."""
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "test_hyp.txt").write_text("".join(h + "\n" for h in hypotheses))
        groups = ["".join(r + "\n" for r in refs) for refs in self.test_references]
        (self.output_dir / "test_ref.txt").write_text("\n".join(groups))
