"""Figures of an artifact (matplotlib, Agg, PNG and PDF), drawn from the seed aggregates.

    rank_ablation    score against LoRA rank r on a log2 axis, one line per target set (nudged
                     sideways so they do not hide each other) (Hu et al. 2021, Table 6 /
                     Table 18 as a plot)
    weight_types     score of each target set at one fixed trainable-parameter budget (Table 5):
                     the budget shared by the most target sets (q r=8, q,v r=4, q,k,v,o r=2 ...)
    score_vs_params  score against trainable parameters (log10 axis), one series per method
                     (Table 2 / Table 3 as a plot)

Points are seed medians; error bars are the percentile bootstrap 95% interval of the median
(intervals.py), asymmetric, so a collapsed seed shows as a long lower bar instead of being hidden
in a symmetric std. Every figure has one panel per (model, task), axis labels with units, a
legend, and a caption line naming the model, task, seeds and device. Files are reproducible
byte for byte: no software or date metadata is written (PNG "Software", PDF "Creator"/
"Producer"/"CreationDate").
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lora_exp.report.tables import sort_key

METRIC_LABELS = {
    "acc": "accuracy (%)",
    "f1_macro": "macro-F1 (%)",
    "f1": "F1 (%)",
    "mcc": "Matthews correlation (x100)",
    "pearson": "Pearson correlation (x100)",
    "spearman": "Spearman correlation (x100)",
    "bleu": "BLEU",
    "nist": "NIST",
    "meteor": "METEOR (x100)",
    "rouge_l": "ROUGE-L (x100)",
    "cider": "CIDEr",
}
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


def save(fig: Figure, out: Path, stem: str) -> list[Path]:
    """Write `stem`.png (150 dpi) and `stem`.pdf without time or version metadata."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
    fig.savefig(png, dpi=150, metadata=PNG_METADATA)
    fig.savefig(pdf, metadata=PDF_METADATA)
    return [png, pdf]


def caption(kept: pd.DataFrame, panels: pd.DataFrame, what: str) -> str:
    """'model: ...; task: ...; seeds: ...; device: ...' for the runs behind the drawn cells."""
    runs = kept.merge(panels[["model", "task"]].drop_duplicates(), on=["model", "task"])
    join = lambda col: ", ".join(str(v) for v in sorted(runs[col].dropna().unique()))  # noqa: E731
    low, high = int(panels["n"].min()), int(panels["n"].max())
    per_point = f"{low}" if low == high else f"{low}-{high}"
    return (
        f"{what}; model: {join('model')}; task: {join('task')}; seeds: {join('seed')} "
        f"({per_point} per point); device: {join('device')}; points: median over seeds, "
        "bars: bootstrap 95% interval of the median"
    )


def add_caption(fig: Figure, text: str, n_panels: int) -> None:
    """The caption line under the panels (constrained layout keeps room for it)."""
    fig.supxlabel(textwrap.fill(text, width=80 * n_panels), fontsize="x-small", ha="center")


