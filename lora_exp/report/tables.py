"""The paper's table layouts, filled with our seed medians and the paper's figures beside them.

Every layout is rows × columns of one score, in the paper's arrangement (Hu et al. 2021):

    glue          Table 2: (model, method, r, targets) × the eight GLUE tasks, #trainable, average
    e2e           Table 3: (model, method, r, targets, task) × BLEU, NIST, METEOR, ROUGE-L, CIDEr
    weight_types  Table 5: (model, method, task) × weight types at a fixed budget ("q,v r=4")
    rank          Table 6: (model, method, task, targets) × rank r
    methods       the embedded study: (model, method, r, targets) × the embedded tasks, average

A cell is the median over seeds with its bootstrap 95% interval, the seed count and the collapsed
runs among them (see load.py); the CSV keeps the sample std too. Where the
paper has the cell, the paper's figure and Δ = ours − paper follow in two more rows. The average
column is the mean of a row's column medians, shown only when the row has every column of the
layout (the paper averages all eight GLUE tasks). Table 1 (latency) is built in latency.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import pandas as pd

from lora_exp.errors import UserError
from lora_exp.report import paper as P
from lora_exp.report.load import TARGET_ORDER

VARIANT_ORDER = ("base", "lora_merged", "lora_unmerged", "adapter_l", "adapter_h", "prefix_layer")
KEY_HEADERS = {"model": "model", "method": "method", "rank": "r", "targets": "targets"}
KEY_HEADERS |= {"task": "task", "variant": "variant", "mode": "mode", "setup": "setup"}
SETUP_ORDER = ("standard", "restricted")


@dataclass(frozen=True)
class Layout:
    """How one paper table is arranged (see the module docstring)."""

    name: str
    title: str
    row_keys: tuple[str, ...]
    column: str  # task | metric | rank | weights
    columns: tuple[str, ...] = ()  # the paper's column order; other labels follow, sorted
    metric: str = "primary"  # primary: the task's primary metric; column: the column is a metric
    trainable: bool = False
    average: bool = False
    match: tuple[str, ...] = ()  # fields a row is matched on in the paper's table
    paper_metric: dict = field(default_factory=dict)  # column -> the paper's metric there
    paper_note: str = ""
    plots: tuple[str, ...] = ()
    cell_note: str = (
        "cells: median over seeds [percentile bootstrap 95% interval of the median, 10,000 "
        "resamples] (number of seeds; k collapsed: runs within a quarter of the headroom above "
        "the majority class, kept in the median and interval, see results/collapse.md); "
        "accuracy, F1, correlations, METEOR and ROUGE-L x100"
    )


LAYOUTS = {
    "glue": Layout(
        "glue",
        "GLUE dev (Hu et al. 2021, Table 2)",
        ("model", "method", "rank", "targets"),
        "task",
        P.GLUE_TASKS,
        trainable=True,
        average=True,
        match=("model", "method", "setup"),
        paper_metric=P.GLUE_METRIC,
        plots=("score_vs_params",),
    ),
    "e2e": Layout(
        "e2e",
        "E2E NLG test (Hu et al. 2021, Table 3)",
        ("model", "method", "rank", "targets", "task"),
        "metric",
        P.E2E_METRICS,
        metric="column",
        trainable=True,
        match=("model", "method"),
        paper_metric={m: m for m in P.E2E_METRICS},
        plots=("score_vs_params",),
    ),
    "weight_types": Layout(
        "weight_types",
        "Which weight matrices to adapt at a fixed budget (Hu et al. 2021, Table 5)",
        ("model", "method", "task"),
        "weights",
        ("q r=8", "k r=8", "v r=8", "o r=8", "q,k r=4", "q,v r=4", "q,k,v,o r=2"),
        match=("task",),
        paper_metric={},
        paper_note="the paper's figures are GPT-3 175B (WikiSQL, MultiNLI): compare trends",
        plots=("weight_types",),
    ),
    "rank": Layout(
        "rank",
        "Score by LoRA rank r and adapted weights (Hu et al. 2021, Table 6)",
        ("model", "method", "task", "targets"),
        "rank",
        match=("task", "targets"),
        paper_note="the paper's figures are GPT-3 175B (WikiSQL, MultiNLI): compare trends",
        plots=("rank_ablation", "weight_types"),
    ),
    "methods": Layout(
        "methods",
        "Methods on the embedded tasks (the paper's Table 2 layout)",
        ("model", "method", "rank", "targets"),
        "task",
        ("tweet_sentiment", "bbc_news"),
        trainable=True,
        average=True,
        plots=("score_vs_params",),
    ),
}


@cache
def method_order() -> tuple[str, ...]:
    """The paper's methods in table order, read from each method's `table_order`.

    A method without one (added after the paper, or no longer registered) is not listed:
    `sort_key` puts it after these, by name. Imported here, not at the top, because the methods
    import torch, which no other part of the report needs.
    """
    from lora_exp.methods import METHODS

    ranked = sorted(
        (cls.table_order, name) for name, cls in METHODS.items() if cls.table_order is not None
    )
    return tuple(name for _, name in ranked)


def sort_key(name: str, value):
    """Sort key of a row-key or column value in the paper's order."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return (1, 0, "")
    if name in ("method", "variant", "setup"):
        known = {"method": method_order(), "variant": VARIANT_ORDER, "setup": SETUP_ORDER}[name]
        return (0, known.index(value) if value in known else len(known), value)
    if name == "targets":
        parts = value.split(",") if value else []
        pos = [TARGET_ORDER.index(p) if p in TARGET_ORDER else 99 for p in parts]
        return (0, len(parts), tuple(pos))
    if name == "rank":
        return (0, int(value), "")
    if name == "weights":
        targets, _, rank = value.rpartition(" r=")
        return (0, sort_key("targets", targets), int(rank))
    return (0, 0, str(value))


