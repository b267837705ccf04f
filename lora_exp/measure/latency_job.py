"""The latency benchmark (Table 1) as a run.py job, so a sweep can put it on SLURM.

    python run.py -m sweep=table1_latency launcher=slurm      # one job per (batch, seq)
    python -m lora_exp.measure.latency --protocol paper       # the same numbers, one process

`conf/sweep/table1_latency.yaml` sets `job: latency` and the benchmark's settings under `bench`;
`lora_exp.cli.run_main` sends such a config here instead of to `run_cell.main`. This module only
translates the config into `latency.run_latency(...)` arguments and writes the benchmark's own
outputs (`latency.write_outputs`): the measurement is the module command's, unchanged.

Each job measures one setting `bench.size` (BATCHxSEQ) and writes `table.csv`, `table.md` and
`runs/<stamp>/record.json` into its own run directory. It then rebuilds the sweep's combined
`table.csv` and `table.md` in `hydra.sweep.dir` from every successful record there, under a file
lock: whichever job ends last writes a table with every setting. The sweep directory is not the
module command's `--out` directory (results/table1_latency/sweep vs results/table1_latency), so
neither overwrites the other's tables.

Like training runs, a job whose benchmark settings already have a successful record under
`records_root` is skipped (`already done: ...`, and a copy of that record with `reused_from` in
the run directory, so a new sweep directory's table is complete); `force=true` measures again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp.errors import UserError

log = logging.getLogger("lora_exp")
COMBINED_LOCK = ".table.lock"


def bench_settings(cfg: DictConfig) -> tuple[dict, list[tuple[int, int, int | None]]]:
    """The benchmark's config (as the module command records it) and its (batch, seq, |Θ|)."""
    from lora_exp.measure import latency

    bench = OmegaConf.to_container(cfg.bench, resolve=True)
    model = cfg.model.name
    try:
        batch, seq, _ = latency.parse_size(str(bench["size"]))
    except Exception as exc:
        size = bench["size"]
        raise UserError(f"bench.size must be BATCHxSEQ, e.g. 32x512: got {size!r}") from exc
    if bench["protocol"] == "paper":
        if model != "gpt2-medium":
            raise UserError(
                f"bench.protocol=paper measures gpt2-medium, not model={model}; "
                "use bench.protocol=custom for other models"
            )
        paper = {(b, s): budget for b, s, budget in latency.PAPER_SIZES}
        if (batch, seq) not in paper:
            sizes = ",".join(f"{b}x{s}" for b, s, _ in latency.PAPER_SIZES)
            raise UserError(f"bench.protocol=paper measures bench.size={sizes}, not {batch}x{seq}")
        sizes = [(batch, seq, paper[(batch, seq)])]
    elif bench["protocol"] == "custom":
        sizes = [(batch, seq, None)]
    else:
        raise UserError(f"bench.protocol must be paper or custom, got {bench['protocol']!r}")
    variants = list(bench["variants"])
    unknown = set(variants) - set(latency.VARIANTS + latency.OPTIONAL_VARIANTS)
    if unknown:
        raise UserError(f"unknown bench.variants: {', '.join(sorted(unknown))}")
    config = {  # the keys of latency.main's config, so both paths' records read the same
        "benchmark": latency.ARTIFACT,
        "protocol": bench["protocol"],
        "model": {"name": model},
        "sizes": [list(s) for s in sizes],
        "variants": variants,
        "trials": bench["trials"],
        "warmup": bench["warmup"],
        "dtype": bench["dtype"],
        "device": bench["device"],
        "head": bench["head"],
        "graphs": bench["graphs"],
        "lora": latency.LORA,
        "adapter_rank": bench["adapter_rank"],
        "seed": cfg.seed,
    }
    return config, sizes


