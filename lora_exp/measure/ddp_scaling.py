"""DDP throughput scaling (issue 9): training tokens/s on N GPUs over 1 GPU, full_ft and LoRA.

Launched with torchrun, one process per device; every rank trains a random-initialised model of
`conf/model/<name>.yaml` (weights do not change speed) with the method applied, wrapped in
DistributedDataParallel, AdamW over the method's parameters only, bf16 autocast on GPUs (as
fit.py's bf16-mixed), on synthetic batches of `--batch` x `--seq` tokens per device (weak scaling:
the per-device batch is fixed, so the global batch grows with N). Rank 0 appends one row per
method to `<out>/table.csv`; `--table` turns all rows into `<out>/table.md` with the speed-up over
the 1-process row of the same model, method and shape.

    torchrun --nproc_per_node 1 -m lora_exp.measure.ddp_scaling --model roberta-large
    torchrun --nproc_per_node 2 -m lora_exp.measure.ddp_scaling --model roberta-large
    python -m lora_exp.measure.ddp_scaling --table --out results/multigpu

On CPU (gloo, fp32) it runs at tiny sizes: tests/test_ddp.py checks the mechanics there.
Needs torch, transformers and omegaconf only (no Hydra or Lightning).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

COLUMNS = [
    "model",
    "method",
    "world_size",
    "per_device_batch",
    "seq_len",
    "precision",
    "trainable_params",
    "steps",
    "seconds",
    "tokens_per_s",
    "tokens_per_s_per_device",
    "device",
]


def train_rate(args, method: str, device: torch.device, rank: int, world: int) -> dict:
    """Time `args.steps` DDP training steps (after `args.warmup`) of one method."""
    from torch.nn.parallel import DistributedDataParallel

    from lora_exp.engine.losses import classification_loss
    from lora_exp.engine.step import TrainStep, build_optimizer
    from lora_exp.measure import bench
    from lora_exp.measure.params import count_parameters
    from lora_exp.methods import build_method
    from lora_exp.models import get_family

    model_cfg = bench.model_config(args.model)
    family = get_family(model_cfg.family)
    model = bench.build_model(model_cfg, "cls", device, torch.float32, seed=0)
    settings = {"rank": args.rank, "alpha": args.rank} if method == "lora" else {}
    algo = build_method(bench.method_config(method, **settings))
    algo.apply(model, family)
    trainable = count_parameters(model, family)["params/trainable"]  # before wrapping
    model.train()
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
    optimizer = build_optimizer(algo.trainable_parameters(model), 1e-5, 0.01, "eager", device)
    ids = bench.random_batch(model, args.batch, args.seq, device, seed=rank)
    labels = torch.randint(0, 2, (args.batch,), generator=torch.Generator().manual_seed(rank))
    batch = {"input_ids": ids, "labels": labels.to(device)}
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    # The training run's step (engine/step.py), eager: DDP all-reduces in backward hooks.
    step = TrainStep(ddp, classification_loss, optimizer, mode="eager", autocast_dtype=bf16)

    for _ in range(args.warmup):
        step(batch)
    sync(device)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(batch)
    sync(device)
    seconds = time.perf_counter() - start
    # The slowest rank sets the pace of synchronous data parallelism.
    seconds = reduce_max(seconds, device)
    tokens = world * args.batch * args.seq * args.steps
    return {
        "model": args.model,
        "method": method,
        "world_size": world,
        "per_device_batch": args.batch,
        "seq_len": args.seq,
        "precision": "bf16-mixed" if bf16 else "32-true",
        "trainable_params": trainable,
        "steps": args.steps,
        "seconds": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "tokens_per_s_per_device": round(tokens / seconds / world, 1),
        "device": bench.device_name(device),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reduce_max(value: float, device: torch.device) -> float:
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def append_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def write_table(out: Path) -> str:
    """`table.md` from `table.csv`: tokens/s and the speed-up over 1 process (the last rows win)."""
    rows: dict[tuple, dict] = {}
    with (out / "table.csv").open() as handle:
        for row in csv.DictReader(handle):
            key = (row["model"], row["method"], row["per_device_batch"], row["seq_len"])
            rows[(*key, int(row["world_size"]))] = row
    lines = [
        "| model | method | batch/device x seq | devices | tokens/s | tokens/s/device | "
        "speed-up vs 1 | scaling efficiency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (*key, world), row in sorted(rows.items()):
        base = rows.get((*key, 1))
        rate = float(row["tokens_per_s"])
        speedup = rate / float(base["tokens_per_s"]) if base else None
        lines.append(
            f"| {row['model']} | {row['method']} | {row['per_device_batch']} x {row['seq_len']} "
            f"| {world} | {rate:,.0f} | {float(row['tokens_per_s_per_device']):,.0f} | "
            + (f"{speedup:.2f}x | {100 * speedup / world:.0f}% |" if speedup else "- | - |")
        )
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="roberta-large")
    parser.add_argument("--methods", default="full_ft,lora")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = rank)")
    parser.add_argument("--batch", type=int, default=16, help="sequences per device and step")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/multigpu"))
    parser.add_argument("--table", action="store_true", help="only write table.md from table.csv")
    args = parser.parse_args(argv)
    if args.table:
        print(write_table(args.out))
        return 0
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    rows = [train_rate(args, m, device, rank, world) for m in args.methods.split(",")]
    if rank == 0:
        append_rows(args.out / "table.csv", rows)
        for row in rows:
            print(", ".join(f"{k}={row[k]}" for k in COLUMNS), flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
