"""Export a trained method to PEFT's format, so it loads with `PeftModel.from_pretrained`.

Writes the two files `PeftModel.save_pretrained` writes:

* `adapter_config.json`: the method's PEFT config (`peft_type` and its settings, target modules as
  full module names), task_type SEQ_CLS and modules_to_save = the task head.
* `adapter_model.safetensors`: the method's tensors under PEFT's names,
  `base_model.model.<module>.<tensor>`, and the head's tensors under
  `base_model.model.<head module>.*`.

Each method says how PEFT spells it (`Method.peft_adapter`); this module writes the files, adds
the head, and spells LoRA:

* LoRA: a `LoraConfig` (r, lora_alpha, lora_dropout, fan_in_fan_out) and each adapted matrix's
  `lora_A.weight` (r × d_in) and `lora_B.weight` (d_out × r). Our A, B have PEFT's orientation
  and scaling (alpha / r), so the same base weights with the exported adapter give the same
  logits (tests/test_peft_parity.py checks it).

What PEFT cannot express: GPT-2's q, k and v live in one fused `c_attn` projection. The paper's
code (loralib `MergedLinear(enable_lora=[True, False, True])`) and ours put one (A, B) pair on
each adapted slice (q and v only); PEFT's `c_attn` target puts one rank-r update over the whole
fused output, i.e. over q, k and v together. Exporting a LoRA q/k/v target of GPT-2 therefore
raises a UserError. GPT-2's o, ffn_in and ffn_out (whole `Conv1D` matrices) export fine.

Usage: `python -m lora_exp.methods.peft_export RUN_DIR OUT_DIR` exports the best checkpoint of a
finished run; in code, `export_peft(method, model, family, out_dir)`.
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
        raise UserError("the model has no LoRA layers: apply method=lora before exporting it")
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


def lora_adapter(model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
    """LoRA's part of the export: a `LoraConfig`'s fields, and A, B of every LoRA layer."""
    layers = _lora_layers(model)
    settings = {(m.rank, m.alpha, m.fan_in_fan_out) for m in layers.values()}
    if len(settings) != 1:
        raise UserError(f"LoRA layers differ in rank, alpha or orientation: {sorted(settings)}")
    (rank, alpha, fan_in_fan_out) = settings.pop()
    dropout = next(iter(layers.values())).lora_dropout
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
        "target_modules": sorted(layers),
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
    }
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{name}.lora_A.weight"] = layer.lora_A.detach()  # (r, d_in)
        tensors[f"{name}.lora_B.weight"] = layer.lora_B.detach()  # (d_out, r)
    return config, tensors


def peft_files(
    method, model: nn.Module, family: Family, base_model_name_or_path: str | None = None
) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json content, adapter_model.safetensors tensors) of `method` in `model`.

    Raises:
        UserError: if PEFT has no equivalent of the method or of this use of it.
    """
    method_config, tensors = method.peft_adapter(model, family)
    names = [n for n, _ in model.named_parameters()]
    head = [p.rstrip(".") for p in family.head_prefixes if any(n.startswith(p) for n in names)]
    config = {
        "peft_type": method_config.pop("peft_type"),
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": base_model_name_or_path,
        **method_config,
        "modules_to_save": head,
        "inference_mode": True,
    }
    state = {PREFIX + name: tensor for name, tensor in tensors.items()}
    for name, param in model.named_parameters():
        if is_head_parameter(family, name):
            state[PREFIX + name] = param.detach()
    return config, {k: v.to("cpu").contiguous().clone() for k, v in state.items()}


def export_peft(
    method,
    model: nn.Module,
    family: Family,
    out_dir: str | Path,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write adapter_config.json and adapter_model.safetensors of `method` to `out_dir`."""
    from safetensors.torch import save_file

    config, state = peft_files(method, model, family, base_model_name_or_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the best checkpoint of a finished run (its record.json and best.ckpt)."""
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
    return export_peft(method, model, family, out_dir, source)


if __name__ == "__main__":  # python -m lora_exp.methods.peft_export RUN_DIR OUT_DIR
    if len(sys.argv) != 3:
        sys.exit("usage: python -m lora_exp.methods.peft_export RUN_DIR OUT_DIR")
    try:
        print(export_run(sys.argv[1], sys.argv[2]))
    except UserError as err:
        sys.exit(f"error: {err}")
