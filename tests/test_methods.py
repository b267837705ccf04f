"""The method matrix: every method on tiny models of every family (DESIGN.md: tests assert numbers).

Each method setting is one `MethodCase` row of `CASES` (the shape of PEFT's TEST_CASES): its
overrides, closed-form count, which parameters it trains, whether it starts as the base model and
whether it merges. For each (family, row): only the intended parameters train; the trainable count
equals the closed form of the method's docstring; a method that starts as the base function does so
exactly; the method's parameters are on the forward path; save -> load restores the outputs. Rows
that merge are merged too (unmerged vs merged within 1e-5, unmerge restores every frozen weight bit
for bit, a permanent merge leaves exactly the base parameters).

The families are the `FamilyCase` rows of tests/family_cases.py: a new family needs no edit here.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pytest
import torch
from omegaconf import OmegaConf

from lora_exp.errors import UserError
from lora_exp.measure.params import count_parameters
from lora_exp.methods import METHODS, build_method
from lora_exp.methods.adapter import AfterSublayer, AroundPostLN
from lora_exp.models import Family, block_index, get_family, is_head_parameter
from tests.conftest import CONF, compose
from tests.family_cases import CASES as FAMILY_ROWS
from tests.family_cases import FAMILY_CASES, TINY_MODELS, Arch, lora_count


@dataclass(frozen=True, kw_only=True)
class MethodCase:
    """One method setting and every fact the shared tests check about it (PEFT's TEST_CASES).

    Every field but `families` is required, so a row that forgets one fails at collection.

    Attributes:
        overrides: the command-line overrides that select the setting.
        closed_form: trainable parameters, head excluded, by the method docstring's formula.
        intended: whether the non-head parameter `name` trains: (name, family, arch) -> bool.
        starts_as_base: the model computes exactly the base function right after `apply`.
        merges: the method can fold itself into the weights (`can_merge`; the merge test runs).
        families: the tiny models the setting applies to.
    """

    overrides: tuple[str, ...]
    closed_form: Callable[[Arch], int]
    intended: Callable[[str, Family, Arch], bool]
    starts_as_base: bool
    merges: bool
    families: tuple[str, ...] = TINY_MODELS


def full_ft_count(a: Arch) -> int:
    """Every backbone parameter: outside the blocks, and L blocks."""
    return a.row.outside(a) + a.layers * a.block_size()


def bitfit_count(a: Arch) -> int:
    """Every backbone bias (bitfit.py's formula, per family)."""
    return a.row.biases(a)


def bottleneck(a: Arch, r: int = 4) -> int:
    """One adapter of bottleneck r: 2 d r + r + d."""
    return 2 * a.d * r + r + a.d


def lora_parameter(name: str, *_) -> bool:
    return ".lora_A" in name or ".lora_B" in name


def adapter_parameter(name: str, *_) -> bool:
    return ".adapter." in name


def prefix_parameter(name: str, *_) -> bool:
    return name.startswith("prefix_tuning.")


# case -> MethodCase: one row per method setting; every shared test below reads it.
CASES = {
    "full_ft": MethodCase(
        overrides=("method=full_ft",),
        closed_form=full_ft_count,
        intended=lambda *_: True,
        starts_as_base=True,
        merges=False,
    ),
    "bitfit": MethodCase(
        overrides=("method=bitfit",),
        closed_form=bitfit_count,
        intended=lambda name, *_: name.endswith(".bias"),
        starts_as_base=True,
        merges=False,
        families=tuple(row.model for row in FAMILY_CASES if row.biases),
    ),
    "ft_top2": MethodCase(
        overrides=("method=ft_top2", "method.num_top_layers=1"),
        closed_form=Arch.block_size,
        intended=lambda name, family, a: block_index(family, name) == a.layers - 1,
        starts_as_base=True,
        merges=False,
    ),
    "lora": MethodCase(
        overrides=("method=lora", "rank=4", "targets=[q,v]"),
        closed_form=lambda a: lora_count(a, 4, ("q", "v")),
        intended=lora_parameter,
        starts_as_base=True,
        merges=True,
    ),
    "lora_all": MethodCase(
        overrides=("method=lora", "rank=2", "targets=[q,k,v,o,ffn_in,ffn_out]"),
        closed_form=lambda a: lora_count(a, 2, ("q", "k", "v", "o", "ffn_in", "ffn_out")),
        intended=lora_parameter,
        starts_as_base=True,
        merges=True,
    ),
    "ia3": MethodCase(
        overrides=("method=ia3",),
        closed_form=lambda a: a.layers * (a.d_kv + a.d_kv + a.f),  # l_k, l_v, l_ff per block
        intended=lambda name, *_: name.endswith(".ia3_l"),
        starts_as_base=True,
        merges=True,
    ),
    "adapter_h": MethodCase(
        overrides=("method=adapter_h", "rank=4"),
        closed_form=lambda a: 2 * a.layers * bottleneck(a),
        intended=adapter_parameter,
        starts_as_base=True,
        merges=False,
    ),
    "adapter_l": MethodCase(
        overrides=("method=adapter_l", "rank=4"),
        closed_form=lambda a: a.layers * (bottleneck(a) + 2 * a.d),
        intended=adapter_parameter,
        starts_as_base=True,
        merges=False,
    ),
    "adapter_p": MethodCase(
        overrides=("method=adapter_p", "rank=4"),
        closed_form=lambda a: a.layers * bottleneck(a),
        intended=adapter_parameter,
        starts_as_base=True,
        merges=False,
    ),
    "adapter_d": MethodCase(
        overrides=("method=adapter_d", "rank=4", "method.drop_layers=1"),
        closed_form=lambda a: (a.layers - 1) * bottleneck(a),
        intended=adapter_parameter,
        starts_as_base=True,
        merges=False,
    ),
    "prefix_embed": MethodCase(  # on encoders: see test_bad_input_at_apply
        overrides=("method=prefix_embed", "method.l_p=3", "method.l_i=2"),
        closed_form=lambda a: a.d * (3 + 2),
        intended=prefix_parameter,
        starts_as_base=False,
        merges=False,
        families=("tiny-gpt2",),
    ),
    "prefix_layer": MethodCase(
        overrides=("method=prefix_layer", "method.l_p=3", "method.l_i=2"),
        closed_form=lambda a: a.layers * a.d * (3 + 2),
        intended=prefix_parameter,
        starts_as_base=False,
        merges=False,
        families=("tiny-gpt2",),
    ),
}


def batch(seed: int = 1) -> dict:
    """Two rows, the second right-padded (pad id 0), as the data collator makes them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


@cache
def method_config(case: str):
    """The method's config, composed once per case (Hydra's compose costs ~0.2 s)."""
    return compose(list(CASES[case].overrides)).method


_BASES: dict = {}


def setup(tiny_model, family_name: str, case: str, init_seed: int = 100):
    """(model with the method applied, base copy, method, model cfg); one backbone per family."""
    if family_name not in _BASES:
        _BASES[family_name] = tiny_model(family_name, seed=0)
    backbone, cfg = _BASES[family_name]
    model, base = copy.deepcopy(backbone), copy.deepcopy(backbone)
    method = build_method(method_config(case))
    torch.manual_seed(init_seed)
    method.apply(model, get_family(cfg.model.family))
    return model.eval(), base, method, cfg


def perturb(model, family, head: bool = False) -> None:
    """Give every trainable non-head (or head) parameter a trained-looking non-zero value."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and is_head_parameter(family, name) == head:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


MATRIX = [
    (fam, name) for fam in TINY_MODELS for name, case in CASES.items() if fam in case.families
]


@pytest.mark.parametrize(("family_name", "case"), MATRIX)
def test_method_matrix(tiny_model, family_name, case):
    row = CASES[case]
    model, base, method, cfg = setup(tiny_model, family_name, case)
    family, arch = get_family(cfg.model.family), Arch.of(cfg)
    inputs = batch()

    # 1. Only the intended parameters train, and their number is the closed form.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {
        n
        for n, _ in model.named_parameters()
        if is_head_parameter(family, n) or row.intended(n, family, arch)
    }
    assert trainable == expected
    assert count_parameters(model, family)["params/trainable"] == row.closed_form(arch)
    assert {p for p in map(id, method.trainable_parameters(model))} == {
        id(p) for p in model.parameters() if p.requires_grad
    }
    assert method.can_merge == row.merges

    # 2. Methods that start as the pretrained function (LoRA, adapters) do so exactly.
    before = logits(model, inputs)
    if row.starts_as_base:
        assert torch.equal(before, logits(base, inputs))

    # 3. The method's parameters are on the forward path: the logits move by far more than float
    # noise (the same pass twice is bit-identical on CPU). Vectors that rescale activations by
    # 1 ± 0.1 move the tiny random encoders' logits (|logit| ~ 0.02) by only ~2e-5, where an
    # additive update moves them by 2e-4 or more: hence 1e-6.
    perturb(model, family)
    trained = logits(model, inputs)
    assert (trained - before).abs().max().item() > 1e-6

    # 4. Save -> load into a fresh copy of the backbone restores the outputs exactly.
    perturb(model, family, head=True)
    trained = logits(model, inputs)
    state = method.state_to_save(model)
    assert set(state) == trainable
    fresh, _, method2, _ = setup(tiny_model, family_name, case, init_seed=200)
    assert not torch.equal(logits(fresh, inputs), trained)
    method2.load_saved(fresh, state)
    assert torch.equal(logits(fresh, inputs), trained)


