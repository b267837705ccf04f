"""The Section 7 report over two run directories: subspace heatmaps, Table 7 amplification.

    python -m lora_exp.report section7 --runs RUN_R8 RUN_R64 [--layers 3] [--out DIR]

Two LoRA runs of the same model and targets (rank 8 vs rank 64, Hu et al. 2021 Fig. 3; or two
seeds at one rank, Fig. 4). For every (layer, weight type) both runs adapt, this writes

    subspace.csv        φ(A_a, A_b, i, j) for the full i × j grid (Eq. 4), and the control
                        φ(A_a, G, i, j) with G Gaussian of A_b's shape, beside E φ = max(i, j)/d
    subspace_layerL     heatmaps (PNG, PDF) of both grids per weight type at layer L
                        (default: the middle layer, as the paper's layer 48 of 96)
    amplification.csv/.md   per run, layer and weight: ‖W‖_F, ‖ΔW‖_F, ‖Uᵀ W V‖_F for the top-r
                        directions of ΔW, of W and random ones, and ‖ΔW‖_F / ‖Uᵀ W V‖_F (Table 7)

LoRA factors come from `<run>/checkpoints/best.ckpt` (Lightning keeps only trained tensors, keys
`model.<module>.lora_A`); ΔW = (α/r) B A. The pretrained W comes from loading the run's model
again; a random-initialised model (model.weights=random) has no reproducible W, so its
amplification is left out with a note. Formulas: subspace.py.
"""

from __future__ import annotations

import json
import re
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lora_exp.errors import UserError
from lora_exp.report import subspace
from lora_exp.report.plots import save

CHECKPOINTS = ("best.ckpt", "last.ckpt")
TABLE7 = (
    "paper, GPT-3 layer 48, ΔW_q (Table 7): r=4: ‖UᵀWV‖ = 0.32 (ΔW), 21.67 (W), 0.02 (random), "
    "amplification 6.91/0.32 ≈ 21.5; r=64: 1.90, 37.71, 0.33, amplification ≈ 1.9"
)


@dataclass
class Factors:
    """A and B of one adapted weight: A (r × d_in), B (d_out × r), ΔW = scaling · B A."""

    module: str
    part: int  # position in a fused projection's output (GPT-2 c_attn: 0 q, 1 k, 2 v), else 0
    a: np.ndarray
    b: np.ndarray
    scaling: float


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """(record, checkpoint state_dict) of a run; a UserError when either is missing."""
    import torch

    run_dir = Path(run_dir)
    record_path = run_dir / "record.json"
    if not record_path.exists():
        raise UserError(f"{run_dir} is not a run directory: it has no record.json")
    record = json.loads(record_path.read_text())
    for name in CHECKPOINTS:
        path = run_dir / "checkpoints" / name
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
            return record, state
    raise UserError(
        f"{run_dir} has no LoRA weights: no checkpoints/best.ckpt (Section 7 needs a finished "
        "LoRA run; its best checkpoint holds A and B)"
    )


def lora_factors(run_dir: Path) -> tuple[dict[tuple[int, str], Factors], dict]:
    """(layer, target) -> Factors of a run, and its record.

    Raises:
        UserError: if the run has no checkpoint or its checkpoint has no lora_A tensors.
    """
    from lora_exp.models import block_index, get_family

    record, state = read_run(run_dir)
    config = record["config"]
    method = config.get("method", {})
    modules = sorted(k[len("model.") : -len(".lora_A")] for k in state if k.endswith(".lora_A"))
    if not modules:
        raise UserError(
            f"{run_dir} has no LoRA weights: its checkpoint holds no lora_A tensors "
            f"(method={method.get('name')}); Section 7 compares two LoRA runs"
        )
    family = get_family(config["model"]["family"])
    rank, scaling = int(method["rank"]), float(method["alpha"]) / int(method["rank"])
    factors = {}
    for module in modules:
        a = state[f"model.{module}.lora_A"].double().numpy()  # (P·r, d_in)
        b = state[f"model.{module}.lora_B"].double().numpy()  # (P·o, r)
        sites = [(family.sites[t].fused_index or 0, t) for t in method["targets"]]
        parts = sorted(s for s in sites if re.search(family.sites[s[1]].pattern, module))
        o = b.shape[0] // len(parts)
        for k, (part, target) in enumerate(parts):
            layer = block_index(family, module)
            factors[(layer, target)] = Factors(
                module, part, a[k * rank : (k + 1) * rank], b[k * o : (k + 1) * o], scaling
            )
    return factors, record


