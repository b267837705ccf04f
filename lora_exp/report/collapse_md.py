"""results/collapse.md: the collapsed runs (collapse.py), the probes (collapse_probes.py), then
what clipping changed in every cell (clipping_effect.py).

    python -m lora_exp.report collapse      # also run by `readme` and `all`

Its own module because the probes' sections are built on collapse.py's definition and evidence:
the file that joins both imports both (collapse.py importing collapse_probes.py, a cycle).
"""

from __future__ import annotations

from pathlib import Path

from lora_exp.records import write_text_atomic
from lora_exp.report.clipping_effect import clipping_markdown
from lora_exp.report.collapse import collapse_markdown, collapse_rates, collapsed_runs
from lora_exp.report.collapse_probes import probes_markdown


def write_collapse(results: Path, artifacts) -> list[Path]:
    """results/collapse.md from results/<artifact>/runs (and runs_unclipped) of `artifacts` (the
    report's tables) and the probe sweeps' runs; returns the path written."""
    path = Path(results) / "collapse.md"
    text = collapse_markdown(collapsed_runs(results, artifacts), collapse_rates(results, artifacts))
    text += "\n".join(probes_markdown(Path(results))) + "\n"
    clipping = clipping_markdown(Path(results), artifacts)
    if clipping:
        text += "\n".join(clipping) + "\n"
    write_text_atomic(path, text, keep_if_same=True)
    return [path]
