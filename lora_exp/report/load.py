"""Run records -> pandas: select the valid runs and aggregate over seeds the paper's way.

The paper reports, for every cell of its tables, the **median over random seeds** of each run's
best-epoch score (Hu et al. 2021, Sec. 5 and Appendix D.1: "median of 5 runs with different random
seeds"). For a cell with seed scores x_1..x_n we report

    median(x),   std(x) = sqrt(Σ (x_k - mean(x))² / (n - 1))   (sample std, empty for n = 1),   n

and the percentile bootstrap 95% interval [lo, hi] of the median over seeds (intervals.py), with
the number of collapsed runs in the cell (collapse.py; they stay in the median and the interval).

A run counts when its record has status "success" and its task version equals the current
`version` in `conf/task/<task>.yaml` (older versions used other preprocessing, so they never share
a cell with current ones). Two successful records of the same setting and seed (a forced re-run)
count once: the later one wins. The *setting* is the resolved config without the seed and without
what never changes results (logging, launching, the trainer's display knobs, and the top-level
rank/alpha/targets knobs, which reach a method only through its own config); runs of one cell
whose settings differ (another learning rate, budget ...) are reported in the notes, as they
should not share a median. A record with `reused_from` is a copy of a run of another sweep (a
cell two sweeps share, run once): it counts like the run itself, and once when the original is
loaded too (copy and original have the same config hash, seed and start time). A cell is
identified by KEYS (`setup` is the paper's standard or
restricted † setup of Table 2, empty when a run does not say); the score of a run is its
`test/<metric>` (for GLUE the test split is the dev set, as in the paper), else the best epoch's
`val/<metric>`. A table shows each task's `table_metric` (the metric of its column in the paper;
the primary metric when the task does not name one). Fractions (accuracy, F1, correlations, also
suffixed ones such as MNLI's acc_mm) are printed x100 as the paper does.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

from lora_exp.errors import UserError
from lora_exp.records import config_hash
from lora_exp.report.collapse import is_collapsed
from lora_exp.report.intervals import median_interval

# Config entries that are not part of a run's setting (see the module docstring); prefixes match.
NOT_SETTING = ("seed", "rank", "alpha", "targets", "logger", "launcher", "hydra", "force")
NOT_SETTING += ("records_root", "run_dir", "trainer.enable_progress_bar")
NOT_SETTING += ("trainer.log_every_n_steps", "trainer.num_workers")

TARGET_ORDER = ("q", "k", "v", "o", "ffn_in", "ffn_out")
KEYS = ["model", "method", "setup", "rank", "targets", "task"]
# Metrics stored as fractions in the record; the paper prints them x100 (Table 2, Table 3).
PERCENT = {"acc", "f1", "f1_macro", "mcc", "pearson", "spearman", "meteor", "rouge_l"}


def canonical_targets(targets) -> str:
    """["v", "q"] -> "q,v" in the paper's order (q, k, v, o, ffn_in, ffn_out); None -> ""."""
    if not targets:
        return ""
    order = {name: i for i, name in enumerate(TARGET_ORDER)}
    return ",".join(sorted(targets, key=lambda t: (order.get(t, len(order)), t)))


def flatten(config: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are kept as JSON text."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat


def setting_of(config: dict) -> dict:
    """The flattened config without the NOT_SETTING entries."""
    return {
        k: v
        for k, v in flatten(config).items()
        if not any(k == p or k.startswith(p + ".") for p in NOT_SETTING)
    }


def record_row(record: dict, score: str = "test") -> dict:
    """Flatten one record into the columns the report needs.

    Rank and targets come from the *method* config: methods without them (full_ft, bitfit) get
    an empty rank and targets, even though the top-level knobs always exist.

    Args:
        record: a run record.
        score: "test" (test/* of the best-validation checkpoint, else the best epoch's val/*) or
            "val" (the best epoch's val/* only, the paper's dev-set statistic).
    """
    config = record.get("config") or {}
    method = config.get("method") or {}
    task = record.get("task") or {}
    row = {
        "model": (config.get("model") or {}).get("name"),
        "method": method.get("name"),
        "setup": config.get("setup") or "",
        "rank": method.get("rank"),
        "targets": canonical_targets(method.get("targets")),
        "task": task.get("name") or (config.get("task") or {}).get("name"),
        "task_version": task.get("version"),
        "seed": record.get("seed", config.get("seed")),
        "status": record.get("status"),
        "primary_metric": record.get("primary_metric"),
        "table_metric": (config.get("task") or {}).get("table_metric")
        or record.get("primary_metric"),
        "trainable": (record.get("params") or {}).get("params/trainable"),
        "device": (record.get("environment") or {}).get("device"),
        # how the training step ran (engine/step.py); records from before the modes ran eagerly
        "step": (record.get("step") or {}).get("mode") or "eager",
        # the gradient's global-norm clip (None: not clipped), named in the claims' setup
        "clip": (config.get("trainer") or {}).get("gradient_clip_val"),
        "config_hash": record.get("config_hash") or config_hash(config),
        "setting": setting_of(config),
        "finished_at": record.get("finished_at") or "",
        "run_dir": record.get("run_dir") or "",
        "collapsed": is_collapsed(record),
    }
    best = {k.removeprefix("val/"): v for k, v in (record.get("best") or {}).items()}
    test = {k.removeprefix("test/"): v for k, v in (record.get("test") or {}).items()}
    scores = {**best, **test} if score == "test" else best  # "val": the best epoch's val/*
    for name, value in sorted(scores.items()):
        if name not in ("epoch", "step") and "/" not in name and isinstance(value, int | float):
            row[f"metric:{name}"] = float(value)
    return row


def is_percent(metric: str) -> bool:
    """A fraction the paper prints x100: acc, f1_macro, mcc ... and suffixed ones (acc_mm)."""
    return metric in PERCENT or any(metric.startswith(f"{p}_") for p in PERCENT)


def find_record_files(roots: list[Path]) -> list[Path]:
    """Every `record.json` below the given directories (or the files themselves), sorted."""
    files: set[Path] = set()
    for root in roots:
        root = Path(root)
        if root.is_file():
            files.add(root)
        elif root.is_dir():
            files.update(root.rglob("record.json"))
    return sorted(files)


def read_records(roots: list[Path]) -> list[dict]:
    """Load every record below `roots`; unreadable files are reported and skipped."""
    records = []
    for path in find_record_files(roots):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"warning: skipping unreadable record {path}: {exc}", file=sys.stderr)
            continue
        record.setdefault("run_dir", str(path.parent))
        records.append(record)
    return records


