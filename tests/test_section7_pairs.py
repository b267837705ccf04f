"""Section 7 over seeds (section7_pairs.py, claims_measured.section7_rows): which runs are paired,
and the medians with bootstrap intervals over pairs / seeds, on small synthetic factor matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lora_exp.report import claims_measured, section7, section7_pairs
from lora_exp.report import verdicts as V
from lora_exp.report.intervals import median_interval

D = 16  # input size of the synthetic A matrices


def test_rank_pairs_are_one_per_seed_with_both_ranks():
    keys = {(8, 0), (64, 0), (64, 1), (64, 2), (4, 0), (8, 3), (64, 3), (8, 5)}
    pairs = section7_pairs.rank_pairs(keys, 8, 64)
    assert [(p.a, p.b) for p in pairs] == [((8, 0), (64, 0)), ((8, 3), (64, 3))]
    assert {p.comparison for p in pairs} == {"r8_vs_r64"}
    assert pairs[0].label == "r8 s0 vs r64 s0"


def test_seed_pairs_are_disjoint_and_an_odd_seed_is_left_out():
    keys = {(64, s) for s in (0, 1, 2, 3, 5)} | {(8, 0)}
    pairs = section7_pairs.seed_pairs(keys, 64)
    assert [(p.a[1], p.b[1]) for p in pairs] == [(0, 1), (2, 3)]  # 5 is left out
    seeds = [s for p in pairs for s in (p.a[1], p.b[1])]
    assert len(seeds) == len(set(seeds))  # each checkpoint in one pair: independent pairs
    assert len(section7_pairs.seed_pairs({(64, s) for s in range(10)}, 64)) == 5
    assert section7_pairs.seed_pairs({(64, 0)}, 64) == []


def factors(a_by_layer: dict) -> dict:
    """(layer, 'q') -> Factors with the given A (B is unused by φ)."""
    return {
        (layer, "q"): section7.Factors("m", 0, a, np.zeros((D, a.shape[0])), 1.0)
        for layer, a in a_by_layer.items()
    }


def shared_top(seed: int, r: int, scale: float = 10.0) -> np.ndarray:
    """An r × D matrix whose top right-singular direction is e₁ (scaled far above the rest)."""
    a = np.random.default_rng(seed).standard_normal((r, D)) * 0.1
    a[0, 0] = scale
    return a


def synthetic_points(n_rank: int, n_seed: int) -> pd.DataFrame:
    """Per-pair rows at (1,1), (1,4): rank pairs sharing the top direction, seed pairs not."""
    frames = []
    for s in range(n_rank):
        pair = section7_pairs.Pair("r2_vs_r4", (2, s), (4, s))
        fa = factors({0: shared_top(s, 2), 1: shared_top(100 + s, 2)})
        fb = factors({0: shared_top(50 + s, 4), 1: shared_top(150 + s, 4)})
        frame = section7.subspace_frame(fa, fb)
        frames.append(section7_pairs.pair_points(frame, pair, [(1, 1), (1, 4)]))
    for k in range(n_seed):
        pair = section7_pairs.Pair("r4_seeds", (4, 2 * k), (4, 2 * k + 1))
        rng = np.random.default_rng(1000 + k)
        fa = factors({0: rng.standard_normal((4, D)), 1: rng.standard_normal((4, D))})
        fb = factors({0: rng.standard_normal((4, D)), 1: rng.standard_normal((4, D))})
        frames.append(
            section7_pairs.pair_points(section7.subspace_frame(fa, fb), pair, [(1, 1), (1, 4)])
        )
    return pd.concat(frames, ignore_index=True)


def test_pair_points_keep_only_the_points_and_label_the_pair():
    points = synthetic_points(1, 0)
    assert sorted(set(zip(points["i"], points["j"], strict=True))) == [(1, 1), (1, 4)]
    assert len(points) == 2 * 2  # layers × points, one weight
    assert set(points["pair"]) == {"r2 s0 vs r4 s0"}
    assert set(points["rank_a"]) == {2} and set(points["seed_b"]) == {0}
    assert points.loc[points["i"] == points["j"], "phi"].min() > 0.99  # shared top direction


def test_over_pairs_is_the_median_and_bootstrap_interval_over_pairs():
    points = synthetic_points(4, 3)
    summary = section7_pairs.over_pairs(points)
    row = summary[
        (summary.comparison == "r4_seeds") & (summary.layer == "mean") & (summary.j == 4)
    ].iloc[0]
    seeds = points[(points.comparison == "r4_seeds") & (points.j == 4)]
    per_pair = seeds.groupby("pair")["phi"].mean().to_numpy()  # each pair's mean over layers
    expected = median_interval(per_pair)
    assert row["n"] == 3
    assert (row["phi"], row["phi_lo"], row["phi_hi"]) == pytest.approx(
        (expected.estimate, expected.lo, expected.hi)
    )
    per_layer = summary[(summary.comparison == "r2_vs_r4") & (summary.layer == "1")]
    assert set(per_layer["n"]) == {4}
    labels, phi, gauss = section7_pairs.per_pair(points, "r2_vs_r4", "q", 1, 1)
    assert len(labels) == len(phi) == len(gauss) == 4


def amplification_rows(values: dict) -> pd.DataFrame:
    """amplification.csv rows: {(rank, seed): [amplification per layer]}."""
    rows = []
    for (rank, seed), per_layer in values.items():
        for layer, value in enumerate(per_layer):
            stats = dict.fromkeys(section7_pairs.STATS, 1.0) | {"amplification": value}
            rows.append({"rank": rank, "seed": seed, "layer": layer, "target": "q", "r": rank})
            rows[-1].update(stats)
    return pd.DataFrame(rows)


def test_amplification_over_seeds_takes_each_runs_median_over_layers_first():
    amp = amplification_rows({(4, s): [10.0 + s, 30.0 + s, 20.0 + s] for s in range(3)})
    summary = section7_pairs.amplification_over_seeds(amp)
    over = summary[summary.layer == section7_pairs.ALL_LAYERS].iloc[0]
    assert over["n"] == 3 and over["seeds"] == "0,1,2"
    assert over["amplification"] == pytest.approx(21.0)  # runs' medians 20, 21, 22
    assert (over["amplification_lo"], over["amplification_hi"]) == pytest.approx((20.0, 22.0))
    layer1 = summary[summary.layer == "1"].iloc[0]
    assert layer1["amplification"] == pytest.approx(31.0)
    assert section7_pairs.by_seed(amp, 4, "q") == {0: 20.0, 1: 21.0, 2: 22.0}


def write_section7(root, points: pd.DataFrame, amp: pd.DataFrame) -> None:
    out = root / "results" / "section7"
    out.mkdir(parents=True)
    points.to_csv(out / section7_pairs.PAIRS_CSV, index=False)
    amp.to_csv(out / "amplification.csv", index=False)


def verdicts_by_label(rows) -> dict:
    return {row.label.split(" (")[0]: (row.seeds, row.results["value"][1]) for row in rows}


def test_claim_d_rows_judge_pairs_and_seeds(tmp_path):
    amp = amplification_rows(
        {
            (r, s): [40.0 + s, 41.0] if r == 4 else [2.0, 2.0 + 0.1 * s]
            for r in (4, 64)
            for s in range(3)
        }
    )
    write_section7(tmp_path, synthetic_points(3, 1), amp)
    rows = verdicts_by_label(claims_measured.section7_rows(tmp_path))
    assert rows["amplification r=4 vs r=64, ΔW_q"] == ("3 / 3 seeds, paired", V.HOLDS)
    assert rows["φ(1,1) r=2 vs r=4 vs Gaussian control, ΔW_q"] == ("3 pairs", V.HOLDS)
    assert rows["φ(1,1) r=2 vs r=4 vs the paper's 0.5, ΔW_q"] == ("3 pairs", V.HOLDS)
    # one seed pair: an interval of one value decides nothing
    assert rows["φ(1,1) r=4 seed vs seed vs Gaussian control, ΔW_q"] == ("1 pair", V.INCONCLUSIVE)


def test_claim_d_with_two_pairs_or_seeds_is_inconclusive(tmp_path):
    amp = amplification_rows({(r, s): [40.0 if r == 4 else 2.0] for r in (4, 64) for s in (0, 1)})
    write_section7(tmp_path, synthetic_points(2, 2), amp)
    rows = claims_measured.section7_rows(tmp_path)
    assert {row.results["value"][1] for row in rows} == {V.INCONCLUSIVE}
    assert V.overall([row.results["value"][1] for row in rows]) == V.INCONCLUSIVE


def test_claim_d_unmatched_seeds_are_compared_unpaired(tmp_path):
    amp = amplification_rows(
        {(4, s): [40.0] for s in (0, 1, 2)} | {(64, s): [2.0] for s in (0, 1, 3)}
    )
    write_section7(tmp_path, synthetic_points(3, 3), amp)
    rows = verdicts_by_label(claims_measured.section7_rows(tmp_path))
    assert rows["amplification r=4 vs r=64, ΔW_q"] == ("3 / 3 seeds, unpaired", V.HOLDS)
