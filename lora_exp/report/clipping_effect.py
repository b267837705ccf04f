"""What clipping the gradient changed in every cell, not only in those that collapsed (issue 19).

    python -m lora_exp.report collapse      # appends this section to results/collapse.md

Every embedded cell was rerun with the gradient's global norm clipped at 1.0 (the sweep files'
`trainer.gradient_clip_val`), the change that stopped the q,k,v,o collapses at small rank
(collapse_probes.py). A principled change applied to every cell must also show what it did to the
cells that never collapsed, or a reader cannot tell a fix from a shift of every score. Per study
that kept its earlier runs in `runs_unclipped/`, per cell (collapse.cell_label: method, targets,
rank, task), on the table's metric of the test split (the score the study's table reports):

    seeds  S = the seeds both arms have (runs/ clipped at 1.0, runs_unclipped/ not clipped)
    d_s    = score(clipped, s) − score(not clipped, s),  s ∈ S
    shown  median(d) and its percentile bootstrap 95% interval (intervals.difference, paired),
           collapsed runs per arm, and the arms' medians over S

and one line that counts the cells whose interval lies above zero, below zero, or spans it. Runs
are read through collapse.study_records (successful runs, a `reused_from` copy counted once).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from lora_exp.report.collapse import cell_label, is_collapsed, study_records
from lora_exp.report.collapse_probes import CLIP_NORM, clip_of
from lora_exp.report.intervals import RESAMPLES, difference
from lora_exp.report.load import is_percent, record_row

UNCLIPPED = "runs_unclipped"


def table_score(record: dict) -> float | None:
    """The record's test score on its task's table metric, x100 where the tables scale it."""
    row = record_row(record, "test")
    metric = row["table_metric"]
    value = row.get(f"metric:{metric}")
    if value is None:
        return None
    return value * 100 if is_percent(metric) else value


def arms(results: Path, artifacts) -> dict[tuple[str, str], dict[str, dict[int, dict]]]:
    """{(study, cell): {"clipped": {seed: record}, "plain": {seed: record}}} for every study that
    has a runs_unclipped/ folder; a run counts in an arm only with that arm's clip setting."""
    out: dict[tuple[str, str], dict[str, dict[int, dict]]] = {}
    for study, _, record in study_records(results, artifacts):
        artifact, _, folder = study.partition("/")
        if not (Path(results) / artifact / UNCLIPPED).is_dir():
            continue
        clip = clip_of(record)
        if folder == UNCLIPPED and clip is None:
            arm = "plain"
        elif not folder and clip == CLIP_NORM:
            arm = "clipped"
        else:
            continue
        cell = out.setdefault((artifact, cell_label(record)), {"clipped": {}, "plain": {}})
        cell[arm].setdefault(int(record["seed"]), record)
    return out


def clipping_rows(results: Path, artifacts) -> list[dict]:
    """One row per (study, cell) with seeds in both arms: the paired difference and its parts."""
    rows = []
    for (study, cell), arm in sorted(arms(results, artifacts).items()):
        clipped = {s: table_score(r) for s, r in arm["clipped"].items()}
        plain = {s: table_score(r) for s, r in arm["plain"].items()}
        seeds = sorted(s for s in set(clipped) & set(plain) if None not in (clipped[s], plain[s]))
        if not seeds:
            continue
        a = {s: clipped[s] for s in seeds}
        b = {s: plain[s] for s in seeds}
        rows.append(
            {
                "study": study,
                "cell": cell,
                "seeds": len(seeds),
                "plain_collapsed": sum(is_collapsed(arm["plain"][s]) for s in seeds),
                "clipped_collapsed": sum(is_collapsed(arm["clipped"][s]) for s in seeds),
                "plain_median": statistics.median(b.values()),
                "clipped_median": statistics.median(a.values()),
                "difference": difference(a, b),
            }
        )
    return rows


def direction(row: dict) -> str:
    """'up', 'down' or 'spans 0': where the difference's interval lies."""
    interval = row["difference"]
    if interval.lo > 0:
        return "up"
    if interval.hi < 0:
        return "down"
    return "spans 0"


def clipping_markdown(results: Path, artifacts) -> list[str]:
    """The section for the end of collapse.md; empty when no study kept unclipped runs."""
    rows = clipping_rows(Path(results), artifacts)
    if not rows:
        return []
    lines = [
        "",
        "### Clipping in every cell (each study's `runs/` against its `runs_unclipped/`)",
        "",
        "Test score on the table's metric, x100. Difference: clipped at 1.0 − not clipped, "
        "paired by seed over the seeds both arms have, median and percentile bootstrap 95% "
        f"interval ({RESAMPLES:,} resamples). Definitions: `lora_exp/report/clipping_effect.py`.",
        "",
        "| study | cell | seeds | collapsed, no clip / clip | median, no clip / clip "
        "| clipped − not [95% CI] | interval |",
        "|---|---|---:|---|---|---|---|",
    ]
    for row in rows:
        d = row["difference"]
        lines.append(
            f"| {row['study']} | {row['cell']} | {row['seeds']} | {row['plain_collapsed']} / "
            f"{row['clipped_collapsed']} | {row['plain_median']:.1f} / "
            f"{row['clipped_median']:.1f} | {d.estimate:+.1f} [{d.lo:+.1f}, {d.hi:+.1f}] | "
            f"{direction(row)} |"
        )
    counts = {k: sum(direction(r) == k for r in rows) for k in ("up", "down", "spans 0")}
    lines += [
        "",
        f"Of {len(rows)} cells, clipping's interval lies above zero in {counts['up']}, below zero "
        f"in {counts['down']}, and spans zero in {counts['spans 0']}. The studies' tables and the "
        "claims use the clipped runs only.",
    ]
    if min(row["seeds"] for row in rows) <= 5:
        lines.append(
            "A cell with few shared seeds has a coarse interval: with 3 it is the range of the 3 "
            "differences, which covers their population median with probability 75% "
            "(`lora_exp/report/intervals.py`)."
        )
    return lines
