"""Our LoRA and (IA)3 against PEFT's, on the same base weights and the same trained tensors.

The families are the `FamilyCase` rows of tests/family_cases.py, which say what PEFT can express.

* Every family of whole-module sites (rows with `peft_lora`: all but GPT-2): our LoRA and
  `peft.get_peft_model` give the same logits (1e-6) and train as many parameters.
* GPT-2 q/v slice of the fused c_attn: against the direct computation W0 + (alpha/r) B A written
  into the q and v columns of c_attn, which PEFT cannot express (its c_attn target adapts q, k, v
  with one update); the export says so.
* Export: our adapter, written in PEFT's format, loads with `PeftModel.from_pretrained` and
  reproduces the logits (head included).
* (IA)3: PEFT's `IA3Config` on the same modules (k, v scaled on their output, the FFN output
  matrix on its input: `feedforward_modules`) gives the same logits, the same trainable count and
  the same merged weights on every family; on GPT-2 PEFT's vector covers all of c_attn, so there
  its q part is held at one and it trains L · d more. The export loads in PEFT on every family.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lora_exp.errors import UserError
from lora_exp.methods import build_method
from lora_exp.methods.ia3 import ia3_layers
from lora_exp.methods.lora import lora_layers
from lora_exp.methods.peft_export import export_peft
from lora_exp.models import get_family, is_head_parameter
from tests.conftest import compose
from tests.family_cases import ALL_TARGETS as ALL
from tests.family_cases import CASES, FAMILY_CASES, TINY_MODELS, Arch

peft = pytest.importorskip("peft")

# Families whose sites are whole modules, which PEFT targets as we do.
PLAIN = [row.model for row in FAMILY_CASES if row.peft_lora]


def with_lora(tiny_model, name: str, targets: str, rank: int = 4, alpha: int = 8):
    """(base copy, model with our LoRA and non-zero A, B, method, family)."""
    model, cfg = tiny_model(name)
    base = copy.deepcopy(model)
    method_cfg = compose([f"rank={rank}", f"alpha={alpha}", f"targets=[{targets}]"]).method
    method = build_method(method_cfg)
    family = get_family(cfg.model.family)
    method.apply(model, family)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(0.2 * torch.randn(layer.lora_B.shape, generator=g))
    return base, model.eval(), method, family


def batch() -> dict:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1000, 2000, (2, 10), generator=g)
    mask = torch.ones_like(ids)
    ids[1, 7:], mask[1, 7:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch()).logits


@pytest.mark.parametrize("targets", ["q,v", ALL])
@pytest.mark.parametrize("name", PLAIN)
def test_same_logits_as_peft_lora(tiny_model, name, targets):
    base, ours, _, _ = with_lora(tiny_model, name, targets)
    layers = {n: m for n, m in ours.named_modules() if m in set(lora_layers(ours))}
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=sorted(layers))
    theirs = peft.get_peft_model(base, config).eval()
    inner = theirs.base_model.model
    with torch.no_grad():
        for name_, layer in layers.items():
            module = inner.get_submodule(name_)
            module.lora_A["default"].weight.copy_(layer.lora_A)  # (r, d_in)
            module.lora_B["default"].weight.copy_(layer.lora_B)  # (d_out, r)
    assert theirs.get_nb_trainable_parameters()[0] == sum(
        p.numel() for n, p in ours.named_parameters() if "lora_" in n
    )
    assert (logits(ours) - logits(theirs)).abs().max().item() <= 1e-6


def test_gpt2_qv_slice_equals_direct_computation(tiny_model):
    base, ours, _, _ = with_lora(tiny_model, "tiny-gpt2", "q,v", rank=2, alpha=16)
    direct = copy.deepcopy(base)
    for i, layer in enumerate(lora_layers(ours)):
        d, r = layer.in_features, layer.rank
        a, b = layer.lora_A.view(2, r, d), layer.lora_B.view(2, d, r)
        with torch.no_grad():
            weight = direct.transformer.h[i].attn.c_attn.weight  # Conv1D: (d_in, 3 d) = [q | k | v]
            weight[:, :d] += (layer.scaling * b[0] @ a[0]).T
            weight[:, 2 * d :] += (layer.scaling * b[1] @ a[1]).T
    assert (logits(ours) - logits(direct)).abs().max().item() <= 1e-5
    # As many parameters as PEFT's single update on c_attn (d_in + 3d) r = 4 d r per layer.
    d = ours.config.n_embd
    lora = sum(p.numel() for n, p in ours.named_parameters() if "lora_" in n)
    assert lora == ours.config.n_layer * 4 * d * 2


def assert_export_loads_in_peft(base, ours, method, family, tmp_path) -> None:
    """`export_peft` of `ours`, with a trained head, loads onto `base` with the same logits."""
    with torch.no_grad():  # a trained head: the export must carry it
        for n, p in ours.named_parameters():
            if is_head_parameter(family, n):
                p.add_(0.5)
    export_peft(method, ours, family, tmp_path)
    loaded = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    assert (logits(ours) - logits(loaded)).abs().max().item() <= 1e-6


@pytest.mark.parametrize(
    ("name", "targets"), [(row.model, row.peft_export_targets) for row in FAMILY_CASES]
)
def test_export_loads_in_peft_with_the_same_logits(tiny_model, tmp_path, name, targets):
    base, ours, method, family = with_lora(tiny_model, name, targets)
    assert_export_loads_in_peft(base, ours, method, family, tmp_path)


@pytest.mark.parametrize("name", [row.model for row in FAMILY_CASES if not row.peft_lora])
def test_export_refuses_fused_qv(tiny_model, tmp_path, name):
    """PEFT cannot express q, v as slices of a fused c_attn (its target adapts q, k, v as one)."""
    _, ours, method, family = with_lora(tiny_model, name, "q,v")
    with pytest.raises(UserError, match="PEFT cannot express LoRA on slices of the fused"):
        export_peft(method, ours, family, tmp_path)
    assert not (tmp_path / "adapter_config.json").exists()


def test_export_refuses_a_method_peft_lacks(tiny_model, tmp_path):
    model, _ = tiny_model("tiny-bert")
    method, family = build_method(compose(["method=adapter_h"]).method), get_family("bert")
    method.apply(model, family)
    with pytest.raises(UserError, match="method adapter_h has no PEFT equivalent"):
        export_peft(method, model, family, tmp_path)


def test_export_run_of_a_pretrained_minilm_run(tmp_path):
    """`python -m lora_exp.methods.peft_export RUN_DIR OUT` on a (simulated) finished MiniLM run."""
    import json

    from omegaconf import OmegaConf

    from lora_exp.methods.peft_export import export_run
    from lora_exp.models import load_backbone

    cfg = compose(["model=minilm", "rank=2"])
    family = get_family(cfg.model.family)
    labels = len(cfg.task.label_names)
    model = load_backbone(cfg.model, labels, cfg.task.problem, pad_token_id=0)
    method = build_method(cfg.method)
    method.apply(model, family)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "record.json").write_text(
        json.dumps({"config": OmegaConf.to_container(cfg, resolve=True)})
    )
    state = {f"model.{k}": v for k, v in method.state_to_save(model).items()}
    torch.save({"state_dict": state}, run / "checkpoints" / "best.ckpt")

    out = export_run(run, tmp_path / "peft")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["r"] == 2 and config["modules_to_save"] == ["bert.pooler", "classifier"]
    fresh = load_backbone(cfg.model, labels, cfg.task.problem, pad_token_id=0)
    loaded = peft.PeftModel.from_pretrained(fresh, out).eval()
    assert (logits(model.eval()) - logits(loaded)).abs().max().item() <= 1e-5


def test_export_run_refuses_random_weights(tmp_path):
    import json

    from omegaconf import OmegaConf

    from lora_exp.methods.peft_export import export_run

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"")
    config = OmegaConf.to_container(compose(["model=tiny-bert"]), resolve=True)
    (tmp_path / "record.json").write_text(json.dumps({"config": config}))
    with pytest.raises(UserError, match="random weights that no file keeps"):
        export_run(tmp_path, tmp_path / "out")


def with_ia3(tiny_model, name: str):
    """(base copy, model with our (IA)3 and vectors away from one, method, family)."""
    model, cfg = tiny_model(name)
    base = copy.deepcopy(model)
    method = build_method(compose(["method=ia3"]).method)
    family = get_family(cfg.model.family)
    method.apply(model, family)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in ia3_layers(model).values():
            layer.ia3_l.add_(0.3 * torch.randn(layer.ia3_l.shape, generator=g))
    return base, model.eval(), method, family


@pytest.mark.parametrize("name", TINY_MODELS)
def test_same_logits_count_and_merge_as_peft_ia3(tiny_model, name):
    row = CASES[name]
    base, ours, method, _ = with_ia3(tiny_model, name)
    layers = ia3_layers(ours)
    config = peft.IA3Config(
        target_modules=sorted(layers),
        feedforward_modules=sorted(n for n, m in layers.items() if m.on_input),
        fan_in_fan_out=row.peft_fan_in_fan_out,
    )
    theirs = peft.get_peft_model(base, config).eval()
    inner = theirs.base_model.model
    with torch.no_grad():
        for module_name, layer in layers.items():
            # PEFT's shapes: (d_out, 1) on an output, (1, d_in) on an input; on GPT-2's c_attn
            # its vector spans q, k and v, and ours has exact ones on q.
            vector = layer.scale()
            shaped = vector[None, :] if layer.on_input else vector[:, None]
            inner.get_submodule(module_name).ia3_l["default"].copy_(shaped)
    assert (logits(ours) - logits(theirs)).abs().max().item() <= 1e-6

    ours_count = sum(p.numel() for n, p in ours.named_parameters() if n.endswith(".ia3_l"))
    extra = row.peft_ia3_extra(Arch.of(compose([f"model={name}"])))
    assert theirs.get_nb_trainable_parameters()[0] == ours_count + extra

    method.merge_and_unload(ours)
    merged = theirs.merge_and_unload()
    theirs_state = merged.state_dict()
    assert ours.state_dict().keys() == theirs_state.keys()
    for key, tensor in ours.state_dict().items():
        assert (tensor - theirs_state[key]).abs().max().item() <= 1e-6, key


@pytest.mark.parametrize("name", TINY_MODELS)
def test_ia3_export_loads_in_peft_with_the_same_logits(tiny_model, tmp_path, name):
    base, ours, method, family = with_ia3(tiny_model, name)
    assert_export_loads_in_peft(base, ours, method, family, tmp_path)