def run_identity(record: dict) -> tuple:
    """What a run and its copies (`reused_from`) share: config hash, seed and start time."""
    config = record.get("config") or {}
    return (
        record.get("config_hash") or config_hash(config),
        record.get("seed", config.get("seed")),
        record.get("started_at") or record.get("finished_at") or "",
    )


def drop_copies(records: list[dict]) -> tuple[list[dict], list[str]]:
    """Count every run once: leave out a `reused_from` copy when its original (or another copy
    of it) is already among `records`; originals come first, then copies in file order.

    Returns:
        The records to use and a note on how many copies were counted once (none: no note).
    """
    seen, kept, copies, dropped = set(), [], 0, 0
    ordered = sorted(records, key=lambda r: bool(r.get("reused_from")))  # stable: originals first
    for record in ordered:
        identity = run_identity(record)
        copies += bool(record.get("reused_from"))
        if identity in seen:
            dropped += 1
            continue
        seen.add(identity)
        kept.append(record)
    notes = []
    if copies:
        notes.append(
            f"{copies} record(s) are copies of runs shared with another sweep (reused_from)"
            + (f"; {dropped} of them also loaded as the original, counted once" if dropped else "")
        )
    return kept, notes


def records_frame(records: list[dict], score: str = "test") -> pd.DataFrame:
    """One row per record: the cell keys, seed, status, task version and one column per metric."""
    rows = [record_row(r, score) for r in records]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["rank"] = frame["rank"].astype("Int64")
    return frame.sort_values(
        ["status", *KEYS, "seed", "finished_at", "run_dir"], na_position="last"
    )


def current_task_versions(tasks: list[str], conf_dir: Path) -> dict[str, int]:
    """`version` of each task from `conf/task/<task>.yaml` (tasks without a file are left out)."""
    from omegaconf import OmegaConf

    versions = {}
    for task in sorted(set(tasks)):
        path = Path(conf_dir) / "task" / f"{task}.yaml"
        if path.exists():
            versions[task] = int(OmegaConf.load(path).version)
    return versions


