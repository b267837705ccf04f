"""Dry run: build the full-size architecture on the meta device, apply the method, count.

No weights are downloaded and no memory is allocated, so `python run.py model=deberta-v2-xxlarge
dry_run=true` prints the paper's "#Trainable Parameters" for a 1.5B-parameter model in seconds
(GPT-3 175B included). Where the paper prints a figure for the configuration, it is shown next to
the exact count, with the reason when they differ (`measure/paper_counts.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from omegaconf import DictConfig

if TYPE_CHECKING:
    from lora_exp.measure.paper_counts import PaperCount


def dry_counts(cfg: DictConfig, model=None) -> tuple[dict, object]:
    """Parameter counts of model x method at full scale, and the method.

    Args:
        cfg: the composed config.
        model: a meta-device model of `cfg.model` to use instead of building one (tests reuse
            one copy per architecture).

    Returns:
        (counts, method): `count_parameters` plus `params/base` (the backbone before the
        method, head excluded) and `params/percent_of_base` (trainable / base, in percent).
    """
    from lora_exp.measure.params import count_parameters
    from lora_exp.methods import build_method
    from lora_exp.models import build_on_meta, get_family, is_head_parameter

    task, family = cfg.task, get_family(cfg.model.family)
    method = build_method(cfg.method)  # bad method settings fail before the model is built
    method.check(family)
    if model is None and task.problem == "generation":  # E2E: the causal LM (fit_generation.py)
        from lora_exp.fit_generation import causal_lm_on_meta

        model = causal_lm_on_meta(cfg.model)
    elif model is None:
        num_labels = 1 if task.problem == "regression" else len(task.label_names)
        model = build_on_meta(cfg.model, num_labels, task.problem)
    base = sum(p.numel() for n, p in model.named_parameters() if not is_head_parameter(family, n))
    method.apply(model, family)
    counts = count_parameters(model, family)
    counts["params/base"] = base
    counts["params/percent_of_base"] = round(100 * counts["params/trainable"] / base, 6)
    return counts, method


@dataclass(frozen=True)
class DryRun:
    """What a dry run found: the exact counts, the method, and the paper's figure if it prints one.

    Attributes:
        counts: `dry_counts`'s parameter counts.
        model_name: the `model` config's name.
        description: the method described for a human (`Method.describe`).
        paper: the paper's figure for this configuration (`measure/paper_counts.py`), or None.
    """

    counts: dict
    model_name: str
    description: str
    paper: PaperCount | None


def dry_run(cfg: DictConfig) -> DryRun:
    """Count parameters of model x method at full scale (the record is `run_cell.py`'s to write)."""
    from lora_exp.measure.paper_counts import paper_count

    counts, method = dry_counts(cfg)
    return DryRun(counts, str(cfg.model.name), method.describe(), paper_count(cfg))


def print_dry_run(result: DryRun, task: DictConfig) -> None:
    """The counts for a human, next to the paper's figure where it prints one."""
    from lora_exp.measure.params import format_count

    counts, paper = result.counts, result.paper
    labels = 1 if task.problem == "regression" else len(task.get("label_names") or [])
    print(f"{result.model_name} + {result.description} ({task.name}, {labels} labels)")
    for key, value in counts.items():
        if key == "params/percent_of_base":
            continue
        print(f"  {key:28s} {value:>15,}  ({format_count(value)})")
    percent = counts["params/percent_of_base"]
    print(f"  {'params/percent_of_base':28s} {percent:>15.4g}%  (trainable / base, head excluded)")
    if paper is not None:
        exact, where = f"{counts['params/trainable']:,}", f"paper ({paper.source})"
        if paper.agrees(counts["params/trainable"]):
            print(f"  {where}: {paper.paper}, consistent with the exact count {exact}")
        else:
            print(f"  {where} prints {paper.paper}; the exact count is {exact}")
        if paper.note:
            print(f"    note: {paper.note}")
