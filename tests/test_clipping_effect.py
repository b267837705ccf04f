"""What clipping changed per cell (clipping_effect.py), on small fake records with known answers."""

from __future__ import annotations

import json

from lora_exp.report import clipping_effect
from lora_exp.report.collapse_md import write_collapse


def write_run(results, study, folder, name, acc, seed, rank=8, clip=None):
    run = results / study / folder / name
    run.mkdir(parents=True)
    record = {
        "status": "success",
        "seed": seed,
        # what study_records tells runs apart by (a copy shares all three with its original)
        "config_hash": f"r{rank}-clip{clip}",
        "started_at": name,
        "primary_metric": "acc",
        "test": {"test/acc": acc},
        "task": {"name": "tweet_sentiment", "majority_test_acc": 0.429},
        "config": {
            "trainer": {"gradient_clip_val": clip},
            "method": {"name": "lora", "rank": rank, "alpha": 8, "targets": ["q", "v"]},
        },
    }
    (run / "record.json").write_text(json.dumps(record))


def fill(tmp_path):
    # r=8: clipping adds one point to every seed; seed 3 has no unclipped run and is left out
    for seed, acc in {0: 0.80, 1: 0.79, 2: 0.81}.items():
        write_run(tmp_path, "study", "runs_unclipped", f"r8_s{seed}", acc, seed)
    for seed, acc in {0: 0.81, 1: 0.80, 2: 0.82, 3: 0.70}.items():
        write_run(tmp_path, "study", "runs", f"r8_s{seed}_clip", acc, seed, clip=1.0)
    # r=2: clipping takes one point from both seeds; a seed-0 run of runs/ without clipping
    # belongs to neither arm
    for seed in (0, 1):
        write_run(tmp_path, "study", "runs_unclipped", f"r2_s{seed}", 0.80, seed, rank=2)
        write_run(tmp_path, "study", "runs", f"r2_s{seed}_clip", 0.79, seed, rank=2, clip=1.0)
    write_run(tmp_path, "study", "runs", "r2_s0_noclip", 0.70, 0, rank=2)
    # a study that never kept unclipped runs gives no rows
    write_run(tmp_path, "other", "runs", "r8_s0", 0.80, 0, clip=1.0)


def test_each_cell_is_paired_by_the_seeds_both_arms_have(tmp_path):
    fill(tmp_path)
    rows = clipping_effect.clipping_rows(tmp_path, ["other", "study"])
    assert [(r["study"], r["cell"], r["seeds"]) for r in rows] == [
        ("study", "lora q,v r=2, tweet_sentiment", 2),
        ("study", "lora q,v r=8, tweet_sentiment", 3),
    ]
    r2, r8 = rows
    assert (r8["plain_median"], r8["clipped_median"]) == (80.0, 81.0)
    d = r8["difference"]
    assert d.paired and d.n == 3
    assert round(d.estimate, 6) == round(d.lo, 6) == round(d.hi, 6) == 1.0
    assert clipping_effect.direction(r8) == "up"
    assert round(r2["difference"].estimate, 6) == -1.0
    assert clipping_effect.direction(r2) == "down"


def test_the_section_counts_directions_and_lands_in_collapse_md(tmp_path):
    fill(tmp_path)
    write_collapse(tmp_path, ["other", "study"])
    text = (tmp_path / "collapse.md").read_text()
    assert "### Clipping in every cell" in text
    assert (
        "| study | lora q,v r=8, tweet_sentiment | 3 | 0 / 0 | 80.0 / 81.0 "
        "| +1.0 [+1.0, +1.0] | up |" in text
    )
    assert (
        "Of 2 cells, clipping's interval lies above zero in 1, below zero in 1, and spans zero "
        "in 0." in text
    )


def test_no_unclipped_runs_no_section(tmp_path):
    write_run(tmp_path, "other", "runs", "r8_s0", 0.80, 0, clip=1.0)
    assert clipping_effect.clipping_markdown(tmp_path, ["other"]) == []
