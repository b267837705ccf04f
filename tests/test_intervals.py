"""Bootstrap intervals (intervals.py) and collapse detection (collapse.py) on inputs with known
answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lora_exp.errors import UserError
from lora_exp.report import collapse
from lora_exp.report.intervals import (
    difference,
    median_interval,
    ratio_interval,
    unpaired_interval,
)


def test_constant_sample_gives_a_point_interval():
    iv = median_interval([79.5] * 5)
    assert (iv.estimate, iv.lo, iv.hi, iv.n) == (79.5, 79.5, 79.5, 5)
    assert median_interval([42.0]).lo == median_interval([42.0]).hi == 42.0  # one run


def test_median_of_few_values_spans_min_to_max():
    """n = 3: a resample's median is the minimum with probability 7/27 > 2.5%: [min, max]."""
    iv = median_interval([1.0, 2.0, 3.0])
    assert (iv.estimate, iv.lo, iv.hi) == (2.0, 1.0, 3.0)


def test_interval_tightens_with_more_seeds():
    rng = np.random.default_rng(0)
    x = rng.normal(80.0, 0.5, size=200)
    iv = median_interval(x)
    assert iv.lo < 80.0 < iv.hi and iv.hi - iv.lo < 0.3


def test_same_seed_gives_identical_interval():
    x = [78.1, 79.4, 80.2, 77.9, 81.0]
    assert median_interval(x) == median_interval(x)
    np.random.seed(123)  # the global RNG does not enter: only the seed argument does
    assert median_interval(x, seed=7) == median_interval(x, seed=7)


def test_strictly_positive_paired_difference_excludes_zero():
    a = {0: 80.0, 1: 79.0, 2: 81.5}
    b = {0: 79.5, 1: 78.2, 2: 81.0}  # a beats b on every seed by 0.5-0.8
    iv = difference(a, b)
    assert iv.paired and iv.lo > 0 and iv.estimate == pytest.approx(0.5)


def test_pairing_by_seed_removes_shared_noise():
    """Seed effects of ±5 points shared by both cells: paired sees +1 exactly, unpaired not."""
    a = {0: 75.0 + 1, 1: 80.0 + 1, 2: 85.0 + 1}
    b = {0: 75.0, 1: 80.0, 2: 85.0}
    paired = difference(a, b)
    assert paired.paired and (paired.lo, paired.hi) == (1.0, 1.0)
    unpaired = unpaired_interval(list(a.values()), list(b.values()))
    assert not unpaired.paired and unpaired.lo < 0 < unpaired.hi


def test_unmatched_seeds_fall_back_to_unpaired():
    iv = difference({0: 80.0, 1: 81.0, 2: 82.0}, {0: 79.0, 1: 80.0, 3: 81.0})
    assert not iv.paired and iv.estimate == pytest.approx(1.0) and iv.n == 3


def test_empty_or_bad_cells_are_user_errors():
    with pytest.raises(UserError, match="no values"):
        median_interval([])
    with pytest.raises(UserError, match="both cells"):
        difference({}, {0: 1.0})
    with pytest.raises(UserError, match="non-finite"):
        median_interval([1.0, float("nan")])


def fake(acc, majority=0.429, history=None):
    return {
        "test": {"test/acc": acc},
        "task": {"name": "tweet_sentiment", "majority_test_acc": majority},
        "history": history or [],
        "config": {"lr": 0.003, "warmup_ratio": 0.06, "method": {"name": "lora", "rank": 2}},
        "status": "success",
        "seed": 2,
    }


def test_collapse_is_a_quarter_of_the_headroom_above_the_majority():
    # headroom 57.1 points: the line is 42.9 + 14.3 = 57.2
    assert collapse.is_collapsed(fake(0.489)) and collapse.is_collapsed(fake(0.535))
    assert collapse.is_collapsed(fake(0.429))
    assert not collapse.is_collapsed(fake(0.58)) and not collapse.is_collapsed(fake(0.80))
    assert not collapse.is_collapsed({"test": {"test/acc": 0.5}})  # no majority: not judged
    assert not collapse.is_collapsed({"test": {"test/bleu": 0.5}, "task": {}})


