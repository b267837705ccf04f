"""Dry run: build the full-size architecture on the meta device, apply the method, count.

No weights are downloaded and no memory is allocated, so `python run.py model=deberta-v2-xxlarge
dry_run=true` prints the paper's "#Trainable Parameters" for a 1.5B-parameter model in seconds
(GPT-3 175B included). Where the paper prints a figure for the configuration, it is shown next to
the exact count, with the reason when they differ (`measure/paper_counts.py`).
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from lora_exp.records import environment, utc_now, write_json_atomic


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


def dry_run(cfg: DictConfig, record: dict, record_path: Path, start: float) -> dict:
    """Count parameters of model x method at full scale; write a record with status dry_run."""
    from lora_exp.measure.paper_counts import paper_count
    from lora_exp.measure.params import format_count

    counts, method = dry_counts(cfg)
    paper = paper_count(cfg)
    record.update(
        status="dry_run",
        params=counts,
        finished_at=utc_now(),
        wall_time_s=round(time.time() - start, 2),
        environment=environment(),
    )
    if paper is not None:
        record["paper_count"] = {"paper": paper.paper, "source": paper.source, "note": paper.note}
    write_json_atomic(record_path, record)
    task = cfg.task
    labels = 1 if task.problem == "regression" else len(task.get("label_names") or [])
    print(f"{cfg.model.name} + {method.describe()} ({task.name}, {labels} labels)")
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
    return record