def select(frame: pd.DataFrame, versions: dict[str, int]) -> tuple[pd.DataFrame, list[str]]:
    """Keep successful runs of the current task version, one per (configuration, seed).

    Args:
        frame: `records_frame` output.
        versions: current version per task; a task missing here keeps its newest version.

    Returns:
        The kept rows and human-readable notes on what was dropped and why (sorted).

    Raises:
        UserError: if no record survives, with the reason.
    """
    if frame.empty:
        raise UserError("no run records found (looked for **/record.json)")
    notes = []
    for status, count in frame["status"].value_counts().sort_index().items():
        if status != "success":
            notes.append(f"{count} record(s) with status {status} left out")
    ok = frame[frame["status"] == "success"]
    if ok.empty:
        raise UserError(f"none of the {len(frame)} run records has status success")
    keep = []
    for task, rows in ok.groupby("task", sort=True):
        current = versions.get(task, int(rows["task_version"].max()))
        stale = rows[rows["task_version"] != current]
        if len(stale):
            old = ", ".join(str(v) for v in sorted(stale["task_version"].unique()))
            notes.append(
                f"{len(stale)} record(s) of task {task} at version {old} left out "
                f"(current version {current}, conf/task/{task}.yaml)"
            )
        if len(stale) == len(rows):
            raise UserError(
                f"all {len(rows)} successful records of task {task} have task version {old}, "
                f"but the current version is {current}: rerun them, or report from a checkout "
                "whose conf/task matches"
            )
        keep.append(rows[rows["task_version"] == current])
    kept = pd.concat(keep)
    kept["setting_id"] = [
        hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:16]
        for s in kept["setting"]
    ]
    kept = kept.sort_values(["setting_id", "seed", "finished_at", "run_dir"])
    deduped = kept.drop_duplicates(["setting_id", "seed"], keep="last")
    if len(deduped) < len(kept):
        notes.append(f"{len(kept) - len(deduped)} repeated run(s) of one setting and seed left out")
    deduped = deduped.sort_values([*KEYS, "seed"], na_position="last")
    return deduped, sorted(notes + mixed_settings(deduped))


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def mixed_settings(kept: pd.DataFrame) -> list[str]:
    """A note for every cell whose runs differ in more than the seed (names the entries).

    Two kinds of difference are named apart: an entry whose recorded values differ (a real
    difference in how the runs were made), and an entry that only newer records carry (the
    older runs predate the option; what their code did is the option's behaviour at the time).
    """
    notes = []
    for key, rows in kept.groupby(KEYS, dropna=False, sort=True):
        if rows["setting_id"].nunique() < 2:
            continue
        settings = list(rows["setting"])
        names = sorted(set().union(*settings))
        differ = [n for n in names if len({repr(s[n]) for s in settings if n in s}) > 1]
        newer = [n for n in names if n not in differ and any(n not in s for s in settings)]
        cell = "/".join(str(v) for v in key if not (pd.isna(v) or v == ""))
        parts = []
        if differ:
            parts.append(f"differ in {_names(differ)} (not only the seed)")
        if newer:
            older = sum(any(n not in s for n in newer) for s in settings)
            parts.append(f"{older} of {len(settings)} predate the entries {_names(newer)}")
        notes.append(f"{'warning' if differ else 'note'}: the runs of {cell} {'; '.join(parts)}")
    return notes


def long_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Melt metric columns into (keys, seed, metric, value), values scaled as the paper prints."""
    metric_cols = sorted(c for c in frame.columns if c.startswith("metric:"))
    # device, step and clip name how each run trained in the claims' setup (claims.py)
    ident = [*KEYS, "seed", "table_metric", "trainable", "device", "step", "clip", "collapsed"]
    long = frame[ident + metric_cols].melt(id_vars=ident, var_name="metric", value_name="value")
    long["metric"] = long["metric"].str.removeprefix("metric:")
    long = long.dropna(subset=["value"])
    scale = long["metric"].map(lambda m: 100.0 if is_percent(m) else 1.0)
    long["value"] = long["value"].astype(float) * scale
    return long.sort_values([*KEYS, "metric", "seed"], na_position="last", ignore_index=True)


def aggregate(long: pd.DataFrame) -> pd.DataFrame:
    """Median, bootstrap interval, sample std, count and collapsed runs over seeds for every
    (cell, metric)."""
    group = [*KEYS, "metric"]
    parts = []
    for key, rows in long.groupby(group, dropna=False, sort=True):
        values = rows["value"].astype(float)
        interval = median_interval(values.to_numpy())
        collapsed = (
            rows[rows["collapsed"].fillna(False).astype(bool)] if "collapsed" in rows else []
        )
        parts.append(
            {
                **dict(zip(group, key, strict=True)),
                "median": float(values.median()),
                "lo": interval.lo,
                "hi": interval.hi,
                "collapsed": len(collapsed),
                "collapsed_seeds": ",".join(str(s) for s in sorted(collapsed["seed"]))
                if len(collapsed)
                else "",
                "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "n": len(values),
                "seeds": ",".join(str(s) for s in sorted(rows["seed"].unique())),
                "primary": bool((rows["table_metric"] == key[-1]).any()),
                "trainable": rows["trainable"].median(),
                "device": "; ".join(sorted(rows["device"].dropna().unique())),
            }
        )
    out = pd.DataFrame(parts)
    out["rank"] = out["rank"].astype("Int64")
    return out.sort_values(group, na_position="last", ignore_index=True)


def load_cells(
    roots: list[Path],
    versions: dict[str, int] | None,
    conf_dir: Path,
    extra: list[dict] = (),
    score: str = "test",
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Records below `roots` (plus `extra`, e.g. from wandb) -> (cells, kept runs, notes).

    Raises:
        UserError: if there are no records, or none is usable.
    """
    records = read_records(roots) + list(extra)
    if not records:
        where = ", ".join(str(r) for r in roots)
        raise UserError(f"no run records found under {where} (looked for **/record.json)")
    records, copy_notes = drop_copies(records)
    frame = records_frame(records, score)
    if versions is None:
        versions = current_task_versions(list(frame["task"].dropna()), conf_dir)
    kept, notes = select(frame, versions)
    return aggregate(long_scores(kept)), kept, sorted(notes + copy_notes)