def panel_grid(panels: list, width: float = 4.6, height: float = 3.4):
    """A figure with one axes per panel in a row, room below for the caption."""
    fig = Figure(figsize=(width * len(panels), height + 0.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    return fig, axes


def color_map(data: pd.DataFrame, column: str) -> dict:
    """One color per value of `column` across all panels, so a series keeps its color."""
    values = sorted(data[column].unique(), key=lambda v: sort_key(column, v))
    return {value: f"C{i % 10}" for i, value in enumerate(values)}


def primary(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["primary"]]


def interval_err(rows: pd.DataFrame):
    """(2, n) distances from the median down to lo and up to hi (0 where there is no interval)."""
    low = (rows["median"] - rows["lo"]).fillna(0.0).clip(lower=0.0).to_numpy()
    high = (rows["hi"] - rows["median"]).fillna(0.0).clip(lower=0.0).to_numpy()
    return [low, high]


def _errorbar(ax, x, rows: pd.DataFrame, label: str, **kw):
    yerr = interval_err(rows)
    ax.errorbar(x, rows["median"].to_numpy(), yerr=yerr, label=label, capsize=3, **kw)


def rank_ablation_figure(cells: pd.DataFrame, kept: pd.DataFrame) -> Figure | None:
    """Score against rank (log2 axis), one line per target set, one panel per (model, task)."""
    data = primary(cells)
    data = data[data["rank"].notna()]
    if data.empty:
        return None
    panels = sorted(data.groupby(["model", "task"]).groups)
    colors = {"targets": color_map(data, "targets")}
    fig, axes = panel_grid(panels)
    for ax, (model, task) in zip(axes, panels, strict=True):
        rows = data[(data["model"] == model) & (data["task"] == task)]
        sets = sorted(rows["targets"].unique(), key=lambda t: sort_key("targets", t))
        for k, targets in enumerate(sets):
            color = colors["targets"][targets]
            line = rows[rows["targets"] == targets].sort_values("rank")
            dodge = 2.0 ** (0.05 * (k - (len(sets) - 1) / 2))  # side by side, not on top
            x = line["rank"].astype(int).to_numpy() * dodge
            _errorbar(ax, x, line, targets or "-", marker="o", color=color)
        ranks = sorted(int(r) for r in rows["rank"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.set_xlabel("LoRA rank r (log2 scale)")
        ax.set_ylabel(METRIC_LABELS.get(rows["metric"].iloc[0], rows["metric"].iloc[0]))
        ax.set_title(f"{model} · {task}")
        ax.legend(title="adapted weights", fontsize="small")
        ax.grid(alpha=0.3)
    add_caption(fig, caption(kept, data, "rank ablation"), len(panels))
    return fig


def fixed_budget(rows: pd.DataFrame) -> pd.DataFrame:
    """The cells at the trainable budget shared by the most target sets (ties: larger budget)."""
    budgets = rows.groupby("trainable")["targets"].nunique()
    budgets = budgets[budgets >= 2]
    if budgets.empty:
        return rows.iloc[0:0]
    best = max(budgets.index, key=lambda b: (budgets[b], b))
    return rows[rows["trainable"] == best]


def weight_types_figure(cells: pd.DataFrame, kept: pd.DataFrame) -> Figure | None:
    """Bars of the target sets at one fixed budget per (model, task); None without such a budget."""
    data = primary(cells)
    data = data[data["rank"].notna() & data["trainable"].notna()]
    chosen = {key: fixed_budget(rows) for key, rows in data.groupby(["model", "task"], sort=True)}
    chosen = {k: v for k, v in chosen.items() if not v.empty}
    if not chosen:
        return None
    fig, axes = panel_grid(list(chosen))
    for ax, ((model, task), rows) in zip(axes, chosen.items(), strict=True):
        rows = rows.assign(
            label=[f"{t} r={int(r)}" for t, r in zip(rows["targets"], rows["rank"], strict=True)]
        )
        rows = rows.sort_values("label", key=lambda s: s.map(lambda v: sort_key("weights", v)))
        x = list(range(len(rows)))
        ax.bar(x, rows["median"], yerr=interval_err(rows), capsize=3, color="tab:blue")
        ax.set_xticks(x, list(rows["label"]), rotation=30, ha="right")
        ax.set_xlabel("adapted weights and rank")
        ax.set_ylabel(METRIC_LABELS.get(rows["metric"].iloc[0], rows["metric"].iloc[0]))
        low = rows["lo"].fillna(rows["median"]).min()
        high = rows["hi"].fillna(rows["median"]).max()
        pad = max(1.0, 0.2 * (high - low))
        ax.set_ylim(low - pad, high + pad)
        budget = int(rows["trainable"].iloc[0])
        ax.set_title(f"{model} · {task}\n{budget:,} trainable parameters (fixed budget)")
        ax.grid(axis="y", alpha=0.3)
    panels = pd.concat(list(chosen.values()))
    add_caption(fig, caption(kept, panels, "weight types at a fixed budget"), len(chosen))
    return fig


def score_vs_params_figure(cells: pd.DataFrame, kept: pd.DataFrame) -> Figure | None:
    """Score against trainable parameters (log axis), one series per method, panel per task."""
    data = primary(cells)
    data = data[data["trainable"].notna() & (data["trainable"] > 0)]
    if data.empty:
        return None
    panels = sorted(data.groupby(["model", "task"]).groups)
    colors = {"method": color_map(data, "method")}
    fig, axes = panel_grid(panels)
    for ax, (model, task) in zip(axes, panels, strict=True):
        rows = data[(data["model"] == model) & (data["task"] == task)]
        for method in sorted(rows["method"].unique(), key=lambda m: sort_key("method", m)):
            color = colors["method"][method]
            series = rows[rows["method"] == method].sort_values("trainable")
            x = series["trainable"].to_numpy()
            _errorbar(ax, x, series, method, marker="o", ls="none", color=color)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters, head excluded (log scale)")
        ax.set_ylabel(METRIC_LABELS.get(rows["metric"].iloc[0], rows["metric"].iloc[0]))
        ax.set_title(f"{model} · {task}")
        ax.legend(title="method", fontsize="small")
        ax.grid(alpha=0.3)
    add_caption(fig, caption(kept, data, "score vs trainable parameters"), len(panels))
    return fig


def _saver(figure_fn, stem: str):
    def draw(cells: pd.DataFrame, kept: pd.DataFrame, out: Path, artifact: str) -> list[Path]:
        fig = figure_fn(cells, kept)
        return [] if fig is None else save(fig, out, stem)

    return draw


PLOTS = {
    "rank_ablation": _saver(rank_ablation_figure, "rank_ablation"),
    "weight_types": _saver(weight_types_figure, "weight_types"),
    "score_vs_params": _saver(score_vs_params_figure, "score_vs_params"),
}
