"""The verdict rule (verdicts.py) at its edges; the claims spec against the committed records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lora_exp.errors import UserError
from lora_exp.report import verdicts as V
from lora_exp.report.claims import claims_markdown, devices_text, load_long, scores_by_seed
from lora_exp.report.claims_spec import CLAIMS, Cell, Claim, Comparison
from lora_exp.report.intervals import Interval, difference

ROOT = Path(__file__).resolve().parent.parent


def test_better_needs_the_whole_interval_above_zero():
    assert V.verdict("better", 0.1, 2.0) == V.HOLDS
    assert V.verdict("better", 0.0, 2.0) == V.INCONCLUSIVE  # touching zero is not above it
    assert V.verdict("better", -2.0, -0.1) == V.FAILS
    assert V.verdict("better", -2.0, 0.0) == V.INCONCLUSIVE


def test_matches_margin_edges():
    m = V.MARGIN
    assert V.verdict("matches", -m, m) == V.HOLDS  # inside, edges included
    assert V.verdict("matches", -m - 0.01, 0.0) == V.INCONCLUSIVE  # crosses the margin
    assert V.verdict("matches", m + 0.01, m + 2) == V.FAILS  # entirely outside, above
    assert V.verdict("matches", -m - 2, -m - 0.01) == V.FAILS  # entirely outside, below
    assert V.verdict("matches", m, m + 2) == V.INCONCLUSIVE  # touches the margin


def test_at_least_is_non_inferiority():
    m = V.MARGIN
    assert V.verdict("at_least", -m, 5.0) == V.HOLDS
    assert V.verdict("at_least", -m - 0.5, 0.5) == V.INCONCLUSIVE
    assert V.verdict("at_least", -3.0, -m - 0.01) == V.FAILS


def test_positive_paired_difference_holds_and_symmetric_noise_is_inconclusive():
    a = {s: 80.0 + 0.5 + 0.1 * s for s in range(5)}
    b = {s: 80.0 for s in range(5)}
    iv = difference(a, b)
    assert V.judge("better", iv, 5, 5) == V.HOLDS
    noise = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    iv = difference({s: 80.0 + d for s, d in enumerate(noise)}, {s: 80.0 for s in range(5)})
    assert V.judge("better", iv, 5, 5) == V.INCONCLUSIVE


def test_too_few_seeds_are_inconclusive_whatever_the_interval():
    iv = Interval(5.0, 5.0, 5.0, 1)
    assert V.judge("better", iv, 1, 1) == V.INCONCLUSIVE
    assert V.judge("better", iv, V.MIN_SEEDS, V.MIN_SEEDS) == V.HOLDS


def test_overall_rule():
    assert V.overall([V.HOLDS, V.HOLDS]) == V.HOLDS
    assert V.overall([V.HOLDS, V.FAILS, V.INCONCLUSIVE]) == V.PARTLY
    assert V.overall([V.FAILS, V.INCONCLUSIVE]) == V.FAILS
    assert V.overall([V.HOLDS, V.INCONCLUSIVE]) == V.INCONCLUSIVE
    assert V.overall([]) == V.INCONCLUSIVE


def test_bad_kind_and_interval_are_user_errors():
    with pytest.raises(UserError, match="unknown comparison kind"):
        V.verdict("bigger", 0.0, 1.0)
    with pytest.raises(UserError, match="lo <= hi"):
        V.verdict("better", 1.0, 0.0)


def test_claims_spec_names_only_cells_with_committed_runs():
    """Every cell a claim compares has runs in the committed records, on both scores."""
    longs = {}
    for claim in CLAIMS:
        for cmp in claim.comparisons:
            for cell in (cmp.a, cmp.b):
                for score in ("test", "val"):
                    key = (cell.artifact, score)
                    if key not in longs:
                        longs[key] = load_long(ROOT, cell.artifact, score)
                    values, _ = scores_by_seed(longs[key], cell)
                    assert len(values) >= V.MIN_SEEDS, (claim.key, cell)


def test_a_cell_without_runs_fails_with_a_clear_message():
    long = load_long(ROOT, "embedded_rank", "test")
    with pytest.raises(UserError, match="has no runs in results/embedded_rank/runs"):
        scores_by_seed(long, Cell("embedded_rank", "lora", "tweet_sentiment", 16, "q,v"))


def test_claims_markdown_is_deterministic_and_names_collapsed_runs():
    text = claims_markdown(ROOT)
    assert text == claims_markdown(ROOT)
    assert "LoRA q,k,v,o r=2 seed 2 (53.5)" in text
    assert (ROOT / "results" / "claims.md").read_text() == text  # the committed file is current


def test_setup_names_the_devices_of_the_compared_runs_from_their_records():
    """Each run counted once, whichever comparisons it enters, under its recorded device."""
    import pandas as pd

    def run(rank, seed, device, step="eager", clip=1.0):
        return dict(
            method="lora",
            metric="acc",
            table_metric="acc",
            rank=rank,
            targets="q,v",
            task="tweet_sentiment",
            seed=seed,
            device=device,
            step=step,
            clip=clip,
            value=80.0,
        )

    long = pd.DataFrame(
        [
            run(4, 0, "NVIDIA H200"),
            run(4, 1, "NVIDIA H100 80GB HBM3"),
            run(64, 0, "NVIDIA H200", "graphed"),
            run(1, 0, "cpu", clip=None),
        ]
    )
    cell = lambda r: Cell("embedded_rank", "lora", "tweet_sentiment", r, "q,v")  # noqa: E731
    claim = Claim(
        "b",
        "paper",
        "setup",
        (),
        (
            Comparison(cell(4), cell(64), "matches"),
            Comparison(cell(1), cell(64), "matches"),
        ),
    )
    text = devices_text(claim, {("embedded_rank", "test"): long})
    clipped = "gradient norm clipped at 1"
    assert text == (
        f"NVIDIA H100 80GB HBM3, eager step, {clipped} (1 run); NVIDIA H200, eager step, "
        f"{clipped} (1 run); NVIDIA H200, graphed step, {clipped} (1 run); cpu, eager step, "
        "no clipping (1 run)"
    )
