"""The collapse investigation (issue 19): what the two probe sweeps say about why runs collapse.

    python -m lora_exp.report collapse      # appends these sections to results/collapse.md

Two sweeps test the suspects of the LoRA q,k,v,o collapses at small rank (collapse.py defines a
collapsed run; lr 3e-3 with α = 8 gives α/r = 8 at r=1 and 4 at r=2, bf16 autocast, no gradient
clipping):

* `collapse_probe` (conf/sweep/collapse_probe.yaml): the collapsed cells' seed 2 rerun with each
  suspect changed alone and together: learning rate {3e-3, 1e-3} × precision {bf16, fp32} ×
  gradient clipping {none, global norm 1.0}. One row per run.
* `collapse_clip` (conf/sweep/collapse_clip.yaml): the q,k,v,o r=1 and r=2 cells over every seed
  with the gradient clipped to norm 1.0 (Hugging Face Trainer's default max_grad_norm, kept by
  the official LoRA NLU scripts), against the same cells of `embedded_rank` without clipping
  (its runs_unclipped/ once the study is rerun with clipping, else its runs/), seed by seed:
  collapsed runs per arm, and the paired difference of test accuracy (clipped − not) with its
  bootstrap interval (intervals.py).

A sweep that has not run yet gives one line saying so, so the report never fails for lack of it.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from lora_exp.report.collapse import evidence, is_collapsed, number_text
from lora_exp.report.intervals import RESAMPLES, difference

PROBE = "collapse_probe"
CLIP = "collapse_clip"
BASELINE = "embedded_rank"  # the unclipped cells collapse_clip is compared with: its runs
# without clipping, in runs_unclipped/ once the study is rerun with clipping, else still in runs/
BASELINE_RUNS = ("runs_unclipped", "runs")
TARGETS = ["k", "o", "q", "v"]  # sorted: the q,k,v,o cells
CLIP_NORM = 1.0


def successful_records(runs_dir: Path) -> list[tuple[Path, dict]]:
    """(run dir, record) of every successful run under runs_dir, by run name."""
    out = []
    for path in sorted(Path(runs_dir).glob("*/record.json")):
        record = json.loads(path.read_text())
        if record.get("status") == "success":
            out.append((path.parent, record))
    return out


def is_qkvo_cell(record: dict, rank: int) -> bool:
    config = record.get("config") or {}
    method = config.get("method") or {}
    return (
        method.get("name") == "lora"
        and sorted(method.get("targets") or []) == TARGETS
        and method.get("rank") == rank
        and (record.get("task") or {}).get("name") == "tweet_sentiment"
    )


def clip_of(record: dict):
    return ((record.get("config") or {}).get("trainer") or {}).get("gradient_clip_val")


def precision_of(record: dict) -> str:
    """The probe's configured precision (it names one; `auto` is bf16-mixed on a GPU)."""
    return str(((record.get("config") or {}).get("trainer") or {}).get("precision"))


def commit_of(record: dict) -> str:
    """The short commit the run's code came from ('-' when not recorded)."""
    git = (record.get("environment") or {}).get("git") or {}
    return str(git.get("commit") or "-")[:7]


def step_mode_of(record: dict) -> str:
    """How the run executed its training step (engine/step.py); records from before the step
    modes existed say nothing, and ran op by op: eager."""
    return str((record.get("step") or {}).get("mode") or "eager")


