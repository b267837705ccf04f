"""Claims (d)-(f) of claims.md: Section 7 statistics and the two benchmarks, each with its rule.

(d) Section 7, from the committed outputs of `python -m lora_exp.report section7`:

    amplification ‖ΔW‖_F / ‖UᵀWVᵀ‖_F per run = its median over layers (results/section7/
    amplification.csv, every seed present at r = 4 and r = 64); "r = 4 amplifies more than
    r = 64": the paired (by seed) difference, verdicts.py's `better` rule on its 95% interval.
    φ(A_8, A_64, 1, 1) (Eq. 4) per pair of runs = its mean over layers (results/section7/
    r8_vs_r64*/subspace.csv, one folder per pair; today seed 0 only), compared with the Gaussian
    control of the same shape ("overlap above chance", `better`) and with the paper's 0.5
    (`better`); and φ between two seeds at r = 64 (r64_seed*_vs_seed*/) against its control. With
    fewer than verdicts.MIN_SEEDS pairs a φ comparison is inconclusive, whatever its value.

(e) Table 1 latency (results/table1_latency/table.csv): the benchmark stores, per (shape, mode,
variant), the median and p10/p90 over its trials, not the trials, so no interval over trials can
be formed; the rule uses the benchmark's own control instead, an identical copy of the base model
measured in the same rotation (what placement alone does). Noise floor F = max(1%, |Δ% of the
copy|):

    merged LoRA adds no latency   holds: |Δ%| ≤ F     does not hold: Δ% > F
    adapters add latency (1x128)  holds: Δ% > F       does not hold: Δ% ≤ F
    (no copy measured: inconclusive)

(f) Training efficiency (results/efficiency, via targets.py): one median step time per
configuration (20 steps, 1-2 rounds), again no per-step spread. Each method in its fastest mode,
the ratio taken within one benchmark run (two runs: inconclusive):

    speed   tokens/s LoRA / full FT ≥ 1.25 (the paper's "25% faster")     else does not hold
    memory  peak memory LoRA / full FT ≤ 0.29 (the paper's 350 GB / 1.2 TB) else does not hold
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lora_exp.errors import UserError
from lora_exp.report import verdicts as V
from lora_exp.report.intervals import difference, median_interval

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
    per_run = amp.groupby(["rank", "seed", "target"])["amplification"].median()
    rows = []
    for target in sorted(amp["target"].unique()):
        by_rank = {
            r: {
                int(s): float(per_run[(r, s, target)])
                for s in sorted(amp["seed"].unique())
                if (r, s, target) in per_run.index
            }
            for r in (4, 64)
        }
        for r in (4, 64):
            if not by_rank[r]:
                raise UserError(f"claims: {amp_csv} has no rank-{r} runs of ΔW_{target}")
        interval = difference(by_rank[4], by_rank[64])
        a, b = (
            median_interval(list(by_rank[4].values())),
            median_interval(list(by_rank[64].values())),
        )
        rows.append(
            _row(
                f"amplification r=4 vs r=64, ΔW_{target} (median over layers per run; r=4 "
                f"{a.estimate:.1f} [{a.lo:.1f}, {a.hi:.1f}], r=64 {b.estimate:.2f} "
                f"[{b.lo:.2f}, {b.hi:.2f}]; paper 21.5 and 1.9)",
                V.rule_text("better"),
                f"{len(by_rank[4])} / {len(by_rank[64])}"
                + ("" if interval.paired else ", unpaired"),
                interval,
                V.judge("better", interval, len(by_rank[4]), len(by_rank[64])),
            )
        )
    for pattern, what in (
        ("r8_vs_r64*", "r=8 vs r=64"),
        ("r64_seed*_vs_seed*", "r=64 seed vs seed"),
    ):
        pairs = sorted(out.glob(f"{pattern}/subspace.csv"))
        if not pairs:
            continue
        frames = [pd.read_csv(p) for p in pairs]
        for target in sorted(frames[0]["target"].unique()):
            top = [f[(f["target"] == target) & (f["i"] == 1) & (f["j"] == 1)] for f in frames]
            phi = [float(t["phi"].mean()) for t in top]
            gauss = [float(t["phi_random"].mean()) for t in top]
            n = len(phi)
            names = ", ".join(p.parent.name for p in pairs)
            ctrl = median_interval([p - g for p, g in zip(phi, gauss, strict=True)])
            rows.append(
                _row(
                    f"φ(1,1) {what} vs Gaussian control, ΔW_{target} (mean over layers; {names})",
                    V.rule_text("better"),
                    f"{n} pair(s)",
                    ctrl,
                    V.judge("better", ctrl, n, n),
                )
            )
            if what.startswith("r=8"):
                paper = median_interval([p - PAPER_PHI for p in phi])
                rows.append(
                    _row(
                        f"φ(1,1) {what} vs the paper's {PAPER_PHI}, ΔW_{target} (φ = "
                        f"{paper.estimate + PAPER_PHI:.3f})",
                        V.rule_text("better"),
                        f"{n} pair(s)",
                        paper,
                        V.judge("better", paper, n, n),
                    )
                )
    return rows


def latency_rows(root: Path) -> list:
    path = Path(root) / "results" / "table1_latency" / "table.csv"
    if not path.exists():
        raise UserError(f"claims: {path} is missing: run the Table 1 benchmark")
    lat = pd.read_csv(path)
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
                pct = float(row["overhead_pct"])
                if math.isnan(floor):
                    verdict = V.INCONCLUSIVE
                elif adds:
                    verdict = V.HOLDS if pct > floor else V.FAILS
                else:
                    verdict = V.HOLDS if abs(pct) <= floor else V.FAILS if pct > floor else V.HOLDS
                rule = "Δ% > F" if adds else "−F ≤ Δ% ≤ F"
                shown = (
                    f"{pct:+.1f}% (F = {floor:.1f}%; {row['ms_median']:.2f} ms, p10-p90 "
                    f"{row['ms_p10']:.2f}-{row['ms_p90']:.2f})"
                )
                claim = "adds latency" if adds else "adds no latency"
                rows.append(
                    _row(f"{variant} {claim}, {b}x{s}, {mode}", rule, "1 run", shown, verdict)
                )
    return rows


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
            speed = l_best["tokens_per_s"] / f_best["tokens_per_s"]
            memory = l_best["peak"] / f_best["peak"]
            modes = f"LoRA {mode_of(l_best['impl'])}, full FT {mode_of(f_best['impl'])}"
            where = f"run {l_best['run']}" if one_run else "two runs"
            for what, value, ok, rule in (
                ("speed", speed, speed >= SPEEDUP, f"ratio ≥ {SPEEDUP}"),
                ("memory", memory, memory <= MEMORY, f"ratio ≤ {MEMORY}"),
            ):
                verdict = (V.HOLDS if ok else V.FAILS) if one_run else V.INCONCLUSIVE
                rows.append(
                    _row(
                        f"{what} LoRA / full FT, {model} {seq}",
                        rule,
                        "1 run",
                        f"{value:.2f}× ({modes}; {where})",
                        verdict,
                    )
                )
    return rows


MEASURED = {"section7": section7_rows, "latency": latency_rows, "efficiency": efficiency_rows}