MERGING = [(fam, name) for fam, name in MATRIX if CASES[name].merges]


@pytest.mark.parametrize(("family_name", "case"), MERGING)
def test_merge_and_permanent_merge(tiny_model, family_name, case):
    model, base, method, cfg = setup(tiny_model, family_name, case)
    family = get_family(cfg.model.family)
    perturb(model, family)
    inputs = batch()
    unmerged = logits(model, inputs)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    method.merge(model)
    assert (logits(model, inputs) - unmerged).abs().max().item() <= 1e-5
    method.unmerge(model)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
    assert torch.equal(logits(model, inputs), unmerged)
    method.merge_and_unload(model)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in base.parameters())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in base.named_parameters()]
    assert (logits(model, inputs) - unmerged).abs().max().item() <= 1e-5


@pytest.mark.parametrize("case", ["prefix_embed", "prefix_layer"])
def test_prefix_ignores_padding(tiny_model, case):
    """A padded row gives the logits it gives alone: the head reads the last real position."""
    model, _, _, cfg = setup(tiny_model, "tiny-gpt2", case)
    perturb(model, get_family(cfg.model.family))
    inputs = batch()
    alone = {"input_ids": inputs["input_ids"][1:, :6], "attention_mask": torch.ones(1, 6).long()}
    padded = logits(model, inputs)[1]
    assert (padded - logits(model, alone)[0]).abs().max().item() < 1e-5


