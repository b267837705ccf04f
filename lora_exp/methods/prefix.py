"""Prefix-embedding and prefix-layer tuning, the paper's PreEmbed and PreLayer (Sec. 5.1, Table 4).

Both insert l_p special tokens before the input (prefix) and l_i after it (infix):

* prefix_embed: the special tokens' word embeddings train (position embeddings are added by the
  model as for any token). |Θ| = d · (l_p + l_i).
  GPT-3 (d = 12288), l_p=256, l_i=8: 3,244,032 (3.2M, Table 4).
* prefix_layer: the activations at the special positions are replaced by trainable vectors at the
  input of every transformer block ("after every Transformer layer", Sec. 5.1; the first set
  replaces the embedding output). |Θ| = L · d · (l_p + l_i). GPT-3, (8, 8): 18,874,368; Table 15
  prints 20.2M, larger than the paper's own formula (the dry run says so).

Sequence layout (B = batch, T = padded input length, P = l_p, I = l_i):

    [ prefix (P) | pads | input tokens, right-aligned | infix (I) ]      length P + T + I

Right-aligning the input keeps the prefix and infix at fixed positions for every row, and keeps
the last position a real token, which is where GPT-2's sequence-classification head reads.
Position ids count real tokens only, so the input gets the positions it would have after P prefix
tokens, whatever the padding. An input longer than the positions left after P + I loses its
first tokens (with a warning), so the tokens the head reads last are kept.

Works on the GPT-2 family, where the paper uses prefix tuning; on the encoder families (BERT,
RoBERTa, DeBERTa-v2) it raises a UserError (their [CLS]-position pooler and bidirectional masks
would need their own layout, and the paper never applies prefix tuning to them).
"""

from __future__ import annotations

import logging
import re
from functools import partial

import torch
from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.base import Method, freeze_all_but_head, num_blocks
from lora_exp.methods.registry import register
from lora_exp.models import Family

SUPPORTED_FAMILIES = ("gpt2",)
log = logging.getLogger("lora_exp")


