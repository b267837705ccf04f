"""Every sweep file (one per paper artifact) expands into cells that all compose."""

from __future__ import annotations

import pytest

from slurm.make_manifest import manifest_lines
from tests.conftest import CONF

SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
EXPECTED_CELLS = {
    "embedded_lr_search": 25,
    "embedded_lr_search_ft": 3,
    "embedded_methods": 60,
    "embedded_rank": 45,
    "embedded_weight_types": 21,
    "table2_roberta_base": 40,
    "table2_roberta_large": 80,
    "table2_deberta": 40,
    "table5_weight_types": 21,
    "table6_rank": 45,
}


@pytest.mark.slow  # composes ~600 cells: about a minute
@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_expands_into_composable_cells(sweep):
    lines = manifest_lines([f"sweep={sweep}"])  # composes every cell, raising on a bad one
    assert len(lines) == len(set(lines)) > 0
    if sweep in EXPECTED_CELLS:
        assert len(lines) == EXPECTED_CELLS[sweep]


def test_weight_type_cells_share_one_budget():
    from tests.conftest import compose

    sizes = set()
    for cell in ("q8", "k8", "v8", "o8", "qk4", "qv4", "qkvo2"):
        cfg = compose([f"+cell={cell}"])
        sizes.add(cfg.rank * len(cfg.targets))
    assert sizes == {8}  # 6 layers x 768 x rank x matrices = 36,864 LoRA parameters on MiniLM
