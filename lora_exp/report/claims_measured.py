"""Claims (d)-(f) of claims.md: Section 7 statistics and the two benchmarks, each with its rule.

(d) Section 7, from the committed outputs of `python -m lora_exp.report section7` (every seed
present; the pairs and the summaries over them: section7_pairs.py):

    amplification ‖ΔW‖_F / ‖UᵀWVᵀ‖_F per run = its median over layers (results/section7/
    amplification.csv, every seed at r = 4 and r = 64); "r = 4 amplifies more than r = 64": the
    difference r=4 − r=64 paired by seed (intervals.difference; unpaired, and said so, when the
    seed sets differ), verdicts.py's `better` rule on its 95% interval; n = seeds per rank.
    φ(1,1) (Eq. 4: φ = ‖U_aⁱᵀ U_bʲ‖²_F / min(i, j)) per pair of runs = its mean over layers
    (results/section7/subspace_pairs.csv): per pair the difference φ − φ_Gaussian (the control
    of the same shape; "overlap above chance") and φ − 0.5 (the paper's "φ > 0.5", r=8 vs r=64
    only), each its median over the pairs with the bootstrap interval that resamples pairs
    (intervals.median_interval), judged by `better`; n = pairs. Pairs: r=8 vs r=64 one per seed
    with both checkpoints; r=64 seed vs seed the disjoint pairs (0,1), (2,3), ... With fewer than
    verdicts.MIN_SEEDS pairs (or seeds) a comparison is inconclusive, whatever its value.

(e) Table 1 latency (results/table1_latency/table.csv, and the trials of its run's record under
runs/): each variant's overhead over the base, Δ% = (median(variant) / median(base) − 1) · 100,
with the percentile bootstrap interval of that ratio that resamples the 100 trials as pairs
(intervals.ratio_interval: trial t of a variant and of the base ran in the same rotation, so a
slow round moves both). The replicates are trials, not seeds: the weights are random, and a
seed changes their values, not the kernels that run. The noise floor F = max(1%, |Δ% of the
control|), the control an identical copy of the base measured in the same rotation (what
placement alone does):

    merged LoRA adds no latency   holds: hi ≤ F      does not hold: lo > F     (one-sided: a
                                  variant faster than the base adds no latency either)
    adapters add latency (1x128)  holds: lo > F      does not hold: hi ≤ F
    otherwise, or no control measured: inconclusive
    (a record from before the trials were kept: the point Δ%, judged by the same rule)

The interval is within one run: the run-to-run drift of eager timings at small shapes
(results/table1_latency/repeats/README.md) is what F and the control are there to absorb.

(f) Training efficiency (results/efficiency, via targets.py): each method in its fastest mode,
the ratio taken within one benchmark run (two runs: inconclusive):

    speed   tokens/s LoRA / full FT = median step time full FT / LoRA, with the bootstrap
            interval over each method's timed steps (unpaired: the two ran one after the other)
            holds: lo ≥ 1.25 (the paper's "25% faster")   does not hold: hi < 1.25
    memory  peak allocated memory LoRA / full FT: exact (the same allocations every step), a
            point; holds: ≤ 0.29 (the paper's 350 GB / 1.2 TB), else does not hold
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lora_exp.errors import UserError
from lora_exp.report import section7_pairs
from lora_exp.report import verdicts as V
from lora_exp.report.intervals import Interval, difference, median_interval, ratio_interval

SPEEDUP, MEMORY = 1.25, 0.29
FLOOR_PCT = 1.0
PAPER_PHI = 0.5
VALUE = "value"


def _row(label: str, rule: str, n: str, shown, verdict: str, note: str = ""):
    return V.Row(label, rule, n, {VALUE: (shown, verdict)}, note)


def section7_rows(root: Path) -> list:
    out = Path(root) / "results" / "section7"
    amp_csv = out / "amplification.csv"
    if not amp_csv.exists():
        raise UserError(f"claims: {amp_csv} is missing: run `python -m lora_exp.report section7`")
    amp = pd.read_csv(amp_csv)
    rows = []
    for target in sorted(amp["target"].unique()):
        by_rank = {r: section7_pairs.by_seed(amp, r, target) for r in (4, 64)}
        for r in (4, 64):
            if not by_rank[r]:
                raise UserError(f"claims: {amp_csv} has no rank-{r} runs of ΔW_{target}")
        interval = difference(by_rank[4], by_rank[64])  # paired when both ranks hold the same seeds
        a, b = (median_interval(list(by_rank[r].values())) for r in (4, 64))
        rows.append(
            _row(
                f"amplification r=4 vs r=64, ΔW_{target} (median over layers per run; r=4 "
                f"{a.estimate:.1f} [{a.lo:.1f}, {a.hi:.1f}], r=64 {b.estimate:.2f} "
                f"[{b.lo:.2f}, {b.hi:.2f}]; paper 21.5 and 1.9)",
                V.rule_text("better"),
                f"{len(by_rank[4])} / {len(by_rank[64])} seeds"
                + (", paired" if interval.paired else ", unpaired"),
                interval,
                V.judge("better", interval, len(by_rank[4]), len(by_rank[64])),
            )
        )
    pairs_csv = out / section7_pairs.PAIRS_CSV
    if not pairs_csv.exists():
        raise UserError(f"claims: {pairs_csv} is missing: run `python -m lora_exp.report section7`")
    points = pd.read_csv(pairs_csv)
    for comparison, part in points.groupby("comparison", sort=False):  # rank pairs first
        rank_a, rank_b = int(part["rank_a"].iloc[0]), int(part["rank_b"].iloc[0])
        rank_pair = rank_a != rank_b
        what = f"r={rank_a} vs r={rank_b}" if rank_pair else f"r={rank_a} seed vs seed"
        for target in sorted(part["target"].unique()):
            _, phi, gauss = section7_pairs.per_pair(points, comparison, target, 1, 1)
            n = len(phi)
            ctrl = median_interval([p - g for p, g in zip(phi, gauss, strict=True)])
            rows.append(
                _row(
                    f"φ(1,1) {what} vs Gaussian control, ΔW_{target} (mean over layers per pair; "
                    f"φ {median_interval(phi).estimate:.3f}, control "
                    f"{median_interval(gauss).estimate:.3f})",
                    V.rule_text("better"),
                    f"{n} pair{'s' if n != 1 else ''}",
                    ctrl,
                    V.judge("better", ctrl, n, n),
                )
            )
            if rank_pair:
                paper = median_interval([p - PAPER_PHI for p in phi])
                rows.append(
                    _row(
                        f"φ(1,1) {what} vs the paper's {PAPER_PHI}, ΔW_{target} (φ = "
                        f"{paper.estimate + PAPER_PHI:.3f} [{paper.lo + PAPER_PHI:.3f}, "
                        f"{paper.hi + PAPER_PHI:.3f}])",
                        V.rule_text("better"),
                        f"{n} pair{'s' if n != 1 else ''}",
                        paper,
                        V.judge("better", paper, n, n),
                    )
                )
    return rows


def latency_trials(root: Path) -> dict[tuple, list[float]]:
    """{(batch, seq, mode, variant): the trials' ms in trial order} from the benchmark's latest
    record under results/table1_latency/runs (the run its table.csv was written by); empty
    without one, or for a record from before the trials were kept."""
    paths = sorted((Path(root) / "results" / "table1_latency" / "runs").rglob("record.json"))
    records = [json.loads(p.read_text()) for p in paths]
    if not records:
        return {}
    record = max(records, key=lambda r: r.get("finished_at") or "")
    return {
        (int(e["batch_size"]), int(e["seq_len"]), e["mode"], e["variant"]): e["ms_trials"]
        for e in record.get("latency") or []
        if e.get("ms_trials")
    }


def overhead_interval(trials: dict, key: tuple, point_pct: float) -> tuple[Interval, str]:
    """Δ% of a variant over the base with its interval, and the n text: the paired bootstrap of
    the ratio of medians over the trials when the record holds them, else the table's point
    value as a degenerate interval (judged by the same rule, said so in n)."""
    b, s, mode, _ = key
    ours, base = trials.get(key), trials.get((b, s, mode, "base"))
    if ours and base and len(ours) == len(base):
        r = ratio_interval(ours, base, paired=True)
        pct = Interval((r.estimate - 1) * 100, (r.lo - 1) * 100, (r.hi - 1) * 100, r.n)
        return pct, f"{r.n} trials, paired"
    return Interval(point_pct, point_pct, point_pct, 1), "1 run, no per-trial timings"


def latency_rows(root: Path) -> list:
    path = Path(root) / "results" / "table1_latency" / "table.csv"
    if not path.exists():
        raise UserError(f"claims: {path} is missing: run the Table 1 benchmark")
    lat = pd.read_csv(path)
    trials = latency_trials(root)
    rows = []
    shapes = sorted(
        {(b, s) for b, s in zip(lat["batch_size"], lat["seq_len"], strict=True)}, reverse=True
    )
    for mode in sorted(lat["mode"].unique(), key=lambda m: (m != "graph", m)):
        for b, s in shapes:
            at = lat[(lat["batch_size"] == b) & (lat["seq_len"] == s) & (lat["mode"] == mode)]
            by_variant = {v: r for _, r in at.iterrows() for v in [r["variant"]]}
            get = by_variant.get
            copy = get("base_copy")
            floor = max(FLOOR_PCT, abs(copy["overhead_pct"])) if copy is not None else math.nan
            wanted = [("lora_merged", False)] + (
                [("adapter_h", True), ("adapter_l", True)] if b == 1 else []
            )
            for variant, adds in wanted:
                row = get(variant)
                if row is None:
                    continue
                pct, n = overhead_interval(
                    trials, (int(b), int(s), mode, variant), float(row["overhead_pct"])
                )
                verdict = latency_verdict(pct, floor, adds)
                rule = "Δ% > F" if adds else "Δ% ≤ F"
                shown = (
                    f"{interval_text(pct, '+.1f', '%')} (F = {floor:.1f}%; "
                    f"{row['ms_median']:.2f} ms, p10-p90 {row['ms_p10']:.2f}-{row['ms_p90']:.2f})"
                )
                claim = "adds latency" if adds else "adds no latency"
                rows.append(_row(f"{variant} {claim}, {b}x{s}, {mode}", rule, n, shown, verdict))
    return rows


def interval_text(interval: Interval, spec: str, unit: str) -> str:
    """'1.48× [1.47, 1.49]'; a degenerate interval (one value) prints its value alone."""
    text = f"{interval.estimate:{spec}}{unit}"
    if interval.n > 1:
        text += f" [{interval.lo:{spec}}, {interval.hi:{spec}}]"
    return text


def at_least(interval: Interval, threshold: float) -> str:
    """holds: the whole interval ≥ threshold; does not hold: the whole interval below it."""
    if interval.lo >= threshold:
        return V.HOLDS
    return V.FAILS if interval.hi < threshold else V.INCONCLUSIVE


def latency_verdict(pct: Interval, floor: float, adds: bool) -> str:
    """The module's (e) rule on the interval of Δ%: F is the noise floor of the rotation."""
    if math.isnan(floor):
        return V.INCONCLUSIVE
    if adds:  # "adds latency": the whole interval above the floor
        return V.HOLDS if pct.lo > floor else V.FAILS if pct.hi <= floor else V.INCONCLUSIVE
    # "adds no latency" is one-sided: faster than the base adds none either
    return V.HOLDS if pct.hi <= floor else V.FAILS if pct.lo > floor else V.INCONCLUSIVE


def efficiency_rows(root: Path) -> list:
    from lora_exp.report.targets import load_cut_logs, load_runs, mode_of

    results = Path(root) / "results"
    _, measured = load_runs(results)
    logs = load_cut_logs(results, measured)
    rows_all = pd.concat([measured, logs], ignore_index=True) if not logs.empty else measured
    rows = []
    for model in sorted(rows_all["model"].unique()):
        for seq in sorted(rows_all["seq_len"].unique()):
            at = rows_all[(rows_all["model"] == model) & (rows_all["seq_len"] == seq)]
            ours = at[at["impl"].str.startswith("lora_exp")]
            ft, lo = ours[ours["method"] == "full_ft"], ours[ours["method"] == "lora"]
            if ft.empty or lo.empty:
                continue
            f_best, l_best = (
                ft.loc[ft["tokens_per_s"].idxmax()],
                lo.loc[lo["tokens_per_s"].idxmax()],
            )
            one_run = f_best["run"] == l_best["run"]
            speed, n = speed_interval(f_best, l_best)
            memory = l_best["peak"] / f_best["peak"]
            modes = f"LoRA {mode_of(l_best['impl'])}, full FT {mode_of(f_best['impl'])}"
            where = f"run {l_best['run']}" if one_run else "two runs"
            # the peak allocated bytes are exact (the same allocations every step): a point
            memory_verdict = V.HOLDS if memory <= MEMORY else V.FAILS
            for what, rule, count, shown, verdict in (
                ("speed", f"ratio ≥ {SPEEDUP}", n, interval_text(speed, ".2f", "×"),
                 at_least(speed, SPEEDUP)),
                ("memory", f"ratio ≤ {MEMORY}", "1 run, exact",
                 f"{memory:.2f}× (peak allocated)", memory_verdict),
            ):  # fmt: skip
                rows.append(
                    _row(
                        f"{what} LoRA / full FT, {model} {seq}",
                        rule,
                        count,
                        f"{shown} ({modes}; {where})",
                        verdict if one_run else V.INCONCLUSIVE,
                    )
                )
    return rows


def speed_interval(full_ft: pd.Series, lora: pd.Series) -> tuple[Interval, str]:
    """tokens/s LoRA / full FT (= full FT's median step time / LoRA's, same batch and length)
    with the bootstrap interval over each method's timed steps (unpaired: the two ran one after
    the other); a row without step times (a cut run's log) is a degenerate interval."""
    ft, lo = full_ft.get("step_times_ms"), lora.get("step_times_ms")
    if isinstance(ft, list) and isinstance(lo, list) and ft and lo:
        r = ratio_interval(ft, lo, paired=False)
        return r, f"{len(lo)} / {len(ft)} steps"
    ratio = float(lora["tokens_per_s"] / full_ft["tokens_per_s"])
    return Interval(ratio, ratio, ratio, 1), "1 run, no step times"


MEASURED = {"section7": section7_rows, "latency": latency_rows, "efficiency": efficiency_rows}


def latency_devices(root: Path) -> str:
    """The GPU(s) of the Table 1 run the claim reads (its table.csv's device column)."""
    lat = pd.read_csv(Path(root) / "results" / "table1_latency" / "table.csv")
    return ", ".join(sorted(lat["device"].dropna().unique()))


def efficiency_devices(root: Path) -> str:
    """The GPU(s) of the efficiency records the claim reads."""
    from lora_exp.report.targets import load_runs

    _, measured = load_runs(Path(root) / "results")
    return ", ".join(sorted(measured["device"].dropna().unique()))


# where a benchmark claim's setup names the device it ran on (section 7 names them in its table)
MEASURED_ON = {"latency": latency_devices, "efficiency": efficiency_devices}
