"""Parameter accounting at full scale, without weights: the dry run against the paper's figures.

Every row of `lora_exp/measure/paper_counts.py` (the CSV of exact counts, and the GPT-3 rows of
Tables 4, 5 and 15 for LoRA, AdapterH and prefix tuning) is dry-run on the meta device and must
give the exact count. `BEYOND_PAPER` does the same for models and methods the paper does not
have, with the counts their docstrings' formulas give. One meta model per architecture is built and
copied, so this takes seconds.
"""

from __future__ import annotations

import copy
import csv
import re
from dataclasses import dataclass, field
from functools import cache

import pytest
from omegaconf import OmegaConf

from lora_exp.dry_run import dry_counts
from lora_exp.measure.paper_counts import PAPER_COUNTS, PaperCount, paper_count
from lora_exp.models import build_on_meta
from tests.conftest import ROOT, compose

SHARED_CSV = ROOT.parent / "shared" / "paper" / "param_counts.csv"


@dataclass(frozen=True)
class Count:
    """An exact dry-run count of a configuration the paper does not print (head excluded)."""

    model: str
    method: str
    settings: dict = field(default_factory=dict)
    exact: int = 0


BEYOND_PAPER = (
    Count("roberta-large", "ia3", {}, 147_456),  # 24 (1024 + 1024 + 4096), ia3.py
    Count("llama-7b", "lora", {"rank": 8, "targets": ["q", "v"]}, 4_194_304),  # 32 · 2 · 8 · 8192
    Count("llama-7b", "ia3", {}, 614_400),  # 32 (4096 + 4096 + 11008)
)


def overrides(row: PaperCount | Count) -> list[str]:
    """The command-line overrides of a row's configuration."""
    out = [f"model={row.model}", f"method={row.method}"]
    for key, value in row.settings.items():
        out.append(f"{key}=[{','.join(value)}]" if isinstance(value, list) else f"{key}={value}")
    return out


@cache
def model_config(model_name: str):
    return compose([f"model={model_name}"])


@cache
def method_config(method_name: str):
    return compose([f"method={method_name}"])


@cache
def meta_model(model_name: str):
    return build_on_meta(model_config(model_name).model, 3, "single_label_classification")


def base_config(model_name: str, method_name: str):
    """compose([model=..., method=...]) as far as a dry run reads it, from one compose per model
    and one per method (each costs ~0.2 s); test_row_config_equals_compose checks it."""
    cfg = copy.deepcopy(method_config(method_name))
    cfg.model = copy.deepcopy(model_config(model_name).model)
    return cfg


def row_config(row: PaperCount | Count):
    """compose(overrides(row)), without composing: the (model, method) config plus the settings."""
    cfg = base_config(row.model, row.method)
    for key, value in row.settings.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


@pytest.mark.parametrize("row", PAPER_COUNTS, ids=lambda r: " ".join(overrides(r)))
def test_dry_run_count_is_exact(row):
    cfg = row_config(row)
    counts, _ = dry_counts(cfg, model=copy.deepcopy(meta_model(row.model)))
    assert counts["params/trainable"] == row.exact
    assert paper_count(cfg) is row
    base = counts["params/base"]
    assert counts["params/percent_of_base"] == pytest.approx(100 * row.exact / base, abs=1e-6)
    if row.method == "full_ft":
        assert row.exact == base


@pytest.mark.parametrize("row", BEYOND_PAPER, ids=lambda r: " ".join(overrides(r)))
def test_dry_run_count_beyond_the_paper(row):
    cfg = row_config(row)
    counts, _ = dry_counts(cfg, model=copy.deepcopy(meta_model(row.model)))
    assert counts["params/trainable"] == row.exact
    assert paper_count(cfg) is None


def test_row_config_equals_compose():
    rows = {r.model: r for r in PAPER_COUNTS}  # one row per model
    rows["prefix"] = next(r for r in PAPER_COUNTS if r.method == "prefix_embed")
    for row in rows.values():  # what a dry run reads (paper hparams files may change lr)
        ours, composed = row_config(row), compose(overrides(row))
        for node in ("model", "method", "task"):
            assert ours[node] == composed[node], (row, node)


def test_rows_without_a_note_agree_with_the_paper():
    """The paper's figure is the exact count rounded or truncated, unless a note says why not."""
    disagree = [r for r in PAPER_COUNTS if not r.agrees(r.exact)]
    assert disagree and all(r.note for r in disagree)
    gpt2_medium = paper_count(compose(["model=gpt2-medium", "rank=4"]))
    assert gpt2_medium.exact == 393_216 and not gpt2_medium.agrees(393_216)
    assert "microsoft/LoRA#172" in gpt2_medium.note


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="the planning notes are not next to the repo")
def test_rows_copy_the_shared_csv():
    with SHARED_CSV.open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    for row in rows:
        rank = re.search(r"r=(\d+)", row["config"])
        cfg = base_config(row["model"], row["method"])
        if rank:
            OmegaConf.update(cfg, "rank", int(rank.group(1)))
        ours = paper_count(cfg)
        assert ours is not None and ours.exact == int(row["exact"]), row
        assert ours.paper == row["paper"]
