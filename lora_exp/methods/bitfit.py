"""BitFit (Ben Zaken et al. 2021), the paper's "BitFit" baseline (Sec. 5.1, Tables 2 and 4).

Only the bias vectors of the pretrained backbone train, plus the task head; every weight matrix,
embedding and LayerNorm gain stays frozen. "Bias" means every parameter named `bias`: the q, k, v,
o and feed-forward projections and the LayerNorm shifts (the embedding LayerNorm included).

Trainable parameters, head excluded, for a BERT-style encoder of L layers, width d and
feed-forward width d_ffn (Sec. 5.1 counts):

    |Θ| = L · (4 d  +  d_ffn + d  +  2 d)  +  d
          q,k,v,o   ffn in, out   two LNs    embedding LN

RoBERTa-base (L=12, d=768, d_ffn=3072): 12 · 8,448 + 768 = 102,144 (the paper's 0.1M, Table 2).
A GPT-2-style decoder has L · 11 d + d (ln_f): 12,988,416 for GPT-3 175B, where Table 4 prints
14.2M; the paper does not say which further vectors it counted.

A backbone without bias vectors (Llama-style decoders, unless their config sets
`attention_bias`/`mlp_bias`) leaves BitFit nothing to train: a UserError, not a run that trains
only the head.

Nothing to merge: the biases are the backbone's own parameters, so the trained model is a plain
backbone with no extra latency.
"""

from __future__ import annotations

from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.base import Method, freeze_all_but_head
from lora_exp.methods.registry import register
from lora_exp.models import Family, is_head_parameter


def is_bias(param_name: str) -> bool:
    """True for a bias vector (`...dense.bias`, `...LayerNorm.bias`, `...c_attn.bias`)."""
    return param_name.rsplit(".", 1)[-1] == "bias"


@register
class BitFit(Method):
    """Train the backbone's biases and the head; everything else is frozen."""

    name = "bitfit"
    table_order = 1

    def apply(self, model: nn.Module, family: Family) -> None:
        biases = [
            p
            for n, p in model.named_parameters()
            if is_bias(n) and not is_head_parameter(family, n)
        ]
        if not biases:
            raise UserError(
                f"method bitfit trains the backbone's bias vectors, and this model of family "
                f"'{family.name}' has none; use a config with biases (Llama: "
                "++model.arch.attention_bias=true) or another method"
            )
        freeze_all_but_head(model, family)
        for param in biases:
            param.requires_grad = True

    def describe(self) -> str:
        return "bitfit (all backbone biases + head)"
