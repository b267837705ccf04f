"""FTTop2: fine-tune only the last two transformer blocks (Li & Liang 2021), Table 3's "FTTop2".

Every parameter of the top `num_top_layers` blocks trains (attention, feed-forward, LayerNorms,
biases), plus the task head; the embeddings, the lower blocks and the final LayerNorm stay frozen.

Trainable parameters, head excluded, for a GPT-2-style block of width d and d_ffn = 4 d:

    |Θ| = k · (12 d² + 13 d)        (c_attn 3d²+3d, c_proj d²+d, c_fc 4d²+4d, mlp.c_proj 4d²+d,
                                     two LayerNorms 4d)

GPT-2 medium (d = 1024), k = 2: 25,192,448, the paper's 25.19M (this answers microsoft/LoRA#148).
A BERT-style block has 4 d² + 2 d d_ffn + 9 d + d_ffn parameters.
"""

from __future__ import annotations

from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.base import Method, freeze_all_but_head, num_blocks
from lora_exp.methods.registry import register
from lora_exp.models import Family, block_index


@register
class FineTuneTopLayers(Method):
    """Train the top `num_top_layers` blocks (2 in the paper) and the head."""

    name = "ft_top2"
    table_order = 2

    def __init__(self, cfg):
        super().__init__(cfg)
        top = cfg.get("num_top_layers", 2)
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise UserError(f"method.num_top_layers must be a positive integer, got {top!r}")
        self.num_top_layers = top

    def apply(self, model: nn.Module, family: Family) -> None:
        total = num_blocks(model, family)
        if self.num_top_layers > total:
            raise UserError(
                f"method.num_top_layers={self.num_top_layers} but the model has only {total} "
                "blocks; use full_ft to train them all"
            )
        first = total - self.num_top_layers
        freeze_all_but_head(model, family)
        for name, param in model.named_parameters():
            index = block_index(family, name)
            if index is not None and index >= first:
                param.requires_grad = True

    def describe(self) -> str:
        return f"ft_top2 (top {self.num_top_layers} blocks + head)"