def test_prefix_truncates_long_inputs_from_the_left(tiny_model):
    """tiny-gpt2 has 128 positions; with l_p + l_i = 5, a 130-token input keeps its last 123."""
    model, _, _, cfg = setup(tiny_model, "tiny-gpt2", "prefix_layer")
    perturb(model, get_family(cfg.model.family))
    ids = torch.randint(1000, 2000, (1, 130), generator=torch.Generator().manual_seed(2))
    full = logits(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    tail = ids[:, -123:]
    kept = logits(model, {"input_ids": tail, "attention_mask": torch.ones_like(tail)})
    assert (full - kept).abs().max().item() < 1e-5


def test_adapters_cannot_merge(tiny_model):
    model, _, method, _ = setup(tiny_model, "tiny-bert", "adapter_h")
    assert not method.can_merge
    with pytest.raises(UserError, match="cannot be merged"):
        method.merge_and_unload(model)


@pytest.mark.parametrize(
    ("family_name", "overrides", "message"),
    [
        ("tiny-bert", ["method=lora", "rank=33"], "rank=33 is larger than the adapted matrix"),
        ("tiny-gpt2", ["method=lora", "rank=40"], "32 x 32 per fused part, so rank must be <= 32"),
        ("tiny-bert", ["method=adapter_d", "method.drop_layers=2"], "removes adapters from all 2"),
        ("tiny-gpt2", ["method=ft_top2", "method.num_top_layers=3"], "has only 2 blocks"),
        ("tiny-roberta", ["method=prefix_embed"], "GPT-2 family only"),
        ("tiny-deberta", ["method=prefix_layer"], "not to model family 'deberta_v2'"),
        ("tiny-gpt2", ["method=prefix_embed", "method.l_p=120", "method.l_i=8"], "leave no room"),
    ],
)
def test_bad_input_at_apply(tiny_model, family_name, overrides, message):
    model, _ = tiny_model(family_name)
    cfg = compose([f"model={family_name}", *overrides])
    method = build_method(cfg.method)
    with pytest.raises(UserError, match=message):
        method.apply(model, get_family(cfg.model.family))


@pytest.mark.parametrize("family_name", [row.model for row in FAMILY_CASES if row.biases is None])
def test_bitfit_refuses_a_family_without_biases(tiny_model, family_name):
    """A row with `biases=None` states that BitFit has nothing to train there: it must say so."""
    model, cfg = tiny_model(family_name)
    method = build_method(compose([f"model={family_name}", "method=bitfit"]).method)
    family = cfg.model.family
    with pytest.raises(UserError, match=f"family '{family}' has none; use a config with biases"):
        method.apply(model, get_family(family))


def test_bitfit_trains_llama_attention_biases_where_the_config_sets_them():
    """`attention_bias` gives q, k, v and o biases: L (d + 2 d_kv + d) = 2 (32 + 16 + 16 + 32)."""
    from lora_exp.dry_run import dry_counts

    cfg = compose(["model=tiny-llama", "method=bitfit", "++model.arch.attention_bias=true"])
    counts, _ = dry_counts(cfg)
    assert counts["params/trainable"] == 192


def test_bitfit_refuses_a_backbone_without_biases(tiny_model):
    """Nothing to train but the head is a mistake to report, not a run (bias-free decoders)."""
    model, _ = tiny_model("tiny-bert")
    for module in model.modules():
        if isinstance(getattr(module, "bias", None), torch.nn.Parameter):
            module.bias = None
    method = build_method(compose(["method=bitfit"]).method)
    with pytest.raises(UserError, match="this model of family 'bert' has none"):
        method.apply(model, get_family("bert"))
    assert all(p.requires_grad for p in model.parameters())  # refused before freezing anything


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=prefix_embed", "method.l_p=0"], "method.l_p must be an integer >= 1"),
        (["method=prefix_layer", "method.l_i=-1"], "method.l_i must be an integer >= 0"),
        (["method=adapter_d", "method.drop_layers=-1"], "drop_layers must be an integer >= 0"),
        (["method=adapter_h", "method.activation=softmax"], "activation must be one of"),
        (["method=ft_top2", "method.num_top_layers=0"], "num_top_layers must be a positive"),
    ],
)
def test_bad_method_settings_fail_at_build(overrides, message):
    with pytest.raises(UserError, match=message):
        build_method(compose(overrides).method)


