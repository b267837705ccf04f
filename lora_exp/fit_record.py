"""What a fitted run writes into its run record (measurements, phase timings) and prints at the end.

Shared by both fit paths (`fit.py`, `fit_generation.py`) and by `train.py`, which counts the
imports it pays for as `timing/imports` through `add_import_time`.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def add_import_time(record: dict, seconds: float) -> None:
    """The heavy libraries, imported when the run needs them, count as timing/imports too."""
    timing = record.setdefault("timing", {})
    timing["timing/imports"] = round(timing.get("timing/imports", 0.0) + seconds, 3)


def record_measurements(record: dict, measurements, best, trainer) -> None:
    """Put what the run measured (and its best checkpoint's size) in the record and the loggers."""
    if best.best_model_path:
        measurements.results["checkpoint/saved_bytes"] = Path(best.best_model_path).stat().st_size
    record["measurements"] = dict(measurements.results)
    numeric = {k: v for k, v in measurements.results.items() if isinstance(v, int | float)}
    for logger in trainer.loggers:
        logger.log_metrics(numeric, step=trainer.global_step)


def record_timings(record: dict, data_timings: dict, model_load_s: float, phases, measurements,
                   module) -> None:  # fmt: skip
    """The phase times (`measure/phases.py`) into `record["timing"]`, beside timing/imports."""
    from lora_exp.measure.clock import timing_record

    step = module.train_step
    record.setdefault("timing", {}).update(
        timing_record(
            {
                **data_timings,
                "model_load": model_load_s,
                "capture": step.capture_seconds if step is not None else 0.0,
                "train": measurements.results.get("throughput/train_seconds", 0.0),
                **phases.times,
            }
        )
    )


def print_summary(cfg: DictConfig, record: dict) -> None:
    """A short human summary at the end of a run."""
    primary = record["primary_metric"]
    best, test, info = record["best"] or {}, record["test"] or {}, record["task"]
    params = record["params"]
    lines = [
        f"model={cfg.model.name} method={cfg.method.name} task={cfg.task.name} seed={cfg.seed}",
        f"trainable params: {params['params/trainable']:,} (head excluded, the paper's count); "
        f"{params['params/trainable_with_head']:,} with the head; {params['params/total']:,} total",
        f"train examples used: {info['split_sizes_used']['train']:,} of "
        f"{info['split_sizes_full']['train']:,} (budget={cfg.budget.name})",
        f"best val/{primary}: {best.get('val/' + primary, float('nan')):.4f} "
        f"(epoch {best.get('epoch')})",
        "test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()),
    ]
    if info.get("majority_test_acc") is not None:
        lines.append(f"majority-class baseline test/acc: {info['majority_test_acc']:.4f}")
    print("\n".join(["", "== lora_exp run summary ==", *lines]), flush=True)
