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


def test_claims_markdown_is_deterministic_and_current():
    text = claims_markdown(ROOT)
    assert text == claims_markdown(ROOT)
    assert (ROOT / "results" / "claims.md").read_text() == text  # the committed file is current


def test_collapsed_runs_are_named_with_their_seed_and_score():
    """A collapsed run stays in the cell's values and is named, never dropped."""
    import pandas as pd

    rows = [
        dict(method="lora", rank=2, targets="q,k,v,o", task="tweet_sentiment", metric="acc",
             table_metric="acc", seed=s, value=v, collapsed=s == 2)
        for s, v in enumerate([80.1, 79.8, 53.5])
    ]  # fmt: skip
    cell = Cell("embedded_rank", "lora", "tweet_sentiment", 2, "q,k,v,o")
    values, collapsed = scores_by_seed(pd.DataFrame(rows), cell)
    assert values == {0: 80.1, 1: 79.8, 2: 53.5}
    assert collapsed == ["LoRA q,k,v,o r=2 seed 2 (53.5)"]


def test_setup_reads_each_runs_clipping_from_its_record(tmp_path):
    """Record -> load_long -> setup text: the clip value travels with every run (a run without
    `trainer.gradient_clip_val` counts as not clipped)."""
    import json

    runs = tmp_path / "results" / "embedded_rank" / "runs"
    for seed, clip in enumerate([1.0, 1.0, None]):
        config = {
            "model": {"name": "minilm"},
            "method": {"name": "lora", "rank": 4, "alpha": 8, "targets": ["q", "v"]},
            "task": {"name": "tweet_sentiment", "version": 1, "primary_metric": "acc"},
            "trainer": {"gradient_clip_val": clip, "step": "eager"},
            "seed": seed,
        }
        record = {
            "schema_version": 1, "status": "success", "config": config, "seed": seed,
            "config_hash": f"h{seed}", "task": {"name": "tweet_sentiment", "version": 1},
            "primary_metric": "acc", "test": {"test/acc": 0.8}, "step": {"mode": "eager"},
            "environment": {"device": "NVIDIA H100 80GB HBM3"}, "params": {},
        }  # fmt: skip
        (runs / f"r{seed}").mkdir(parents=True)
        (runs / f"r{seed}" / "record.json").write_text(json.dumps(record))
    (tmp_path / "conf").mkdir()
    long = load_long(tmp_path, "embedded_rank", "test")
    cell = Cell("embedded_rank", "lora", "tweet_sentiment", 4, "q,v")
    claim = Claim("b", "paper", "setup", (), (Comparison(cell, cell, "matches"),))
    assert devices_text(claim, {("embedded_rank", "test"): long}) == (
        "NVIDIA H100 80GB HBM3, eager step, gradient norm clipped at 1 (2 runs); "
        "NVIDIA H100 80GB HBM3, eager step, no clipping (1 run)"
    )


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
