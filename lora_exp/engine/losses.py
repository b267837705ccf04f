"""The training loss of each problem, as a function of (model, batch), weighted by row.

Rows padded onto a short batch (`buckets.py`) carry `loss_weight` 0; the loss is the weighted
mean over rows, sum_i w_i l_i / sum_i w_i, which equals the plain mean of the unpadded batch.
Without `loss_weight` (dynamic padding, every row real) it is the plain mean, the loss
transformers' `*ForSequenceClassification` computes (cross-entropy; squared error for
regression).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lora_exp.errors import UserError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict) -> dict:
    """What the backbone takes: token ids and masks (never labels, weights or eval masks)."""
    return {key: batch[key] for key in MODEL_INPUTS if key in batch}


def weighted_mean(per_row: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """sum_i w_i l_i / sum_i w_i, or the mean of `per_row` (batch,) when `weight` is None."""
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum()


def classification_loss(model, batch: dict) -> torch.Tensor:
    """Cross-entropy of the logits (batch, num_labels) against integer labels (batch,)."""
    logits = model(**model_inputs(batch)).logits
    per_row = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
    return weighted_mean(per_row, batch.get("loss_weight"))


def regression_loss(model, batch: dict) -> torch.Tensor:
    """Squared error of the single output (batch, 1) against float labels (STS-B)."""
    prediction = model(**model_inputs(batch)).logits.squeeze(-1).float()  # (batch,)
    per_row = (prediction - batch["labels"].float()) ** 2
    return weighted_mean(per_row, batch.get("loss_weight"))


def masked_lm_loss(logits, labels, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean token cross-entropy of next-token predictions where labels != -100.

    Label smoothing as the official GPT-2 code (microsoft/LoRA `gpt2_ft.py`) and PyTorch's
    `label_smoothing`: (1 - eps) * NLL + eps * mean over the vocabulary of -log p.

    Args:
        logits: (batch, seq, vocab) outputs at every position.
        labels: (batch, seq) the input ids with masked positions set to -100.
    """
    if logits.shape[1] != labels.shape[1]:
        raise UserError(
            f"the model returned {logits.shape[1]} positions for {labels.shape[1]} input tokens: "
            "a method that inserts positions (prefix tuning's prefix and infix) is not supported "
            "on generation tasks yet"
        )
    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()  # (B*(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1)  # (B*(T-1),)
    return F.cross_entropy(
        shift_logits, shift_labels, ignore_index=-100, label_smoothing=label_smoothing
    )


def causal_lm_loss(label_smoothing: float = 0.0):
    """The masked next-token loss of generation tasks, as a function of (model, batch).

    Padding rows and positions have label -100 and drop out of the token mean exactly.
    """

    def loss(model, batch: dict) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return masked_lm_loss(out.logits, batch["labels"], label_smoothing)

    return loss


def loss_for(problem: str, label_smoothing: float = 0.0):
    """The loss function of a task's `problem`."""
    if problem == "regression":
        return regression_loss
    if problem == "generation":
        return causal_lm_loss(label_smoothing)
    return classification_loss
