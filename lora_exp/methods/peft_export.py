"""Export our LoRA to PEFT's format, so a trained adapter loads with `PeftModel.from_pretrained`.

Writes the two files `PeftModel.save_pretrained` writes:

* `adapter_config.json`: a `LoraConfig` (peft_type LORA, task_type SEQ_CLS, r, lora_alpha,
  lora_dropout, target_modules as full module names, modules_to_save = the task head).
* `adapter_model.safetensors`: `base_model.model.<module>.lora_A.weight` (r × d_in) and
  `...lora_B.weight` (d_out × r) for each adapted matrix, and the head's tensors under
  `base_model.model.<head module>.*`.

Our A, B have PEFT's orientation and scaling (alpha / r), so the same base weights with the
exported adapter give the same logits (tests/test_peft_parity.py checks it).

What PEFT cannot express: GPT-2's q, k and v live in one fused `c_attn` projection. The paper's
code (loralib `MergedLinear(enable_lora=[True, False, True])`) and ours put one (A, B) pair on
each adapted slice (q and v only); PEFT's `c_attn` target puts one rank-r update over the whole
fused output, i.e. over q, k and v together. Exporting a q/k/v target of GPT-2 therefore raises a
UserError. GPT-2's o, ffn_in and ffn_out (whole `Conv1D` matrices) export fine.

Usage: `python -m lora_exp.methods.peft_export RUN_DIR OUT_DIR` exports the best checkpoint of a
finished LoRA run; in code, `export_peft(model, family, out_dir)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from lora_exp.errors import UserError
from lora_exp.methods.lora_layer import LoRALinear
from lora_exp.models import Family, is_head_parameter

PREFIX = "base_model.model."


def _lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not layers:
        raise UserError("the model has no LoRA layers: only method=lora exports to PEFT")
    for name, layer in layers.items():
        if layer.num_parts > 1:
            raise UserError(
                f"PEFT cannot express LoRA on slices of the fused projection {name} "
                f"(parts {list(layer.parts)} of {layer.num_parts}): PEFT's c_attn target applies "
                "one rank-r update to all of q, k and v, while this LoRA (as the paper's GPT-2 "
                "code) has one update per adapted slice. Export works for GPT-2 targets o, "
                "ffn_in, ffn_out and for every target of BERT, RoBERTa and DeBERTa-v2."
            )
    return layers


def peft_config(
    model: nn.Module, family: Family, base_model_name_or_path: str | None = None
) -> dict:
    """The `adapter_config.json` content (a PEFT `LoraConfig`) for the LoRA in `model`."""
    layers = _lora_layers(model)
    settings = {(m.rank, m.alpha, m.fan_in_fan_out) for m in layers.values()}
    if len(settings) != 1:
        raise UserError(f"LoRA layers differ in rank, alpha or orientation: {sorted(settings)}")
    (rank, alpha, fan_in_fan_out) = settings.pop()
    dropout = next(iter(layers.values())).lora_dropout
    names = [n for n, _ in model.named_parameters()]
    head = [p.rstrip(".") for p in family.head_prefixes if any(n.startswith(p) for n in names)]
    return {
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": base_model_name_or_path,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
        "target_modules": sorted(layers),
        "modules_to_save": head,
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
    }


def peft_state(model: nn.Module, family: Family) -> dict[str, torch.Tensor]:
    """The `adapter_model.safetensors` tensors: A, B of every LoRA layer and the head."""
    state = {}
    for name, layer in _lora_layers(model).items():
        state[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach()  # (r, d_in)
        state[f"{PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach()  # (d_out, r)
    for name, param in model.named_parameters():
        if is_head_parameter(family, name):
            state[PREFIX + name] = param.detach()
    return {k: v.to("cpu").contiguous().clone() for k, v in state.items()}


def export_peft(
    model: nn.Module,
    family: Family,
    out_dir: str | Path,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write adapter_config.json and adapter_model.safetensors to `out_dir`; return it."""
    from safetensors.torch import save_file

    config = peft_config(model, family, base_model_name_or_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(peft_state(model, family), str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the best checkpoint of a finished LoRA run (its record.json and best.ckpt)."""
    from omegaconf import OmegaConf

    from lora_exp.methods import build_method
    from lora_exp.models import get_family, load_backbone, load_tokenizer, weights_source

    run_dir = Path(run_dir)
    record_path, ckpt_path = run_dir / "record.json", run_dir / "checkpoints" / "best.ckpt"
    if not record_path.exists() or not ckpt_path.exists():
        raise UserError(f"{run_dir} needs record.json and checkpoints/best.ckpt of a finished run")
    cfg = OmegaConf.create(json.loads(record_path.read_text())["config"])
    if weights_source(cfg.model) is None:
        raise UserError(
            f"model={cfg.model.name} has random weights that no file keeps: an adapter for it "
            "cannot be used elsewhere. Export runs of pretrained models (minilm, hub, local_path)."
        )
    family = get_family(cfg.model.family)
    labels = 1 if cfg.task.problem == "regression" else len(cfg.task.label_names)
    tokenizer = load_tokenizer(cfg.model)
    model = load_backbone(cfg.model, labels, cfg.task.problem, tokenizer.pad_token_id)
    method = build_method(cfg.method)
    method.apply(model, family)
    saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    method.load_saved(model, {k.removeprefix("model."): v for k, v in saved.items()})
    source = cfg.model.get("local_path") or cfg.model.get("hf_name")
    return export_peft(model, family, out_dir, source)


if __name__ == "__main__":  # python -m lora_exp.methods.peft_export RUN_DIR OUT_DIR
    if len(sys.argv) != 3:
        sys.exit("usage: python -m lora_exp.methods.peft_export RUN_DIR OUT_DIR")
    try:
        print(export_run(sys.argv[1], sys.argv[2]))
    except UserError as err:
        sys.exit(f"error: {err}")