# (tiny model, adapter case) for every placement a FamilyCase row states.
PLACEMENT = [(row.model, case) for row in FAMILY_CASES for case in row.adapters]


@pytest.mark.parametrize(("family_name", "case"), PLACEMENT)
def test_adapter_placement(tiny_model, family_name, case):
    """Which module each adapter wraps, in every block that has adapters."""
    model, _, _, cfg = setup(tiny_model, family_name, case)
    family = get_family(cfg.model.family)
    wrapped = {}
    for name, module in model.named_modules():
        if isinstance(module, AfterSublayer | AroundPostLN):
            block = block_index(family, name + ".")
            site = re.sub(family.block_pattern, "", name, count=1)  # e.g. "output.dropout"
            wrapped[(block, site)] = type(module).__name__
    blocks = [1] if case == "adapter_d" else [0, 1]
    sites = FAMILY_ROWS[family_name].adapters[case]
    assert wrapped == {(b, site): kind for b in blocks for site, kind in sites.items()}


def test_pfeiffer_equals_the_paper_code_on_post_ln_blocks(tiny_model):
    """The paper code's RobertaOutput with a Pfeiffer adapter: r = h; z = LN(h + x);
    z = adapter(z, residual=r); out = LN(z + x). Ours wraps the LayerNorm: LN(s + f(LN(s)))."""
    model, _, _, _ = setup(tiny_model, "tiny-roberta", "adapter_p")
    perturb(model, get_family("roberta"))
    output = model.roberta.encoder.layer[0].output  # RobertaOutput: dense, dropout, LayerNorm
    ln, adapter = output.LayerNorm.inner, output.LayerNorm.adapter
    g = torch.Generator().manual_seed(0)
    hidden, x = torch.randn(2, 5, 64, generator=g), torch.randn(2, 5, 32, generator=g)
    with torch.no_grad():
        h = output.dense(hidden)  # eval mode: the dropout is the identity
        residual = h
        z = ln(h + x)
        z = adapter(z) + residual  # the paper code's Adapter(z, residual) = W_B act(W_A z) + r
        expected = ln(z + x)
        assert torch.allclose(output(hidden, x), expected, atol=1e-6)
        assert (expected - ln(h + x)).abs().max() > 1e-3  # the adapter does something


