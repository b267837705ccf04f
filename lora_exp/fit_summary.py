"""What a fitted run reports about itself (measurements, phase timings), and the closing summary.

`fit.fit_and_test` returns the first two in its `FitResult`; `run_cell.py` prints the summary from
the finished record. Nothing here writes into the record: `run_cell.py` alone does.
"""

from __future__ import annotations

from pathlib import Path


def measured(measurements, best, trainer) -> dict:
    """What the run measured (and its best checkpoint's size), also sent to the loggers."""
    if best.best_model_path:
        measurements.results["checkpoint/saved_bytes"] = Path(best.best_model_path).stat().st_size
    numeric = {k: v for k, v in measurements.results.items() if isinstance(v, int | float)}
    for logger in trainer.loggers:
        logger.log_metrics(numeric, step=trainer.global_step)
    return dict(measurements.results)


def phase_timings(data_timings: dict, model_load_s: float, phases, measurements,
                  module) -> dict:  # fmt: skip
    """The phase times (`measure/phases.py`) as `timing/<phase>` entries of the record."""
    from lora_exp.measure.clock import timing_record

    step = module.train_step
    return timing_record(
        {
            **data_timings,
            "model_load": model_load_s,
            "capture": step.capture_seconds if step is not None else 0.0,
            "train": measurements.results.get("throughput/train_seconds", 0.0),
            **phases.times,
        }
    )


def print_summary(record: dict) -> None:
    """A short human summary at the end of a run, from its record."""
    config, primary = record["config"], record["primary_metric"]
    best, test, info = record["best"] or {}, record["test"] or {}, record["task"]
    params = record["params"]
    lines = [
        f"model={config['model']['name']} method={config['method']['name']} "
        f"task={config['task']['name']} seed={config['seed']}",
        f"trainable params: {params['params/trainable']:,} (head excluded, the paper's count); "
        f"{params['params/trainable_with_head']:,} with the head; {params['params/total']:,} total",
        f"train examples used: {info['split_sizes_used']['train']:,} of "
        f"{info['split_sizes_full']['train']:,} (budget={config['budget']['name']})",
        f"best val/{primary}: {best.get('val/' + primary, float('nan')):.4f} "
        f"(epoch {best.get('epoch')})",
        "test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()),
    ]
    if info.get("majority_test_acc") is not None:
        lines.append(f"majority-class baseline test/acc: {info['majority_test_acc']:.4f}")
    print("\n".join(["", "== lora_exp run summary ==", *lines]), flush=True)