def merged_result(records: list[dict]) -> tuple[dict, dict]:
    """One benchmark result from several jobs' records (the latest record per configuration)."""
    latest: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: r.get("finished_at") or ""):
        latest[record["config_hash"]] = record
    kept = list(latest.values())
    rows = [row for r in kept for row in r["latency"]]
    rows.sort(key=lambda row: (-row["batch_size"], -row["seq_len"]))  # Table 1's order
    notes, checks, sizes = [], {}, []
    for record in kept:
        notes += [n for n in record["notes"] if n not in notes]
        checks |= record["checks"]
        sizes += record["config"]["sizes"]
    first = kept[0]["config"]
    differ = [
        key
        for key in ("model", "trials", "warmup", "dtype", "head", "adapter_rank")
        if any(r["config"][key] != first[key] for r in kept)
    ]
    if differ:
        notes.append(f"the combined jobs differ in {', '.join(differ)}: see each job's table.md")
    devices = sorted({row["device"] for row in rows})
    if len(devices) > 1:
        notes.append(f"jobs ran on different devices ({'; '.join(devices)}): compare overheads")
    result = {"rows": rows, "notes": notes, "checks": checks, "dtype": first["dtype"]}
    return result, {**first, "sizes": sizes}


def write_combined_table(sweep_dir: Path) -> list[Path]:
    """table.csv and table.md of every successful latency record under `sweep_dir`."""
    from lora_exp.measure import bench, latency
    from lora_exp.measure.tables import latency_markdown

    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / COMBINED_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the last job to get here sees every other job's record
        records = []
        for path in sorted(sweep_dir.rglob("record.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("status") == "success" and record.get("latency"):
                records.append(record)
        if not records:
            return []
        result, config = merged_result(records)
        bench.write_csv(sweep_dir / "table.csv", latency.COLUMNS, result["rows"])
        paper = bench.read_paper_csv(latency.ARTIFACT)
        (sweep_dir / "table.md").write_text(latency_markdown(result, config, paper))
    return [sweep_dir / "table.csv", sweep_dir / "table.md"]


def main(cfg: DictConfig) -> dict | None:
    """Measure one setting; returns the record (None when skipped as already done)."""
    from hydra.core.hydra_config import HydraConfig

    from lora_exp.measure import bench
    from lora_exp.models import get_family
    from lora_exp.records import config_hash, write_json_atomic
    from lora_exp.resume import find_success

    config, sizes = bench_settings(cfg)
    # Resolved as run_latency resolves them, before the lookup: the record holds resolved values,
    # and a CPU measurement (fp32) must not count as done for a GPU job (fp16).
    if config["dtype"] == "auto":
        cuda = bench.resolve_device(config["device"]).type == "cuda"
        config["dtype"] = "fp16" if cuda else "fp32"
    if config["head"] == "auto":
        family = get_family(bench.model_config(config["model"]["name"]).family)
        config["head"] = "lm" if family.decoder else "cls"
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode.name == "MULTIRUN"
    sweep_dir = Path(hydra_cfg.sweep.dir) if multirun else None
    done = None if cfg.force else find_success([Path(cfg.records_root)], config_hash(config))
    if done is not None:
        log.info("already done, skipping (force=true reruns): %s", done)
        print(f"already done: {done} (pass force=true to run again)", flush=True)
        copy = run_dir / "record.json"
        if done.resolve() != copy.resolve():  # this sweep's table still gets the setting
            write_json_atomic(copy, {**json.loads(done.read_text()), "reused_from": str(done)})
        if sweep_dir is not None:
            write_combined_table(sweep_dir)
        return None
    from lora_exp.measure import latency

    started = time.time()
    result = latency.run_latency(
        config["model"]["name"],
        sizes,
        tuple(config["variants"]),
        config["trials"],
        config["warmup"],
        config["device"],
        config["dtype"],
        config["graphs"],
        config["head"],
        config["adapter_rank"],
        config["seed"],
    )
    written = latency.write_outputs(run_dir, result, config, started, record=True)
    if sweep_dir is not None:
        written += write_combined_table(sweep_dir)
    for path in written:
        print(path, flush=True)
    return json.loads(written[2].read_text())
