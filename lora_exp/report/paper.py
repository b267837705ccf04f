"""The paper's numbers, reshaped so each of our table rows can find its paper row.

`experiments/<artifact>/paper.csv` holds a copy of the paper's table (Hu et al. 2021; comment
lines start with '#'). Each reshaper below returns a *wide* frame: the fields a row is matched on
(model, method, task, targets, variant ...), optionally `trainable` (parameters, a float) and
`trainable_label` (as printed, e.g. "0.3M"), and one column per table column label, in the
labels our tables use (task names for Table 2, metric names for Table 3, "1", "2", ... for the ranks
of Table 6, "q,v r=4" for the weight types of Table 5, "32x512" for Table 1).

Matching (`match_row`): among the paper rows equal on the layout's match fields (a field our run
leaves empty, such as an unknown setup, matches every row), take the one whose
trainable-parameter count is nearest to ours on a log scale (Table 2 lists AdapterH at 6.0M and
0.8M); on a tie the paper's "standard" setup wins over its restricted (dagger) setup.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

GLUE_TASKS = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")
# The metric of each Table 2 column (Sec. 5.1, Table 2 caption): our primary metric must agree.
GLUE_METRIC = {t: "acc" for t in GLUE_TASKS} | {"cola": "mcc", "stsb": "pearson"}
E2E_METRICS = ("bleu", "nist", "meteor", "rouge_l", "cider")


def read_paper(path: Path) -> pd.DataFrame | None:
    """The paper's CSV with its comment lines skipped; None if the artifact has none."""
    path = Path(path)
    if not path.exists():
        return None
    return pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)


def parse_count(label: str) -> float:
    """'0.3M' -> 300000.0, '125.0M' -> 125e6, '0.5M' -> 5e5; '' -> nan."""
    label = str(label).strip()
    if not label:
        return math.nan
    units = {"K": 1e3, "M": 1e6, "B": 1e9}
    if label[-1] in units:
        return float(label[:-1]) * units[label[-1]]
    return float(label)


def weights_label(targets: str, rank) -> str:
    """The Table 5 column label of a target set at a rank: 'q,v r=4'."""
    return f"{targets} r={int(rank)}"


def _numeric(frame: pd.DataFrame, columns) -> pd.DataFrame:
    for col in columns:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def glue_wide(raw: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as printed: one row per (model, method, setup, trainable)."""
    out = raw[["model", "method", "setup", "trainable", "source", *GLUE_TASKS, "avg"]].copy()
    out = out.rename(columns={"trainable": "trainable_label"})
    out["trainable"] = out["trainable_label"].map(parse_count)
    return _numeric(out, [*GLUE_TASKS, "avg"])


def e2e_wide(raw: pd.DataFrame) -> pd.DataFrame:
    """Table 3 as printed: one row per (model, method, trainable); columns are the metrics."""
    out = raw[["model", "method", "trainable", "source", *E2E_METRICS]].copy()
    out = out.rename(columns={"trainable": "trainable_label"})
    out["trainable"] = out["trainable_label"].map(parse_count)
    out["setup"] = "standard"
    return _numeric(out, E2E_METRICS)


def weight_types_wide(raw: pd.DataFrame) -> pd.DataFrame:
    """Table 5 transposed: one row per task, one column per (targets, rank)."""
    rows = []
    for task in ("wikisql", "mnli"):
        row = {"task": task}
        for _, paper in raw.iterrows():
            row[weights_label(paper["targets"], paper["rank"])] = float(paper[task])
        rows.append(row)
    return pd.DataFrame(rows)


def rank_wide(raw: pd.DataFrame) -> pd.DataFrame:
    """Table 6: one row per (task, targets), one column per rank ('1', '2', ...)."""
    rank_cols = [c for c in raw.columns if c.startswith("r") and c[1:].isdigit()]
    out = raw[["task", "targets", *rank_cols]].copy()
    out = out.rename(columns={c: c[1:] for c in rank_cols})
    return _numeric(out, [c[1:] for c in rank_cols])


def latency_wide(raw: pd.DataFrame) -> pd.DataFrame:
    """Table 1: one row per variant; columns '32x512' (ms) and '32x512 %' (overhead)."""
    raw = raw.copy()
    raw["variant"] = raw["method"].replace({"none": "base"})
    rows = []
    for variant, group in raw.groupby("variant", sort=True):
        row = {"variant": variant}
        for _, p in group.iterrows():
            label = f"{p['batch_size']}x{p['seq_len']}"
            row[label] = float(p["ms_mean"])
            row[f"{label} %"] = float(p["overhead_pct"])
        rows.append(row)
    return pd.DataFrame(rows)


RESHAPERS = {
    "glue": glue_wide,
    "e2e": e2e_wide,
    "weight_types": weight_types_wide,
    "rank": rank_wide,
    "latency": latency_wide,
}


def paper_table(kind: str, path: Path) -> pd.DataFrame | None:
    """The paper's table for a layout kind, reshaped; None when the artifact has no paper.csv."""
    raw = read_paper(path)
    if raw is None or kind not in RESHAPERS:
        return None
    return RESHAPERS[kind](raw)


def match_row(paper: pd.DataFrame | None, fields: dict, trainable: float | None) -> dict | None:
    """The paper row for one of our rows (see the module docstring), as a dict; None if none.

    Args:
        paper: a reshaped paper table.
        fields: field -> our value, for the layout's match fields.
        trainable: our trainable-parameter count, or None.
    """
    if paper is None:
        return None
    rows = paper
    for field, value in fields.items():
        if value is None or value == "" or field not in rows.columns:
            continue  # a run that does not say (e.g. no setup) matches any paper row
        rows = rows[rows[field].astype(str) == str(value)]
    if rows.empty:
        return None
    if "trainable" in rows.columns and trainable and trainable > 0:
        distance = (rows["trainable"].map(math.log) - math.log(trainable)).abs().round(9)
        restricted = (rows["setup"] != "standard").astype(int) if "setup" in rows else 0
        order = pd.DataFrame({"d": distance, "s": restricted, "i": range(len(rows))})
        best = int(order.sort_values(["d", "s", "i"]).iloc[0]["i"])
        return rows.iloc[best].to_dict()
    return rows.iloc[0].to_dict()