def test_a_method_module_registers_itself(tmp_path, monkeypatch):
    """Discovery, not a list: a new module with a @register class is found without any edit."""
    import lora_exp.methods as package

    (tmp_path / "probe_method.py").write_text(
        "from lora_exp.methods.base import Method\n"
        "from lora_exp.methods.registry import register\n\n\n"
        "@register\n"
        "class Probe(Method):\n"
        "    name = 'probe'\n\n"
        "    def apply(self, model, family):\n"
        "        pass\n"
    )
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    try:
        package._import_every_module()
        assert METHODS["probe"].__name__ == "Probe"
        assert build_method(OmegaConf.create({"name": "probe"})).describe() == "probe"
    finally:
        METHODS.pop("probe", None)
        sys.modules.pop("lora_exp.methods.probe_method", None)


def test_every_method_yaml_names_a_registered_method():
    assert {p.stem for p in (CONF / "method").glob("*.yaml")} == set(METHODS)


def test_unknown_method_lists_the_registered_ones():
    registered = ", ".join(sorted(METHODS))
    with pytest.raises(
        UserError, match=f"unknown method 'lora2'; registered methods: {registered}$"
    ):
        build_method(OmegaConf.create({"name": "lora2"}))


def test_every_family_has_one_family_case_row():
    """The family matrix covers every Family and every tiny model YAML, and agrees with both."""
    from lora_exp.models import FAMILIES

    assert sorted(row.family for row in FAMILY_CASES) == sorted(FAMILIES)
    assert {p.stem for p in (CONF / "model").glob("tiny-*.yaml")} == set(TINY_MODELS)
    for row in FAMILY_CASES:
        assert compose([f"model={row.model}"]).model.family == row.family, row.model
        assert get_family(row.family).decoder == row.causal_lm, row.model
        assert set(row.adapters) <= {name for name in CASES if name.startswith("adapter_")}
