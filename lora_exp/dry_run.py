"""Dry run: build the full-size architecture on the meta device, apply the method, count.

No weights are downloaded and no memory is allocated, so `python run.py model=deberta-v2-xxlarge
dry_run=true` prints the paper's "#Trainable Parameters" for a 1.5B-parameter model in seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from lora_exp.records import environment, utc_now, write_json_atomic


def dry_run(cfg: DictConfig, record: dict, record_path: Path, start: float) -> dict:
    """Count parameters of model x method at full scale; write a record with status dry_run."""
    from lora_exp.measure.params import count_parameters, format_count
    from lora_exp.methods import build_method
    from lora_exp.models import build_on_meta, get_family

    task = cfg.task
    num_labels = 1 if task.problem == "regression" else len(task.label_names)
    model = build_on_meta(cfg.model, num_labels, task.problem)
    method = build_method(cfg.method)
    method.apply(model, get_family(cfg.model.family))
    counts = count_parameters(model, get_family(cfg.model.family))
    record.update(
        status="dry_run",
        params=counts,
        finished_at=utc_now(),
        wall_time_s=round(time.time() - start, 2),
        environment=environment(),
    )
    write_json_atomic(record_path, record)
    print(f"{cfg.model.name} + {method.describe()} ({task.name}, {num_labels} labels)")
    for key, value in counts.items():
        print(f"  {key:28s} {value:>15,}  ({format_count(value)})")
    return record
