"""Claims (e) and (f) (claims_measured.py): the benchmark comparisons' intervals and rules, on
small synthetic benchmark outputs with known answers."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from lora_exp.report import claims_measured as M
from lora_exp.report import verdicts as V
from lora_exp.report.intervals import Interval

BASE = [1.0 + 0.1 * t for t in range(10)]  # slow and fast rounds: the pairing matters
FACTORS = {"base": 1.0, "lora_merged": 1.002, "adapter_h": 1.3, "adapter_l": 1.005}
FACTORS["base_copy"] = 0.99  # the control: F = max(1%, 1%) = 1%


def write_latency(root, trials: bool):
    out = root / "results" / "table1_latency"
    (out / "runs" / "run1").mkdir(parents=True)
    entries, rows = [], []
    for variant, factor in FACTORS.items():
        ms = [v * factor for v in BASE]
        median = pd.Series(ms).median()
        rows.append(
            {"batch_size": 1, "seq_len": 128, "variant": variant, "mode": "graph",
             "ms_median": median, "ms_p10": min(ms), "ms_p90": max(ms),
             "overhead_pct": round((factor - 1) * 100, 2), "device": "GPU X"}
        )  # fmt: skip
        entry = {"batch_size": 1, "seq_len": 128, "variant": variant, "mode": "graph"}
        entries.append(entry | ({"ms_trials": ms} if trials else {}))
    with open(out / "table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    record = {"status": "success", "finished_at": "2026-12-07T19:00:00", "latency": entries}
    (out / "runs" / "run1" / "record.json").write_text(json.dumps(record))


def by_label(rows):
    return {row.label: row for row in rows}


def test_latency_overheads_get_paired_intervals_from_the_trials(tmp_path):
    write_latency(tmp_path, trials=True)
    rows = by_label(M.latency_rows(tmp_path))
    merged = rows["lora_merged adds no latency, 1x128, graph"]
    shown, verdict = merged.results[M.VALUE]
    # every trial is 0.2% slower than the base's trial of its round: the interval is that point
    assert shown.startswith("+0.2% [+0.2, +0.2] (F = 1.0%;") and verdict == V.HOLDS
    assert merged.seeds == "10 trials, paired"
    assert rows["adapter_h adds latency, 1x128, graph"].results[M.VALUE][1] == V.HOLDS
    # +0.5% is within the noise floor: adapter_l's "adds latency" does not hold here
    assert rows["adapter_l adds latency, 1x128, graph"].results[M.VALUE][1] == V.FAILS
    assert M.latency_devices(tmp_path) == "GPU X"


def test_a_record_without_trials_is_judged_on_its_point_and_says_so(tmp_path):
    write_latency(tmp_path, trials=False)
    merged = by_label(M.latency_rows(tmp_path))["lora_merged adds no latency, 1x128, graph"]
    assert merged.seeds == "1 run, no per-trial timings"
    assert merged.results[M.VALUE][0].startswith("+0.2% (F = 1.0%;")


@pytest.mark.parametrize(
    "lo, hi, adds, expected",
    [
        (-0.5, 0.8, False, V.HOLDS),  # whole interval at or below F = 1
        (-3.0, -2.0, False, V.HOLDS),  # faster than the base adds no latency either
        (0.5, 1.5, False, V.INCONCLUSIVE),
        (1.2, 2.0, False, V.FAILS),
        (1.2, 2.0, True, V.HOLDS),
        (0.5, 1.5, True, V.INCONCLUSIVE),
        (0.2, 0.9, True, V.FAILS),
    ],
)
def test_latency_rule(lo, hi, adds, expected):
    assert M.latency_verdict(Interval((lo + hi) / 2, lo, hi, 100), 1.0, adds) == expected


def test_no_control_no_latency_verdict():
    assert M.latency_verdict(Interval(0, 0, 0, 100), float("nan"), False) == V.INCONCLUSIVE


def test_speed_is_the_ratio_of_median_step_times_with_its_interval():
    full_ft = pd.Series({"step_times_ms": [30.0, 30.2, 29.8, 30.1], "tokens_per_s": 1000})
    lora = pd.Series({"step_times_ms": [20.0, 20.1, 19.9, 20.2], "tokens_per_s": 1500})
    speed, n = M.speed_interval(full_ft, lora)
    assert speed.estimate == pytest.approx(30.05 / 20.05) and speed.lo <= speed.estimate <= speed.hi
    assert n == "4 / 4 steps" and not speed.paired
    assert M.at_least(speed, 1.25) == V.HOLDS and M.at_least(speed, 1.6) == V.FAILS
    # a cut run's log row has no step times: its tokens/s ratio, a point
    point, n = M.speed_interval(full_ft.drop("step_times_ms"), lora.drop("step_times_ms"))
    assert (point.estimate, point.lo, point.hi, n) == (1.5, 1.5, 1.5, "1 run, no step times")
    assert M.interval_text(point, ".2f", "×") == "1.50×"
    assert M.at_least(Interval(1.3, 1.2, 1.4, 20), 1.25) == V.INCONCLUSIVE
