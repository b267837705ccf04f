"""The collapse probes' report (collapse_probes.py) on small fake records with known answers."""

from __future__ import annotations

import json

from lora_exp.report import collapse_probes
from lora_exp.report.collapse_md import write_collapse


def write_run(
    results, sweep, name, acc, seed, rank=1, clip=None, lr=0.003, precision="auto", step=None,
    folder="runs",
):  # fmt: skip
    run = results / sweep / folder / name
    run.mkdir(parents=True)
    record = {
        "status": "success",
        "seed": seed,
        "test": {"test/acc": acc},
        "task": {"name": "tweet_sentiment", "majority_test_acc": 0.429},
        "history": [{"epoch": 0, "step": 100, "val/acc": acc}],
        "environment": {"device": "NVIDIA H100 80GB HBM3"},
        "config": {
            "lr": lr,
            "warmup_ratio": 0.06,
            "trainer": {"gradient_clip_val": clip, "precision": precision},
            "method": {"name": "lora", "rank": rank, "alpha": 8, "targets": ["q", "k", "v", "o"]},
        },
    }
    if step is not None:
        record["step"] = {"mode": step}
    (run / "record.json").write_text(json.dumps(record))


def test_sections_say_not_run_yet_without_their_sweeps(tmp_path):
    text = "\n".join(collapse_probes.probes_markdown(tmp_path))
    assert "Not run yet: `python run.py -m sweep=collapse_probe`" in text
    assert "Not run yet: `python run.py -m sweep=collapse_clip`" in text


def test_probe_rows_name_each_suspect_and_count_collapses(tmp_path):
    write_run(tmp_path, "collapse_probe", "a", 0.489, 2, precision="bf16-mixed")
    write_run(tmp_path, "collapse_probe", "b", 0.80, 2, precision="bf16-mixed", clip=1.0)
    write_run(
        tmp_path, "collapse_probe", "c", 0.79, 2, precision="32-true", lr=0.001, step="graphed"
    )
    lines = collapse_probes.probe_lines(tmp_path)
    rows = [line for line in lines if line.startswith("| 1 |")]
    # ordered by rank, lr (largest first), precision, clipping
    assert [row.split(" | ")[2:5] for row in rows] == [
        ["0.003", "bf16-mixed", "none"],
        ["0.003", "bf16-mixed", "1.0"],
        ["0.001", "32-true", "none"],
    ]
    assert "**yes**" in rows[0] and "**yes**" not in rows[1] + rows[2]
    # the step mode: a record without one predates the modes and ran eagerly
    assert [row.split(" | ")[7] for row in rows] == ["eager", "eager", "graphed"]
    assert lines[-1] == "1 of 3 probe runs collapsed."


def test_clipping_is_compared_seed_by_seed_with_the_unclipped_sweep(tmp_path):
    plain = {0: 0.80, 1: 0.489, 2: 0.79, 3: 0.81}  # seed 1 collapsed without clipping
    clipped = {0: 0.81, 1: 0.80, 2: 0.80}  # seed 3 has no clipped run: left out of both arms
    for seed, acc in plain.items():
        write_run(tmp_path, "embedded_rank", f"r1_s{seed}", acc, seed, folder="runs_unclipped")
    # r=2: no clipped runs; the study's clipped runs/ are not the unclipped arm
    write_run(tmp_path, "embedded_rank", "r2_s0", 0.80, 0, rank=2, folder="runs_unclipped")
    write_run(tmp_path, "embedded_rank", "r1_s3_clipped", 0.70, 3, clip=1.0)
    for seed, acc in clipped.items():
        write_run(tmp_path, "collapse_clip", f"r1_clip_s{seed}", acc, seed, clip=1.0)
    lines = collapse_probes.clip_lines(tmp_path)
    r1 = next(line for line in lines if line.startswith("| 1 |"))
    # differences +1, +31.1, +1 points: median +1.0; no clip median of 80, 48.9, 79 is 79.0
    assert r1.startswith("| 1 | 0,1,2 | 1 of 3 (seed 1) | 0 of 3 | 79.0 / 80.0 | +1.0 [")
    assert r1.endswith("| 48.9 / 80.0 |")  # the lowest run of each arm
    assert lines[-1].startswith(
        "Collapsed over both ranks: 1 of 3 runs without clipping, 0 of 3 with"
    )
    assert any(line.startswith("| 2 | none in both arms") for line in lines)


def test_collapse_md_ends_with_the_probes(tmp_path):
    write_collapse(tmp_path, ["embedded_rank"])
    text = (tmp_path / "collapse.md").read_text()
    assert "No run collapsed." in text
    assert text.index("No run collapsed.") < text.index("### Why runs collapse: the probes")
