"""One run: config -> backbone -> method -> Lightning fit/test -> run record.

`run.py` calls `main(cfg)`. The record (see `records.py`) is written when the run starts
(status "running"), and rewritten atomically when it ends: "success", "failed" (with the error) or
"interrupted". Nothing heavy is imported until the config has been validated and the data checked,
so bad input fails within seconds.

Order of a training run: validate the config -> check the data (checks/inputs.py) -> lock the
run directory and the configuration (run_lock.py) -> skip if the cell already succeeded -> find
an intact checkpoint to resume from, unless force=true (resume.py, checkpoint_io.py) -> record
"running" -> check the model fits the device (checks/memory.py) -> build the run and record its
set-up (fit.build_run) -> fit and test, and record the result (fit.fit_and_test) -> final record
-> release the locks. Signals and exit statuses: interrupts.py and cli.py.

This module is the only one that writes into the record: the layers below return result objects
(fit_result.RunSetup, fit_result.FitResult, dry_run.DryRun) that `record_setup`, `record_fit` and
`record_dry_run` turn into record fields (tests/test_record_flow.py keeps it so).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from lora_exp import checks, run_lock
from lora_exp.checks.memory import check_memory
from lora_exp.distributed import is_global_zero, layout
from lora_exp.errors import UserError
from lora_exp.fit_result import FitResult, RunSetup
from lora_exp.fit_summary import print_summary
from lora_exp.hydra_job import in_multirun, run_dir_and_overrides
from lora_exp.interrupts import interruption
from lora_exp.measure.clock import process_age_s
from lora_exp.records import (
    SCHEMA_VERSION,
    config_hash,
    environment,
    load_record,
    redact,
    set_aside,
    utc_now,
    write_json_atomic,
)
from lora_exp.resume import LAST_CHECKPOINT, find_resume_checkpoint, find_success

if TYPE_CHECKING:
    from lora_exp.dry_run import DryRun

log = logging.getLogger("lora_exp")
RECORD_NAME = "record.json"


def offline_if_hub_unreachable() -> None:
    """Switch transformers/datasets to offline mode when the hub cannot be reached.

    Without this, every hub lookup on an air-gapped machine waits for network time-outs; with it,
    cached and local files still load and missing ones fail at once with our message.
    """
    from lora_exp.tasks.glue import hub_reachable

    if not hub_reachable():
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")


def scrub_hydra_dumps(run_dir: Path) -> None:
    """Redact secrets that reached Hydra's config dumps (.hydra/*.yaml) through the command line."""
    for dump in (run_dir / ".hydra").glob("*.yaml"):
        text = dump.read_text()
        clean = redact(text)
        if clean != text:
            dump.write_text(clean)


def check_run_dir_is_ours(record_path: Path, cell: str) -> None:
    """Refuse to overwrite another configuration's record in the same directory.

    A record that cannot be parsed (a disk that filled up, an editor accident) is moved aside
    with one warning line rather than silently replaced: it may be the only copy of a result.
    """
    if not record_path.exists():
        return
    try:
        other = json.loads(record_path.read_text()).get("config_hash")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        set_aside(record_path, f"not a JSON record: {type(err).__name__}")
        return
    if other != cell:
        raise UserError(
            f"{record_path} belongs to another configuration (config_hash {other}, this run "
            f"{cell}); choose another hydra.run.dir"
        )


def new_record(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "error": None,
        "run_dir": str(run_dir),
        "config": resolved,
        "overrides": overrides,
        "config_hash": config_hash(resolved),
        "seed": cfg.seed,
        "task": {
            "name": cfg.task.name,
            "version": cfg.task.version,
            "test_is_validation": bool(cfg.task.get("test_is_validation", False)),
        },
        "primary_metric": cfg.task.primary_metric,
        # The metric of the task's column in the paper's table (CoLA: mcc, STS-B: pearson).
        "table_metric": cfg.task.get("table_metric") or cfg.task.primary_metric,
        # batch_size is the global batch, split over distributed["world_size"] processes.
        "effective_batch_size": int(cfg.batch_size),
        "distributed": layout(cfg),
        "init_from": None,
        "params": {},
        "history": [],
        "best": None,
        "resumed_from": None,
        "resumed_from_epoch": None,
        "test": None,
        "started_at": utc_now(),
        "finished_at": None,
        "wall_time_s": None,
        "environment": None,
    }


def add_import_time(record: dict, seconds: float) -> None:
    """The heavy libraries, imported when the run needs them, count as timing/imports too."""
    timing = record["timing"]
    timing["timing/imports"] = round(timing.get("timing/imports", 0.0) + seconds, 3)


def record_setup(record: dict, setup: RunSetup) -> None:
    """What the built run knows before training, into its record (`fit_result.RunSetup`)."""
    add_import_time(record, setup.import_s)
    record["task"].update(setup.task_info)
    if setup.init_from is not None:
        record["init_from"] = setup.init_from
    record["params"] = dict(setup.params)
    record["step"] = dict(setup.step)


def record_fit(record: dict, result: FitResult) -> None:
    """What fitting and testing produced, into the record (`fit_result.FitResult`)."""
    record["history"] = list(result.history)
    record["resumed_from_epoch"] = result.resumed_from_epoch
    record["step"].update(result.step)
    record["best"] = result.best
    record["test"] = dict(result.test)
    record["task"].update(result.task_info)
    record.update(result.extras)
    record["measurements"] = dict(result.measurements)
    record["timing"].update(result.timing)


