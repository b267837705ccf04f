"""Run records rebuilt from the wandb API, for runs whose `record.json` is missing.

The local records are the source of truth (DESIGN.md: wandb is a mirror). When a record was lost
but the run reached wandb, `missing_from_wandb` rebuilds a record of the same schema (records.py)
from the wandb run, so load.py treats both alike:

    status        run.state: finished -> success, failed/crashed -> failed, killed -> interrupted
    config        run.config (the resolved Hydra config that fit.py logs with log_hyperparams)
    config_hash   records.config_hash(config): identifies the cell, and which runs are missing
    seed, task    config.seed, {name, version} from config.task
    params        summary params/*;  test: summary test/* (logged once, from the best checkpoint)
    best          left empty: the summary holds the last epoch's val/*, not the best one

Guarded: only with `--wandb ENTITY/PROJECT`; without the wandb package, in offline mode, or when
the API cannot be reached, it says so on stderr and the report uses the local records alone.
"""

from __future__ import annotations

import os
import sys

from lora_exp.records import SCHEMA_VERSION, config_hash

STATUS = {
    "finished": "success",
    "failed": "failed",
    "crashed": "failed",
    "killed": "interrupted",
    "running": "running",
}


def _plain(mapping) -> dict:
    """A wandb config or summary as a dict; unwraps {"value": ...} entries of raw configs."""
    data = getattr(mapping, "_json_dict", None)
    data = dict(data if data is not None else mapping or {})
    if data and all(isinstance(v, dict) and "value" in v for v in data.values()):
        data = {k: v["value"] for k, v in data.items()}
    return {k: v for k, v in data.items() if not k.startswith("_")}


def record_from_wandb(run) -> dict:
    """One wandb run -> a record of the local schema (see the module docstring)."""
    config = _plain(run.config)
    summary = _plain(run.summary)
    task = config.get("task") or {}
    metadata = getattr(run, "metadata", None) or {}
    device = metadata.get("gpu") or metadata.get("cpu") or "unknown (from wandb)"
    return {
        "schema_version": SCHEMA_VERSION,
        "status": STATUS.get(run.state, run.state),
        "error": None,
        "run_dir": getattr(run, "url", None) or f"wandb:{run.id}",
        "config": config,
        "overrides": [],
        "config_hash": config_hash(config),
        "seed": config.get("seed"),
        "task": {"name": task.get("name"), "version": task.get("version")},
        "primary_metric": task.get("primary_metric"),
        "params": {k: v for k, v in sorted(summary.items()) if k.startswith("params/")},
        "history": [],
        "best": None,
        "test": {k: v for k, v in sorted(summary.items()) if k.startswith("test/")},
        "started_at": str(getattr(run, "created_at", "") or ""),
        "finished_at": str(getattr(run, "heartbeat_at", "") or ""),
        "wall_time_s": summary.get("_runtime"),
        "environment": {"device": device},
        "source": "wandb",
    }


def fetch_runs(path: str, artifact: str, api=None) -> list:
    """wandb runs of an artifact: group == artifact or tagged with it. Raises on failure."""
    if api is None:
        import wandb

        api = wandb.Api(timeout=20)
    filters = {"$or": [{"group": artifact}, {"tags": {"$in": [artifact]}}]}
    return list(api.runs(path, filters=filters))


def local_hashes(records: list[dict]) -> set[str]:
    """Stored and recomputed config hashes (the hash function may have changed since a run)."""
    hashes = set()
    for record in records:
        if record.get("config_hash"):
            hashes.add(record["config_hash"])
        if record.get("config"):
            hashes.add(config_hash(record["config"]))
    return hashes


def missing_from_wandb(path: str, artifact: str, local: list[dict], api=None) -> list[dict]:
    """Records from wandb for the runs of `artifact` that have no local record.

    Args:
        path: "entity/project".
        artifact: the sweep's name (wandb group or tag).
        local: the records already on disk.
        api: a wandb.Api-like object (tests pass a fake); None builds the real one.

    Returns:
        The rebuilt records, sorted by config hash; [] when wandb cannot be used.
    """
    if api is None and os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        print(f"wandb: WANDB_MODE={os.environ['WANDB_MODE']}, local records only", file=sys.stderr)
        return []
    try:
        runs = fetch_runs(path, artifact, api)
    except Exception as exc:  # import error, no network, no credentials, unknown project
        print(
            f"wandb: cannot reach {path} ({type(exc).__name__}: {exc}); local records only",
            file=sys.stderr,
        )
        return []
    known = local_hashes(local)
    rebuilt = [record_from_wandb(run) for run in runs]
    missing = [r for r in rebuilt if r["config_hash"] not in known]
    if missing:
        print(f"wandb: {len(missing)} run(s) of {artifact} without a local record", file=sys.stderr)
    return sorted(missing, key=lambda r: (r["config_hash"], r["run_dir"]))
