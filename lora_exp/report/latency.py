"""Table 1 and Figure 5 of Hu et al. 2021: inference latency and the overhead of adapters.

Input: run records whose `latency` field lists measurements (the contract with the latency
benchmark, lora_exp/measure/):

    "latency": [{"batch_size": 32, "seq_len": 512, "variant": "adapter_h", "mode": "eager",
                 "ms_median": 1492.2, "ms_p10": 1491.0, "ms_p90": 1493.5, "rank": 8}, ...]

`variant` defaults to the run's method, `mode` to "eager", `rank` (adapter bottleneck or LoRA
rank) to the method's rank. Records of the same (model, variant, mode, rank, batch, length) are
combined by the median. The overhead is relative to the "base" variant (no adapter) at the same
model, mode, batch size, sequence length and device:

    overhead_pct = (ms_median / ms_median[base] - 1) · 100

Table 1 shows, per setting "BxS" (batch B, length S), the median milliseconds and the overhead,
the paper's figures (Quadro RTX8000, mean of 100 trials) beside them. Figure 5 plots the overhead
against batch size (log2), one panel per sequence length, one line per (variant, r).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lora_exp.errors import UserError
from lora_exp.report import paper as P
from lora_exp.report.load import find_record_files
from lora_exp.report.plots import add_caption, panel_grid, save
from lora_exp.report.tables import Block, Cell, Layout, Table, sort_key

# The benchmark writes table.md/table.csv into the same folder: the report's files are report.*.
REPORT_STEM = "report"
GROUP = ["model", "variant", "mode", "rank", "batch_size", "seq_len", "device"]
LAYOUT = Layout(
    "latency",
    "Inference latency of one forward pass, ms (Hu et al. 2021, Table 1)",
    ("model", "variant", "mode", "rank"),
    "setting",
    ("32x512", "32x512 %", "16x256", "16x256 %", "1x128", "1x128 %"),
    match=("variant",),
    paper_note="paper: GPT-2 medium on an NVIDIA Quadro RTX8000 (mean of 100 trials); Δ only "
    "for the overheads, as milliseconds on different GPUs do not compare",
    cell_note="cells: median milliseconds of one forward pass; 'BxS %' = overhead (%) over the "
    "base model at batch size B and sequence length S",
)
# The benchmark's columns (issue 5, lora_exp/measure/latency.py) first, then ours.
CSV_COLUMNS = ["batch_size", "seq_len", "variant", "mode", "ms_median", "ms_p10", "ms_p90"]
CSV_COLUMNS += ["overhead_pct", "device", "model", "rank", "paper_ms", "paper_overhead_pct"]


def latency_frame(runs: list[Path]) -> pd.DataFrame:
    """One row per measurement of every successful record (see the module docstring)."""
    rows = []
    for path in find_record_files(runs):
        record = json.loads(path.read_text())
        if record.get("status") != "success":
            continue
        config, method = record.get("config") or {}, (record.get("config") or {}).get("method", {})
        for entry in record.get("latency") or []:
            rows.append(
                {
                    "model": (config.get("model") or {}).get("name"),
                    "variant": entry.get("variant", method.get("name")),
                    "mode": entry.get("mode", "eager"),
                    "rank": int(entry.get("rank", method.get("rank")) or 0),
                    "batch_size": int(entry["batch_size"]),
                    "seq_len": int(entry["seq_len"]),
                    "device": entry.get("device")
                    or (record.get("environment") or {}).get("device", ""),
                    **{k: float(entry[k]) for k in ("ms_median", "ms_p10", "ms_p90") if k in entry},
                }
            )
    if not rows:
        where = ", ".join(str(r) for r in runs)
        raise UserError(f"no successful run record with latency measurements under {where}")
    frame = pd.DataFrame(rows).groupby(GROUP, sort=True, as_index=False).median()
    same = ["model", "mode", "batch_size", "seq_len", "device"]  # what the base must share
    base = frame[frame["variant"] == "base"][[*same, "ms_median"]]
    frame = frame.merge(base.rename(columns={"ms_median": "base_ms"}), on=same, how="left")
    frame["overhead_pct"] = (frame["ms_median"] / frame.pop("base_ms") - 1.0) * 100.0
    return frame


def build(artifact: str, runs: list[Path], paper: pd.DataFrame | None):
    """(Table 1 as a Table for render.py, the tidy CSV frame)."""
    frame = latency_frame(runs)
    frame["setting"] = [
        f"{b}x{s}" for b, s in zip(frame["batch_size"], frame["seq_len"], strict=True)
    ]
    settings = sorted(set(frame["setting"]), key=lambda s: tuple(-int(v) for v in s.split("x")))
    ordered = [s for s in LAYOUT.columns if s in settings or s.removesuffix(" %") in settings]
    columns = ordered + [c for s in settings if s not in ordered for c in (s, f"{s} %")]
    blocks = []
    keys = list(LAYOUT.row_keys)
    groups = list(frame.groupby(keys, sort=False))
    groups.sort(key=lambda g: [sort_key(n, v) for n, v in zip(keys, g[0], strict=True)])
    frame["paper_ms"] = frame["paper_overhead_pct"] = float("nan")
    for key, rows in groups:
        block = Block(keys=dict(zip(keys, key, strict=True)))
        paper_row = P.match_row(paper, {"variant": block.keys["variant"]}, None)
        for idx, row in rows.iterrows():
            for label, metric, value in [
                (row["setting"], "ms", row["ms_median"]),
                (f"{row['setting']} %", "overhead", row["overhead_pct"]),
            ]:
                cell = block.cells[label] = Cell(metric, float(value), compare=metric != "ms")
                if paper_row is not None and not pd.isna(paper_row.get(label, float("nan"))):
                    cell.paper, block.matched = float(paper_row[label]), True
            frame.loc[idx, "paper_ms"] = block.cells[row["setting"]].paper
            frame.loc[idx, "paper_overhead_pct"] = block.cells[f"{row['setting']} %"].paper
        blocks.append(block)
    devices = "; ".join(sorted(frame["device"].unique()))
    notes = [f"device: {devices}"]
    table = Table(artifact, LAYOUT, columns, blocks, notes, paper is not None, keys)
    csv = frame.sort_values(["batch_size", "seq_len", "variant", "mode", "rank", "model"])
    return table, csv.reindex(columns=CSV_COLUMNS).reset_index(drop=True)


def overhead_figure(frame: pd.DataFrame):
    """Figure 5: overhead (%) against batch size, a panel per sequence length."""
    data = frame[frame["variant"] != "base"].dropna(subset=["overhead_pct"])
    if data.empty:
        return None
    lengths = sorted(data["seq_len"].unique())
    fig, axes = panel_grid(lengths)
    for ax, length in zip(axes, lengths, strict=True):
        rows = data[data["seq_len"] == length]
        for (variant, mode, rank), line in rows.groupby(["variant", "mode", "rank"], sort=True):
            line = line.sort_values("batch_size")
            label = f"{variant} r={rank}" + ("" if mode == "eager" else f" ({mode})")
            ax.plot(line["batch_size"], line["overhead_pct"], marker="o", label=label)
        batches = sorted(int(b) for b in rows["batch_size"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("batch size (log2 scale)")
        ax.set_ylabel("latency overhead over the base model (%)")
        ax.set_title(f"sequence length {length}")
        ax.legend(title="variant, adapter size", fontsize="small")
        ax.grid(alpha=0.3)
    text = (
        f"latency overhead (Fig. 5); model: {', '.join(sorted(data['model'].unique()))}; "
        f"device: {'; '.join(sorted(data['device'].unique()))}; median of the trials"
    )
    add_caption(fig, text, len(lengths))
    return fig


def plot_overhead(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Draw Figure 5 from the CSV frame of `build` (needs the base variant)."""
    fig = overhead_figure(frame)
    return [] if fig is None else save(fig, out, "latency_overhead")