def column_label(layout: Layout, cell: pd.Series) -> str:
    """The column a cell belongs to."""
    if layout.column == "task":
        return str(cell["task"])
    if layout.column == "metric":
        return str(cell["metric"])
    if layout.column == "rank":
        return str(int(cell["rank"]))
    return P.weights_label(cell["targets"], cell["rank"])


@dataclass
class Cell:
    """One table cell: our median, spread and seed count, and the paper's figure."""

    metric: str
    median: float
    std: float = math.nan
    n: int = 0
    seeds: str = ""
    lo: float = math.nan  # bootstrap 95% interval of the median (intervals.py)
    hi: float = math.nan
    collapsed: int = 0  # collapsed runs among the n (collapse.py)
    paper: float = math.nan
    compare: bool = True  # False: show the paper's figure but no Δ (e.g. ms on another GPU)

    @property
    def delta(self) -> float:
        return self.median - self.paper if self.compare else math.nan


@dataclass
class Block:
    """One of our rows (and the paper's row matched to it)."""

    keys: dict
    trainable: float = math.nan
    cells: dict = field(default_factory=dict)  # column label -> Cell
    paper_trainable: str = ""
    paper_prior: bool = False  # the paper copied this row from prior work (its '*')
    matched: bool = False


@dataclass
class Table:
    """A filled layout, ready to render."""

    artifact: str
    layout: Layout
    columns: list[str]
    blocks: list[Block]
    notes: list[str]
    has_paper: bool
    row_keys: list[str]  # the layout's row keys, plus "setup" when † runs are present


def select_cells(cells: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """The (cell, metric) rows a layout shows."""
    if layout.metric == "column":
        chosen = cells[cells["metric"].isin(layout.columns)]
    else:
        chosen = cells[cells["primary"]]
    if layout.column in ("rank", "weights"):
        chosen = chosen[chosen["rank"].notna()]
    return chosen


def build_table(
    artifact: str, cells: pd.DataFrame, layout: Layout, paper: pd.DataFrame | None, notes: list
) -> Table:
    """Fill `layout` with `cells` (load.aggregate output) and the paper's reshaped table."""
    chosen = select_cells(cells, layout).copy()
    if chosen.empty:
        wanted = ", ".join(layout.columns) if layout.metric == "column" else "primary-metric"
        extra = " of a method with a rank" if layout.column in ("rank", "weights") else ""
        raise UserError(
            f"{artifact}: the kept runs have no {wanted} scores{extra} for the "
            f"{layout.name} layout; is this the right artifact or --layout?"
        )
    chosen["column"] = [column_label(layout, row) for _, row in chosen.iterrows()]
    labels = sorted(set(chosen["column"]), key=lambda c: sort_key(layout.column, c))
    columns = [c for c in layout.columns if c in labels] + [
        c for c in labels if c not in layout.columns
    ]
    blocks = []
    keys = list(layout.row_keys)
    if set(chosen["setup"]) - {"", "standard"} and "setup" not in keys:  # † runs: own rows
        keys.insert(keys.index("method") + 1 if "method" in keys else 0, "setup")
    groups = list(chosen.groupby(keys, dropna=False, sort=False))
    groups.sort(key=lambda g: [sort_key(n, v) for n, v in zip(keys, g[0], strict=True)])
    for key, rows in groups:
        block = Block(keys=dict(zip(keys, key, strict=True)))
        block.trainable = float(rows["trainable"].dropna().median()) if layout.trainable else 0
        for _, row in rows.iterrows():
            block.cells[row["column"]] = Cell(
                row["metric"],
                row["median"],
                row["std"],
                int(row["n"]),
                row["seeds"],
                row.get("lo", math.nan),
                row.get("hi", math.nan),
                int(row.get("collapsed", 0)),
            )
        fields = {f: block.keys.get(f, rows.iloc[0].get(f)) for f in layout.match}
        paper_row = P.match_row(paper, fields, block.trainable if layout.trainable else None)
        if paper_row is not None:
            block.paper_trainable = str(paper_row.get("trainable_label", ""))
            block.paper_prior = paper_row.get("source") == "prior"
            for label, cell in block.cells.items():
                expected = layout.paper_metric.get(label, cell.metric)
                value = paper_row.get(label, math.nan)
                if expected == cell.metric and not pd.isna(value):
                    cell.paper, block.matched = float(value), True
        if layout.average and set(layout.columns) <= set(block.cells):
            medians = [block.cells[c].median for c in layout.columns]
            avg = Cell("avg", sum(medians) / len(medians))
            if paper_row is not None and not pd.isna(paper_row.get("avg", math.nan)):
                avg.paper = float(paper_row["avg"])
            block.cells["avg"] = avg
        blocks.append(block)
    if any("avg" in b.cells for b in blocks):
        columns.append("avg")
    return Table(artifact, layout, columns, blocks, notes, paper is not None, keys)