def load_pretrained(record: dict):
    """The run's backbone as loaded before training (pretrained W); None for random init."""
    from omegaconf import OmegaConf
    from transformers.utils import logging as hf_logging

    from lora_exp.models import load_backbone

    config = OmegaConf.create(record["config"])
    local = config.model.get("local_path")
    if local and not Path(local).exists() and config.model.get("weights") != "random":
        # e.g. the GPU machine's fp16 copy (bundle/minilm-fp16): load the original instead. Its
        # fp32 W differs from the fp16 copy the run trained on in the 4th-5th digit, so the
        # committed figures only regenerate exactly where the copy exists: say so.
        warnings.warn(
            f"Section 7: {local} (the weights this run trained from) is missing; using "
            f"{config.model.name}'s original weights, so norms may differ in the last digits "
            "(recreate it: bash scripts/make_offline_bundle.sh)",
            stacklevel=2,
        )
        config.model.local_path = None
    if config.model.get("weights") == "random" and not config.model.get("local_path"):
        return None
    num_labels = 1 if config.task.problem == "regression" else len(config.task.label_names)
    hf_logging.set_verbosity_error()  # the new head is "missing" from the checkpoint: expected
    hf_logging.disable_progress_bar()
    return load_backbone(config.model, num_labels, config.task.problem, pad_token_id=0)


def base_weights(model, factors: dict) -> dict[tuple[int, str], np.ndarray] | None:
    """The pretrained W (d_out × d_in) of every adapted weight; None without a model."""
    import torch

    if model is None:
        return None
    weights = {}
    for key, f in factors.items():
        layer = model.get_submodule(f.module)
        w = layer.weight.detach().double().numpy()
        w = w if isinstance(layer, torch.nn.Linear) else w.T  # Conv1D stores d_in × d_out
        o = f.b.shape[0]
        weights[key] = w[f.part * o : (f.part + 1) * o] if w.shape[0] != o else w
    return weights


def describe(record: dict, run_dir: Path) -> str:
    config = record["config"]
    method = config.get("method", {})
    return (
        f"{Path(run_dir).name} ({config['model']['name']}, r={method.get('rank')}, "
        f"seed={record.get('seed')})"
    )


def subspace_frame(fa: dict, fb: dict, seed: int = 0) -> pd.DataFrame:
    """φ(A_a, A_b, i, j) and the Gaussian control for every common (layer, target)."""
    common = sorted(set(fa) & set(fb))
    if not common:
        raise UserError("the two runs adapt no weight in common (compare runs of one model)")
    rows = []
    for layer, target in common:
        a, b = fa[(layer, target)].a, fb[(layer, target)].a
        grid = subspace.phi_grid(a, b)
        control = subspace.phi_grid(a, subspace.gaussian_like(b, seed))
        d = a.shape[1]
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                rows.append(
                    {
                        "layer": layer,
                        "target": target,
                        "i": i + 1,
                        "j": j + 1,
                        "phi": grid[i, j],
                        "phi_random": control[i, j],
                        "expected_random": subspace.expected_random_phi(i + 1, j + 1, d),
                    }
                )
    return pd.DataFrame(rows)


def amplification_frame(runs: list[tuple[str, dict, dict | None]]) -> pd.DataFrame:
    """Table 7 per run, layer and target, for the runs whose base W could be loaded."""
    rows = []
    for name, factors, weights in runs:
        if weights is None:
            continue
        for (layer, target), f in sorted(factors.items()):
            delta = f.scaling * f.b @ f.a  # (d_out, d_in)
            r = f.a.shape[0]
            stats = subspace.amplification(delta, weights[(layer, target)], r)
            rows.append({"run": name, "layer": layer, "target": target, **stats})
    return pd.DataFrame(rows)


