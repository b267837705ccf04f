"""The family matrix: one `FamilyCase` row per model family, every per-family fact the tests read.

A model family is one `Family` entry in `lora_exp/models.py`, one tiny model YAML in
`conf/model/` and one row of `FAMILY_CASES` here; nothing else in `tests/` names families one by
one. Every field is required, so a row that forgets one fails at collection (as `MethodCase` rows
do in tests/test_methods.py), and tests/test_models.py checks that every `Family` has a row.

Tests parametrise over `FAMILY_CASES` (or `TINY_MODELS`) and read what they check from the row:
the method matrix its closed-form counts and adapter placements, the PEFT parity tests what PEFT
can express, the E2E run whether the family is a causal LM, the DDP, FSDP and compile tests where
its transformer blocks are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class Arch:
    """The architecture numbers a closed form reads (conf/model/tiny-*.yaml: 2 blocks of width
    32, feed-forward width 64, GPT-2's 4 d = 128), and the tiny model's `FamilyCase` row."""

    model: str  # the tiny model, a key of CASES
    d: int
    layers: int
    f: int  # feed-forward width
    d_kv: int  # width of W_k and W_v's output: n_kv_heads · head_dim (d without grouped queries)
    arch: DictConfig  # the rest: vocabulary, positions

    @classmethod
    def of(cls, cfg) -> Arch:
        arch = cfg.model.arch
        d = arch.get("hidden_size") or arch.n_embd
        layers = arch.get("num_hidden_layers") or arch.n_layer
        heads = arch.get("num_attention_heads") or arch.n_head
        kv_heads = arch.get("num_key_value_heads") or heads
        f = arch.get("intermediate_size") or 4 * d
        return cls(cfg.model.name, d, layers, f, d // heads * kv_heads, arch)

    @property
    def row(self) -> FamilyCase:
        return CASES[self.model]

    @property
    def ffn_in(self) -> int:
        """How many matrices the ffn_in site maps per block."""
        return self.row.ffn_in_matrices

    def block_size(self) -> int:
        """Parameters of one transformer block (the FTTop2 closed form)."""
        return self.row.block(self)


@dataclass(frozen=True, kw_only=True)
class FamilyCase:
    """One model family: its tiny model and every fact the shared tests check about it.

    Every field is required, so a row that forgets one fails at collection.

    Attributes:
        model: the tiny random model, `conf/model/<model>.yaml`.
        family: its key in `lora_exp.models.FAMILIES` (the YAML's `family:`).
        blocks: module path of the list of transformer blocks (FSDP wraps, compiles each one).
        positions: tokens one input may hold (`input_positions`: the position table's rows less
            the family's `position_offset`).
        block: parameters of one transformer block, head excluded.
        outside: backbone parameters outside the blocks (embeddings, final norm).
        biases: the backbone's bias parameters (BitFit), None for a backbone without biases
            (BitFit must refuse it).
        ffn_in_matrices: matrices at the ffn_in site of a block (2 for a gated FFN).
        causal_lm: a decoder-only language model (`Family.decoder`): it runs the E2E task, and
            its attention takes the explicit causal-mask path under CUDA-graph capture.
        adapters: adapter method case (tests/test_methods.py CASES) -> {module inside each block
            that the adapter wraps: wrapper class name}; which sub-layer outputs it reads.
        peft_lora: PEFT's LoRA adapts the same modules as ours (every site a whole module; not
            GPT-2's fused c_attn), so both give the same logits for any targets.
        peft_export_targets: LoRA targets whose export (PEFT's format) the tests load in PEFT.
        peft_fan_in_fan_out: the adapted modules are transformers' Conv1D (weights d_in x d_out).
        peft_ia3_extra: how many more parameters PEFT's (IA)3 trains than ours (its vector spans
            all of a fused q, k, v projection, where ours holds q at one).
    """

    model: str
    family: str
    blocks: str
    positions: int
    block: Callable[[Arch], int]
    outside: Callable[[Arch], int]
    biases: Callable[[Arch], int] | None
    ffn_in_matrices: int
    causal_lm: bool
    adapters: Mapping[str, Mapping[str, str]]
    peft_lora: bool
    peft_export_targets: str
    peft_fan_in_fan_out: bool
    peft_ia3_extra: Callable[[Arch], int]


ALL_TARGETS = "q,k,v,o,ffn_in,ffn_out"


def bert_block(a: Arch) -> int:
    """q, k, v, o (d² + d each), FFN (2 d f + f + d), two LayerNorms (4 d)."""
    return 4 * a.d * a.d + 2 * a.d * a.f + 9 * a.d + a.f


def bert_outside(a: Arch) -> int:
    """Word, token-type and absolute position embeddings and their LayerNorm."""
    arch = a.arch
    return (arch.vocab_size + arch.type_vocab_size + arch.max_position_embeddings) * a.d + 2 * a.d


def bert_biases(a: Arch) -> int:
    """q, k, v, o, the FFN's two, two LayerNorms per block, and the embedding LayerNorm."""
    return a.layers * (4 * a.d + a.f + a.d + 2 * a.d) + a.d


def no_extra(_: Arch) -> int:
    return 0


# BertSelfOutput / BertOutput: dense -> dropout -> LayerNorm; adapters read the dropout's output.
BERT_HOULSBY = {"attention.output.dropout": "AfterSublayer", "output.dropout": "AfterSublayer"}

FAMILY_CASES = (
    FamilyCase(
        model="tiny-bert",
        family="bert",
        blocks="bert.encoder.layer",
        positions=130,
        block=bert_block,
        outside=bert_outside,
        biases=bert_biases,
        ffn_in_matrices=1,
        causal_lm=False,
        adapters={"adapter_h": BERT_HOULSBY, "adapter_p": {"output.LayerNorm": "AroundPostLN"}},
        peft_lora=True,
        peft_export_targets="q,v",
        peft_fan_in_fan_out=False,
        peft_ia3_extra=no_extra,
    ),
    FamilyCase(
        model="tiny-roberta",
        family="roberta",
        blocks="roberta.encoder.layer",
        positions=128,  # 130 rows, numbered from padding_idx + 1 = 2
        block=bert_block,
        outside=bert_outside,
        biases=bert_biases,
        ffn_in_matrices=1,
        causal_lm=False,
        adapters={"adapter_h": BERT_HOULSBY},
        peft_lora=True,
        peft_export_targets=ALL_TARGETS,
        peft_fan_in_fan_out=False,
        peft_ia3_extra=no_extra,
    ),
    FamilyCase(
        model="tiny-deberta",
        family="deberta_v2",
        blocks="deberta.encoder.layer",
        positions=130,
        block=lambda a: bert_block(a) + 2 * (a.d * a.d + a.d),  # + pos_key_proj, pos_query_proj
        outside=lambda a: (  # relative, not absolute positions
            (a.arch.vocab_size + a.arch.type_vocab_size) * a.d
            + 2 * a.d
            + 2 * a.arch.max_position_embeddings * a.d
        ),
        biases=lambda a: bert_biases(a) + a.layers * 2 * a.d,
        ffn_in_matrices=1,
        causal_lm=False,
        adapters={"adapter_l": {"output.dropout": "AfterSublayer"}},
        peft_lora=True,
        peft_export_targets="q,v",
        peft_fan_in_fan_out=False,
        peft_ia3_extra=no_extra,
    ),
    FamilyCase(
        model="tiny-gpt2",
        family="gpt2",
        blocks="transformer.h",
        positions=128,
        block=lambda a: 12 * a.d * a.d + 13 * a.d,  # f = 4d
        outside=lambda a: (a.arch.vocab_size + a.arch.n_positions) * a.d + 2 * a.d,  # + ln_f
        biases=lambda a: a.layers * 11 * a.d + a.d,
        ffn_in_matrices=1,
        causal_lm=True,
        adapters={
            "adapter_h": {"attn.resid_dropout": "AfterSublayer", "mlp.dropout": "AfterSublayer"},
            "adapter_p": {"mlp.dropout": "AfterSublayer"},  # pre-LN: no block LayerNorm
            "adapter_d": {"mlp.dropout": "AfterSublayer"},
        },
        peft_lora=False,  # q, v are slices of c_attn: test_gpt2_qv_slice_equals_direct_computation
        peft_export_targets="o,ffn_out",
        peft_fan_in_fan_out=True,
        peft_ia3_extra=lambda a: a.layers * a.d,  # the q third of c_attn
    ),
    FamilyCase(
        model="tiny-llama",
        family="llama",
        blocks="model.layers",
        positions=128,
        # q, o: d²; k, v: d d_kv; gate, up, down: d f; two RMSNorms
        block=lambda a: 2 * a.d * a.d + 2 * a.d * a.d_kv + 3 * a.d * a.f + 2 * a.d,
        outside=lambda a: a.arch.vocab_size * a.d + a.d,  # token embeddings, final RMSNorm
        biases=None,
        ffn_in_matrices=2,
        causal_lm=True,
        adapters={  # no dropout modules: the projections' own outputs
            "adapter_h": {"self_attn.o_proj": "AfterSublayer", "mlp.down_proj": "AfterSublayer"},
        },
        peft_lora=True,
        peft_export_targets=ALL_TARGETS,
        peft_fan_in_fan_out=False,
        peft_ia3_extra=no_extra,
    ),
)

# tiny model -> its row; the tiny models, in matrix order (the usual parametrize argument).
CASES = {case.model: case for case in FAMILY_CASES}
TINY_MODELS = tuple(CASES)


def lora_count(a: Arch, r: int, targets: tuple[str, ...]) -> int:
    """r (d_in + d_out) per adapted matrix (lora.py); k and v are d -> d_kv, the FFN d <-> f."""
    shapes = {
        "q": [(a.d, a.d)],
        "k": [(a.d, a.d_kv)],
        "v": [(a.d, a.d_kv)],
        "o": [(a.d, a.d)],
        "ffn_in": [(a.d, a.f)] * a.ffn_in,
        "ffn_out": [(a.f, a.d)],
    }
    return a.layers * sum(r * (i + o) for t in targets for i, o in shapes[t])