class _InputsEmbedsWarning(logging.Filter):
    """Drops GPT-2's 'will not detect padding tokens in inputs_embeds' warning: the layout above
    puts a real token last in every row, so reading position -1 is right."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "padding tokens in `inputs_embeds`" not in record.getMessage()


class PrefixTokens(nn.Module):
    """The trainable vectors and the forward hooks that put them in the sequence.

    Args:
        d: model width.
        l_p, l_i: prefix and infix lengths.
        layers: number of blocks whose input activations are replaced (0 for prefix_embed).
        embedding: the model's input embedding (token ids -> vectors).
        max_positions: the model's number of position embeddings.
        like: a tensor whose device and dtype the parameters take.
    """

    def __init__(self, d, l_p, l_i, layers, embedding, max_positions, like):
        super().__init__()
        if l_p + l_i >= max_positions:
            raise UserError(
                f"prefix l_p={l_p} + infix l_i={l_i} leave no room for the input in the "
                f"model's {max_positions} positions"
            )
        self.l_p, self.l_i, self.max_positions = l_p, l_i, max_positions
        self._warned = False
        self._embedding = [embedding]  # a list: not a submodule, so not counted or saved twice
        kw = {"device": like.device, "dtype": like.dtype}
        if layers:  # prefix_layer: inserted embeddings are placeholders, replaced at block 0
            self.register_buffer("embeddings", torch.zeros(l_p + l_i, d, **kw), persistent=False)
            self.activations = nn.Parameter(torch.empty(layers, l_p + l_i, d, **kw))
            nn.init.normal_(self.activations, std=0.02)  # the scale of GPT-2's embeddings
        else:
            self.embeddings = nn.Parameter(torch.empty(l_p + l_i, d, **kw))
            nn.init.normal_(self.embeddings, std=0.02)

    def _splice(self, vectors: torch.Tensor, middle: torch.Tensor) -> torch.Tensor:
        """[vectors[:P] | middle | vectors[P:]] for every row: (B, T, d) -> (B, P+T+I, d)."""
        b = middle.shape[0]
        vectors = vectors.to(middle.dtype)
        head = vectors[: self.l_p].expand(b, -1, -1)
        tail = vectors[self.l_p :].expand(b, -1, -1)
        return torch.cat([head, middle, tail], dim=1)

    def rewrite_inputs(self, module, args, kwargs):
        """Forward pre-hook of the whole model: input_ids -> inputs_embeds in the layout above."""
        input_ids = kwargs.pop("input_ids", None)
        if args:  # model(input_ids) positionally; anything else must come by keyword
            if input_ids is not None or len(args) > 1:
                raise ValueError("with prefix tuning, pass everything but input_ids by keyword")
            input_ids, args = args[0], ()
        if input_ids is None:
            raise ValueError("prefix tuning needs input_ids (it builds inputs_embeds itself)")
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(input_ids) if mask is None else mask
        order = torch.argsort(mask, dim=1, stable=True)  # pads first, tokens after, order kept
        room = self.max_positions - self.l_p - self.l_i
        if order.shape[1] > room:  # keep the last `room` columns: only pads or a long input's start
            if not self._warned and bool((mask.sum(1) > room).any()):
                log.warning(
                    "prefix tuning: inputs longer than %d tokens (%d positions - l_p - l_i) lose "
                    "their first tokens",
                    room,
                    self.max_positions,
                )
                self._warned = True
            order = order[:, -room:]
        b = input_ids.shape[0]
        ones = mask.new_ones(b, self.l_p), mask.new_ones(b, self.l_i)
        new_mask = torch.cat([ones[0], mask.gather(1, order), ones[1]], dim=1)  # (B, P+T+I)
        positions = (new_mask.cumsum(1) - 1).clamp(min=0)  # real tokens only, < max_positions
        embeds = self._embedding[0](input_ids.gather(1, order))  # (B, T, d)
        kwargs.update(
            inputs_embeds=self._splice(self.embeddings, embeds),
            attention_mask=new_mask,
            position_ids=positions,
        )
        if kwargs.get("token_type_ids") is not None:
            types = kwargs["token_type_ids"].gather(1, order)
            kwargs["token_type_ids"] = nn.functional.pad(types, (self.l_p, self.l_i))
        return args, kwargs

    def replace_activations(self, layer: int, module, args, kwargs):
        """Forward pre-hook of block `layer`: its input at the special positions <- trainable."""
        hidden = args[0] if args else kwargs["hidden_states"]  # (B, P+T+I, d)
        end = hidden.shape[1] - self.l_i
        hidden = self._splice(self.activations[layer], hidden[:, self.l_p : end])
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}


class PrefixTuning(Method):
    """Shared machinery of prefix_embed and prefix_layer."""

    per_layer = False

    def __init__(self, cfg):
        super().__init__(cfg)
        self.l_p, self.l_i = cfg.get("l_p"), cfg.get("l_i")
        for key, value, low in (("l_p", self.l_p, 1), ("l_i", self.l_i, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(
                    f"method.{key} must be an integer >= {low} (the "
                    f"{'prefix' if key == 'l_p' else 'infix'} length), got {value!r}"
                )

    def check(self, family: Family) -> None:
        if family.name not in SUPPORTED_FAMILIES:
            raise UserError(
                f"method {self.name} applies to the GPT-2 family only (where the paper uses "
                f"prefix tuning, Tables 3 and 4), not to model family '{family.name}'; for this "
                "model choose another method (`python run.py --help` lists them)"
            )

    def apply(self, model: nn.Module, family: Family) -> None:
        self.check(family)
        embedding = model.get_input_embeddings()
        layers = num_blocks(model, family)
        freeze_all_but_head(model, family)
        config = model.config
        tokens = PrefixTokens(
            d=embedding.weight.shape[1],
            l_p=self.l_p,
            l_i=self.l_i,
            layers=layers if self.per_layer else 0,
            embedding=embedding,
            max_positions=getattr(config, "n_positions", None) or config.max_position_embeddings,
            like=embedding.weight,
        )
        model.add_module("prefix_tuning", tokens)
        model.register_forward_pre_hook(tokens.rewrite_inputs, with_kwargs=True)
        if self.per_layer:
            for name, block in model.named_modules():
                match = re.fullmatch(family.block_pattern, name + ".")
                if match:
                    hook = partial(tokens.replace_activations, int(match.group(1)))
                    block.register_forward_pre_hook(hook, with_kwargs=True)
        logger = logging.getLogger(type(model).__module__)
        if not any(isinstance(f, _InputsEmbedsWarning) for f in logger.filters):
            logger.addFilter(_InputsEmbedsWarning())

    def describe(self) -> str:
        return f"{self.name} l_p={self.l_p} l_i={self.l_i}"


@register
class PrefixEmbed(PrefixTuning):
    """PreEmbed: trainable embeddings of l_p prefix and l_i infix tokens."""

    name = "prefix_embed"
    table_order = 3


@register
class PrefixLayer(PrefixTuning):
    """PreLayer: trainable activations of the prefix and infix positions at every block."""

    name = "prefix_layer"
    table_order = 4
    per_layer = True
