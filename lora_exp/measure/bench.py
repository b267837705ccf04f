"""Shared pieces of the latency and training-efficiency benchmarks (`latency.py`, `efficiency.py`).

Both benchmarks build random-initialised models of the paper's architectures from
`conf/model/<name>.yaml` (weights do not change latency, throughput or memory), apply a method
through the registry, and write a CSV, a Markdown table and a run record. Nothing here needs Hydra:
configs are read with OmegaConf alone, so the benchmarks run on a machine that only has torch,
transformers, peft and omegaconf.
"""

from __future__ import annotations

import csv
import io
import math
import platform
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lora_exp.errors import UserError
from lora_exp.models import family_of, input_positions
from lora_exp.records import SCHEMA_VERSION, config_hash, environment, utc_now, write_json_atomic

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = CONF.parent / "experiments"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_KNOBS = {"rank": 8, "alpha": 8, "targets": ["q", "v"]}  # conf/config.yaml's defaults


def model_config(name: str) -> DictConfig:
    """`conf/model/<name>.yaml`, always with random weights (no download)."""
    path = CONF / "model" / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
        raise UserError(f"unknown model '{name}'; conf/model has: {known}")
    cfg = OmegaConf.load(path)
    cfg.weights, cfg.local_path = "random", None
    return cfg


def method_config(name: str, **settings) -> DictConfig:
    """`conf/method/<name>.yaml` resolved against the top-level knobs (rank, alpha, targets).

    Args:
        name: a method config name (lora, adapter_h, ...).
        settings: rank/alpha/targets set the top-level knobs; anything else sets a method key.
    """
    path = CONF / "method" / f"{name}.yaml"
    if not path.exists():
        raise UserError(f"unknown method '{name}': no {path}")
    knobs = {k: settings.pop(k) for k in list(settings) if k in DEFAULT_KNOBS}
    root = OmegaConf.create({**DEFAULT_KNOBS, **knobs, "method": OmegaConf.load(path)})
    for key, value in settings.items():
        root.method[key] = value
    return OmegaConf.create(OmegaConf.to_container(root.method, resolve=True))


def method_available(name: str) -> bool:
    """Whether the registry has `name` (a helper may still be writing a method module)."""
    from lora_exp.methods import METHODS

    return name in METHODS


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The `device` column: the GPU's name, or the CPU architecture."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.machine()}"


def build_model(model_cfg: DictConfig, head: str, device: torch.device, dtype, seed: int):
    """A random-initialised model of `model_cfg.arch`, built directly on `device`.

    Args:
        head: "lm" (causal LM head, as the paper's GPT-2 code) or "cls" (sequence
            classification with 2 labels, as the framework trains).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from lora_exp.models import build_config

    config = build_config(model_cfg, 2, "single_label_classification")
    if config.pad_token_id is None:  # GPT-2: batches > 1 need a pad id to find the last token
        config.pad_token_id = config.eos_token_id if config.eos_token_id is not None else 0
    config.use_cache = False  # one forward pass, no key/value cache to fill
    cls = AutoModelForCausalLM if head == "lm" else AutoModelForSequenceClassification
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls.from_config(config)
    return model.to(dtype=dtype)


def random_batch(model: nn.Module, batch: int, seq: int, device, seed: int) -> torch.Tensor:
    """Token ids (batch, seq) drawn from the vocabulary, avoiding the pad id (no padding).

    Raises:
        UserError: if `seq` exceeds the positions a sequence of the family can use.
    """
    config = model.config
    positions = input_positions(family_of(model), config)
    if seq > positions:
        raise UserError(f"seq_len {seq} exceeds the model's {positions} positions")
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, config.vocab_size, (batch, seq), generator=generator)
    ids[ids == config.pad_token_id] = 3
    return ids.to(device)


def peft_lora(model: nn.Module, family, rank: int, alpha: float, targets: list[str], task: str):
    """PEFT's LoRA on the modules our LoRA adapts (same r, alpha, targets, dropout 0).

    On GPT-2 the q/v sites are slices of the fused `c_attn`: PEFT adapts the whole projection with
    one rank-r update (the same number of parameters, 4096 r per block, but a different function).
    """
    from peft import LoraConfig, get_peft_model

    from lora_exp.methods.lora import plan_targets

    names = sorted(plan_targets(model, family, targets))
    conv1d = not isinstance(model.get_submodule(names[0]), nn.Linear)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=names,
        fan_in_fan_out=conv1d,
        task_type=task,
    )
    return get_peft_model(model, config)


def serialized_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size of `state` as a safetensors file (the format of HF and PEFT checkpoints)."""
    from safetensors.torch import save

    cpu = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    return len(save(cpu))


def percentiles(samples: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile (linear interpolation), mean, standard deviation."""
    ordered = sorted(samples)

    def pct(q: float) -> float:
        pos = (len(ordered) - 1) * q
        low, high = math.floor(pos), math.ceil(pos)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    mean = sum(ordered) / len(ordered)
    var = sum((x - mean) ** 2 for x in ordered) / max(len(ordered) - 1, 1)
    return {
        "ms_median": pct(0.5),
        "ms_p10": pct(0.1),
        "ms_p90": pct(0.9),
        "ms_mean": mean,
        "ms_std": math.sqrt(var),
        "n": len(ordered),
    }


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Exactly `columns`, in order; None becomes an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue())


def write_record(out: Path, artifact: str, config: dict, extra: dict, started: float) -> Path:
    """A run record (the training record's schema, status success) in `out/runs/<stamp>/`.

    Args:
        config: the benchmark's settings; `config["model"]["name"]` is read by the report.
        extra: fields added to the record (the measurement table, parameter counts, notes).
        started: `time.time()` at the start of the benchmark.
    """
    env = environment()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    kind = "cuda" if torch.cuda.is_available() and "cpu" not in str(config.get("device")) else "cpu"
    run_dir = out / "runs" / f"{stamp}_{kind}"
    suffix = 1
    while (run_dir / "record.json").exists():
        suffix += 1
        run_dir = out / "runs" / f"{stamp}_{kind}_{suffix}"
    record = {
        "schema_version": SCHEMA_VERSION,
        "status": "success",
        "error": None,
        "run_dir": str(run_dir),
        "config": config,
        "overrides": sys.argv[1:],
        "config_hash": config_hash(config),
        "seed": config.get("seed"),
        "task": {"name": artifact, "version": 1, "test_is_validation": False},
        "primary_metric": None,
        "params": {},
        "history": [],
        "best": None,
        "resumed_from": None,
        "test": None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started)),
        "finished_at": utc_now(),
        "wall_time_s": round(time.time() - started, 2),
        "environment": env,
        **extra,
    }
    path = run_dir / "record.json"
    write_json_atomic(path, record)
    return path


def read_paper_csv(artifact: str) -> list[dict]:
    """The paper's figures from `experiments/<artifact>/paper.csv` ('#' lines are comments)."""
    path = EXPERIMENTS / artifact / "paper.csv"
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def write_outputs(out: Path, artifact: str, columns, result: dict, markdown: str, config: dict,
                  extra: dict, started: float, record: bool) -> list:  # fmt: skip
    """A benchmark's table.csv, table.md and (with `record`) runs/<stamp>/record.json."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "table.csv", columns, result["rows"])
    (out / "table.md").write_text(markdown)
    written = [out / "table.csv", out / "table.md"]
    if record:
        written.append(write_record(out, artifact, config, extra, started))
    return written


def free_memory() -> None:
    """Release cached blocks between measurements (the next one's peak starts clean)."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