def tick_positions(n: int) -> tuple[list[int], list[str]]:
    """At most about eight ticks along an axis of n directions, labelled 1-based."""
    step = max(1, n // 8)
    positions = [k for k in range(n) if (k + 1) % step == 0 or n <= 8]
    return positions, [str(k + 1) for k in positions]


def heatmap_figure(frame: pd.DataFrame, layer: int, caption: str):
    """Heatmaps at one layer: φ(A_a, A_b) above φ(A_a, Gaussian), one column per weight."""
    from matplotlib.figure import Figure

    targets = sorted(frame.loc[frame["layer"] == layer, "target"].unique())
    fig = Figure(figsize=(3.6 * len(targets) + 1, 6.4), layout="constrained")
    axes = fig.subplots(2, len(targets), squeeze=False)
    for col, target in enumerate(targets):
        part = frame[(frame["layer"] == layer) & (frame["target"] == target)]
        shape = (int(part["i"].max()), int(part["j"].max()))
        for row, (column, label) in enumerate([("phi", "run b"), ("phi_random", "Gaussian")]):
            ax = axes[row][col]
            grid = part.sort_values(["i", "j"])[column].to_numpy().reshape(shape)
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="upper", aspect="auto")
            ax.set_title(f"ΔW_{target}, layer {layer}: run a vs {label}", fontsize="small")
            ax.set_xlabel(f"j (top-j directions of {label})")
            ax.set_ylabel("i (top-i directions of run a)")
            ax.set_xticks(*tick_positions(shape[1]))
            ax.set_yticks(*tick_positions(shape[0]))
    fig.colorbar(image, ax=axes, label="φ(i, j): normalized subspace similarity (Eq. 4)")
    fig.supxlabel(textwrap.fill(caption, 60 * len(targets)), fontsize="x-small")
    return fig


def amplification_markdown(frame: pd.DataFrame, notes: list[str]) -> str:
    heads = ["run", "layer", "weight", "r", "‖W‖_F", "‖ΔW‖_F", "‖UᵀWV‖ ΔW", "‖UᵀWV‖ W"]
    heads += ["‖UᵀWV‖ random", "amplification"]
    lines = ["### Section 7: amplification factor (Hu et al. 2021, Table 7)", ""]
    if not frame.empty:
        lines += ["| " + " | ".join(heads) + " |", "|---|---:|---|" + "---:|" * (len(heads) - 3)]
    for _, r in frame.iterrows():
        values = [r["norm_w"], r["norm_delta"], r["proj_delta"], r["proj_w"], r["proj_random"]]
        numbers = [f"{v:.4f}" for v in values] + [f"{r['amplification']:.2f}"]
        lines.append(
            f"| {r['run']} | {r['layer']} | {r['target']} | {r['r']} | "
            + " | ".join(numbers)
            + " |"
        )
    if not frame.empty:
        lines.append("")
    return "\n".join([*lines, *[f"- {n}" for n in [TABLE7, *notes]]]) + "\n"


def report_section7(run_a: Path, run_b: Path, out: Path, layers: list[int] | None = None) -> list:
    """Every Section 7 output for two runs; returns the written paths (sorted)."""
    fa, rec_a = lora_factors(run_a)
    fb, rec_b = lora_factors(run_b)
    models = [r["config"]["model"].get("name") for r in (rec_a, rec_b)]
    if models[0] != models[1]:
        raise UserError(
            f"the runs use different models ({models[0]}, {models[1]}): φ compares "
            "LoRA factors of the same pretrained weights"
        )
    frame = subspace_frame(fa, fb)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "subspace.csv", index=False, float_format="%.6f", lineterminator="\n")
    written = [out / "subspace.csv"]
    all_layers = sorted(frame["layer"].unique())
    for layer in layers or [all_layers[len(all_layers) // 2]]:
        if layer not in all_layers:
            raise UserError(f"layer {layer} is not adapted in both runs; layers: {all_layers}")
        caption = f"run a: {describe(rec_a, run_a)}; run b: {describe(rec_b, run_b)}; "
        caption += f"device: {(rec_a.get('environment') or {}).get('device')}"
        written += save(heatmap_figure(frame, layer, caption), out, f"subspace_layer{layer}")
    notes, runs, models = [], [], {}
    for name, factors, record in [("a", fa, rec_a), ("b", fb, rec_b)]:
        model_key = json.dumps(record["config"]["model"], sort_keys=True)  # load a model once
        if model_key not in models:
            models[model_key] = load_pretrained(record)
        weights = base_weights(models[model_key], factors)
        if weights is None:
            notes.append(f"run {name}: random-initialised model, no pretrained W: left out")
        runs.append(
            (f"{name}: {describe(record, run_a if name == 'a' else run_b)}", factors, weights)
        )
    amp = amplification_frame(runs)
    if not amp.empty:
        amp.to_csv(out / "amplification.csv", index=False, float_format="%.6f", lineterminator="\n")
        written.append(out / "amplification.csv")
    (out / "amplification.md").write_text(amplification_markdown(amp, notes))
    written.append(out / "amplification.md")
    return sorted(written)