def test_collapse_evidence_finds_the_blowup_in_the_step_log(tmp_path):
    run = tmp_path / "results" / "embedded_rank" / "runs" / "r1"
    (run / "csv").mkdir(parents=True)
    losses = [1.1] * 10 + [0.5] * 20 + [1.2] * 20  # learns, then blows up above the start
    lines = ["step,train/loss"] + [f"{10 * i + 9},{v}" for i, v in enumerate(losses)]
    (run / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    history = [{"epoch": e, "step": 100 * (e + 1), "val/acc": v} for e, v in enumerate([0.5, 0.43])]
    (run / "record.json").write_text(json.dumps(fake(0.45, history=history)))
    runs = collapse.collapsed_runs(tmp_path / "results", ["embedded_rank"])
    assert len(runs) == 1
    e = runs[0][1]
    assert e["loss_low"] == pytest.approx(0.5) and e["loss_blowup_step"] is not None
    assert 300 <= e["loss_blowup_step"] <= 400 and e["peak_step"] == 12 and e["left_majority"]
    md = collapse.collapse_markdown(runs)
    assert "`r1`" in md and "0.003, 12" in md
    assert "No run collapsed." in collapse.collapse_markdown([])


def test_collapse_rates_count_each_study_and_its_unclipped_runs_apart(tmp_path):
    results = tmp_path / "results"

    def write(folder, name, acc, seed, reused_from=None):
        run = results / "embedded_rank" / folder / name
        run.mkdir(parents=True)
        record = {**fake(acc), "seed": seed, "config_hash": "h", "started_at": f"t{seed}"}
        record["config"]["method"].update(targets=["q", "k", "v", "o"])
        if reused_from:
            record["reused_from"] = reused_from
        (run / "record.json").write_text(json.dumps(record))

    for seed, acc in enumerate([0.80, 0.489, 0.79]):  # seed 1 collapsed without clipping
        write("runs_unclipped", f"s{seed}", acc, seed)
    for seed, acc in enumerate([0.80, 0.81, 0.79]):
        write("runs", f"s{seed}", acc, seed)
    write("runs", "s2_copy", 0.79, 2, reused_from="elsewhere")  # the same run again: once
    rates = collapse.collapse_rates(results, ["embedded_rank"])
    assert [(r["study"], r["runs"], r["collapsed"]) for r in rates] == [
        ("embedded_rank", 3, 0),
        ("embedded_rank/runs_unclipped", 3, 1),
    ]
    md = collapse.collapse_markdown(collapse.collapsed_runs(results, ["embedded_rank"]), rates)
    cells = "lora q,k,v,o r=2, tweet_sentiment (1 of 3)"
    assert f"| embedded_rank/runs_unclipped | 3 | 1 | {cells} |" in md
    assert "| embedded_rank | 3 | 0 | - |" in md


def test_the_unclipped_note_appears_only_with_unclipped_runs():
    rows = [{"study": "embedded_rank", "runs": 3, "collapsed": 0, "cells": {}}]
    assert "runs_unclipped" not in "\n".join(collapse.rates_markdown(rows))
    rows.append({**rows[0], "study": "embedded_rank/runs_unclipped"})
    assert "`<study>/runs_unclipped`" in "\n".join(collapse.rates_markdown(rows))


def test_a_paired_ratio_keeps_each_round_together():
    # every round's a is exactly twice its b, while the rounds themselves vary a lot: resampling
    # rounds as pairs gives exactly 2; resampling each sample alone mixes slow and fast rounds
    b = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    a = [2 * v for v in b]
    paired = ratio_interval(a, b, paired=True)
    assert (paired.estimate, paired.lo, paired.hi, paired.n, paired.paired) == (2, 2, 2, 6, True)
    unpaired = ratio_interval(a, b, paired=False)
    assert unpaired.estimate == 2 and unpaired.lo < 2 < unpaired.hi and not unpaired.paired


def test_a_ratio_interval_is_seeded_and_covers_its_estimate():
    a, b = [10.0, 10.5, 9.8, 10.2, 11.0], [8.0, 8.1, 7.9, 8.3, 8.0, 7.7]
    first, second = ratio_interval(a, b, paired=False), ratio_interval(a, b, paired=False)
    assert first == second
    assert first.estimate == pytest.approx(10.2 / 8.0)  # median of b: 8.0
    assert first.lo <= first.estimate <= first.hi


def test_paired_ratio_samples_must_be_the_same_length():
    with pytest.raises(UserError, match="one value per round"):
        ratio_interval([1.0, 2.0], [1.0], paired=True)