def probe_lines(results: Path) -> list[str]:
    """The seed-2 probe: one row per run, each suspect's setting and the run's outcome."""
    runs = successful_records(results / PROBE / "runs")
    lines = ["", f"#### Probe at seed 2: learning rate × precision × clipping (`{PROBE}`)", ""]
    if not runs:
        return [*lines, f"Not run yet: `python run.py -m sweep={PROBE}`."]
    lines += [
        "A probe run shares the collapsed runs' data order and head initialisation (both drawn "
        "on the CPU from the seed, whatever the device) but, on another device, not their "
        "dropout masks (drawn by the device's own generator) nor their kernels' rounding; a "
        "`graphed` step (the whole step replayed as a CUDA graph) draws its masks from another "
        "stream than an `eager` one on the same device. code: the commit in the run's record.",
        "",
        "| r | α/r | lr | precision | clip | code | device | step | test acc (headroom) | "
        "collapsed | val acc per epoch | rolling loss: low (step), blow-up step |",
        "|---:|---:|---:|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for run_dir, record in runs:
        e = evidence(record, run_dir)
        clip = clip_of(record)
        rows.append(
            (
                (e["rank"], -e["lr"], precision_of(record), clip is not None),
                f"| {e['rank']} | {number_text(e['alpha_over_r'], 0)} | {e['lr']:g} | "
                f"{precision_of(record)} | {'none' if clip is None else clip} | "
                f"{commit_of(record)} | "
                f"{(record.get('environment') or {}).get('device')} | {step_mode_of(record)} | "
                f"{number_text(e['test_acc'])} "
                f"({e['headroom']:.0%}) | {'**yes**' if is_collapsed(record) else 'no'} | "
                f"{', '.join(number_text(v) for v in e['val_acc'])} | "
                + (
                    f"{number_text(e['loss_low'], 3)} ({e['loss_low_step']}), "
                    f"{e['loss_blowup_step'] if e['loss_blowup_step'] is not None else 'none'}"
                    if "loss_low" in e
                    else "no step log"
                )
                + " |",
            )
        )
    lines += [text for _, text in sorted(rows, key=lambda r: r[0])]
    collapsed = sum(is_collapsed(r) for _, r in runs)
    lines += ["", f"{collapsed} of {len(runs)} probe runs collapsed."]
    return lines


def by_seed(runs: list[tuple[Path, dict]], rank: int, clipped: bool) -> dict[int, dict]:
    """{seed: record} of the q,k,v,o r=`rank` runs, clipped at CLIP_NORM or not clipped."""
    want = CLIP_NORM if clipped else None
    out = {}
    for _, record in runs:
        if is_qkvo_cell(record, rank) and clip_of(record) == want:
            out.setdefault(int(record["seed"]), record)
    return out


def accuracy(record: dict) -> float:
    return float(record["test"]["test/acc"]) * 100


def collapsed_text(records: dict[int, dict], seeds: list[int]) -> str:
    """'1 of 10 (seed 2)': the collapsed runs among `seeds`."""
    hit = [s for s in seeds if is_collapsed(records[s])]
    named = f" (seed{'s' if len(hit) > 1 else ''} {', '.join(map(str, hit))})" if hit else ""
    return f"{len(hit)} of {len(seeds)}{named}"


def clip_lines(results: Path) -> list[str]:
    """Clipped against not, seed by seed, on the q,k,v,o r=1 and r=2 cells."""
    clipped_runs = successful_records(results / CLIP / "runs")
    lines = ["", f"#### Clipping across seeds (`{CLIP}` against `{BASELINE}`, unclipped)", ""]
    if not clipped_runs:
        return [*lines, f"Not run yet: `python run.py -m sweep={CLIP}`."]
    # by_seed keeps only the unclipped records of these folders
    baseline_runs = [r for f in BASELINE_RUNS for r in successful_records(results / BASELINE / f)]
    lines += [
        f"LoRA q,k,v,o on tweet_sentiment, everything but clipping as in `{BASELINE}`. "
        "Difference: test accuracy clipped − not clipped, paired by seed (seeds both arms have), "
        f"median and percentile bootstrap 95% interval ({RESAMPLES:,} resamples).",
        "",
        "| r | seeds | collapsed, no clipping | collapsed, clip 1.0 | median test acc, no clip "
        "/ clip | clipped − not [95% CI] | lowest test acc, no clip / clip |",
        "|---:|---|---|---|---|---|---|",
    ]
    totals = {"plain": [0, 0], "clipped": [0, 0]}  # [collapsed, runs] over both ranks
    for rank in (1, 2):
        clipped = by_seed(clipped_runs, rank, clipped=True)
        plain = by_seed(baseline_runs, rank, clipped=False)
        seeds = sorted(set(clipped) & set(plain))
        if not seeds:
            lines.append(f"| {rank} | none in both arms | - | - | - | - | - |")
            continue
        for arm, records in (("plain", plain), ("clipped", clipped)):
            totals[arm][0] += sum(is_collapsed(records[s]) for s in seeds)
            totals[arm][1] += len(seeds)

        a = {s: accuracy(clipped[s]) for s in seeds}
        b = {s: accuracy(plain[s]) for s in seeds}
        interval = difference(a, b)
        lines.append(
            f"| {rank} | {','.join(map(str, seeds))} | {collapsed_text(plain, seeds)} | "
            f"{collapsed_text(clipped, seeds)} | {statistics.median(b.values()):.1f} / "
            f"{statistics.median(a.values()):.1f} | {interval.estimate:+.1f} "
            f"[{interval.lo:+.1f}, {interval.hi:+.1f}] | {min(b.values()):.1f} / "
            f"{min(a.values()):.1f} |"
        )
    if totals["plain"][1]:
        lines += [
            "",
            f"Collapsed over both ranks: {totals['plain'][0]} of {totals['plain'][1]} runs "
            f"without clipping, {totals['clipped'][0]} of {totals['clipped'][1]} with the "
            "gradient norm clipped at 1.0. The lowest accuracies also show runs that degraded "
            "without reaching the collapse threshold.",
        ]
    return lines


def probes_markdown(results: Path) -> list[str]:
    """Both probe sections, for the end of collapse.md."""
    return [
        "",
        "### Why runs collapse: the probes",
        "",
        "Definitions and sweeps: `lora_exp/report/collapse_probes.py`.",
        *probe_lines(Path(results)),
        *clip_lines(Path(results)),
    ]