def record_dry_run(record: dict, result: DryRun, start: float) -> None:
    """A dry run's counts (and the paper's figure, where it prints one) into its record."""
    record.update(
        status="dry_run",
        params=dict(result.counts),
        finished_at=utc_now(),
        wall_time_s=round(time.time() - start, 2),
        environment=environment(),
    )
    paper = result.paper
    if paper is not None:
        record["paper_count"] = {"paper": paper.paper, "source": paper.source, "note": paper.note}


def main(cfg: DictConfig) -> dict:
    """Run one configuration end to end and return its record."""
    imports_s = process_age_s()  # interpreter, Hydra and composition, before this line
    start = time.time()
    run_dir, overrides = run_dir_and_overrides(cfg)
    checks.before_loading(cfg, multirun=in_multirun())
    # Under data parallelism every rank runs this function, so that all make the same skip and
    # resume decisions from the same files; only global rank 0 writes (distributed.py).
    writer = is_global_zero()
    if writer:
        scrub_hydra_dumps(run_dir)
    offline_if_hub_unreachable()
    record = new_record(cfg, run_dir, overrides)
    record["timing"] = {"timing/imports": round(imports_s, 3)}
    record_path = run_dir / RECORD_NAME
    if cfg.dry_run:
        from lora_exp.dry_run import dry_run, print_dry_run

        result = dry_run(cfg)
        record_dry_run(record, result, start)
        write_json_atomic(record_path, record)
        print_dry_run(result, cfg.task)
        return record
    from lora_exp.checks.inputs import preflight

    preflight(cfg)  # data reachable and init checkpoint present: fail in ms, before heavy imports
    # The locks come before the skip check: a run of this cell that finishes while we wait is
    # then seen as done, never trained a second time (run_lock.py). force=true asks for another
    # run of the cell on purpose, so it locks only its directory.
    lock = run_lock.hold(run_dir, Path(str(cfg.records_root)), record["config_hash"], not cfg.force)
    with lock if writer else contextlib.nullcontext():
        return run_locked(cfg, record, record_path, start)


def run_locked(cfg: DictConfig, record: dict, record_path: Path, start: float) -> dict:
    """Skip a finished cell, or train it (resuming where possible); the record on every path."""
    writer = is_global_zero()
    run_dir = record_path.parent
    roots = [Path(cfg.records_root), run_dir]
    done = None if cfg.force else find_success(roots, record["config_hash"], own=record_path)
    if done is not None:
        log.info("already done, skipping (force=true reruns): %s", done)
        print(f"already done: {done} (pass force=true to run again)", flush=True)
        finished = load_record(done)
        if writer and done.resolve() != record_path.resolve():
            # A cell shared between sweeps: this sweep's directory still gets its record.
            write_json_atomic(record_path, {**finished, "reused_from": str(done)})
        return finished
    check_run_dir_is_ours(record_path, record["config_hash"])
    # force=true trains from the start: resuming would keep what it asks to redo.
    resume_from = (
        None if cfg.force else find_resume_checkpoint(run_dir, roots, record["config_hash"])
    )
    if resume_from is not None:
        log.info("resuming from %s", resume_from)
        record["resumed_from"] = str(resume_from)
    if writer:
        write_json_atomic(record_path, record)
    try:
        from lora_exp.fit import build_run, fit_and_test

        importing = time.perf_counter()
        import lightning  # noqa: F401  (the libraries every training run needs, timed as imports)
        import transformers  # noqa: F401

        add_import_time(record, time.perf_counter() - importing)
        if writer:  # rank 0, before it starts the others: they would see its memory as used
            checking = time.perf_counter()
            check_memory(cfg)  # a model that cannot fit fails here, before anything is allocated
            record["timing"]["timing/memory_check"] = round(time.perf_counter() - checking, 3)

        record["environment"] = environment()
        run = build_run(cfg, run_dir, record["overrides"], resume_from)
        record_setup(record, run.setup)  # on record even if training fails or is interrupted
        record_fit(record, fit_and_test(run, resume_from))
        if writer:
            print_summary(record)
        record["status"] = "success"
    except (KeyboardInterrupt, SystemExit) as exc:
        stop = interruption(exc) or exc  # the signal, not Lightning's sys.exit(1) after it
        record.update(status="interrupted", error=f"{type(stop).__name__}: {stop}")
        raise
    except BaseException as exc:
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        record["finished_at"] = utc_now()
        record["wall_time_s"] = round(time.time() - start, 2)
        record["timing"]["timing/total"] = round(process_age_s(), 3)
        timing = record["timing"]
        named = sum(v for k, v in timing.items() if k != "timing/total")
        # Lightning's setup, moving the model to the device, loggers, writing records.
        timing["timing/other"] = round(max(0.0, timing["timing/total"] - named), 3)
        if record["environment"] is None:
            record["environment"] = environment()
        if writer:
            write_json_atomic(record_path, record)
    if writer:
        from lora_exp.checkpoint_io import discard

        discard(run_dir / LAST_CHECKPOINT)  # finished: nothing to resume, no sidecar left over
    return record
