"""Training efficiency: step time, throughput, peak memory, optimizer state and checkpoint size.

    python -m lora_exp.measure.efficiency --out results/efficiency            # the H200 protocol
    python -m lora_exp.measure.efficiency --models tiny-roberta --seq-lens 16 --batch-size 2 \
        --steps 3 --warmup 1 --out DIR                                        # a CPU smoke run

The paper's system claims (Sec. 4.2, GPT-3 175B): LoRA trains 25% faster than full fine-tuning,
needs a third of the memory and saves 10,000x less. Here, at the scale this project trains:
`full_ft`, `lora`, `adapter_h`, `bitfit` (through the method registry) and PEFT's LoRA on the
same modules, on random-initialised roberta-large and gpt2-medium (weights change none of these
figures), batch 32, lengths 128 and 512, bf16 autocast with fp32 trainable weights (frozen
projections stored in bf16 for lora_exp, as run_plan.py does) and fused AdamW on a GPU.
A step is forward + backward + optimizer step + zero_grad on a fixed random batch; each
configuration is built fresh and measured alone, so peak memory is its own. `--modes eager
compiled` adds the same configurations under `torch.compile` (impl `lora_exp-compiled`,
`peft-compiled`; `--compile-scope blocks` compiles each transformer block instead of the whole
model, see lora_exp/compiling.py); `graphed` replays the whole eager step as one CUDA graph
(`-graphed`; `engine.step.TrainStep`, the training run's own step) and `compiled-graphed` the
whole compiled step (`-compiled-graphed`): at length 128, where eager steps wait on the host,
the latter is the fastest mode on the H200 for full FT, LoRA and PEFT's LoRA on both models.

Output: `table.csv` (columns below), `table.md` (ratios to full fine-tuning, the paper's claims,
the model FLOP utilisation of full fine-tuning against a measured bf16 matmul ceiling) and a run
record in `runs/`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lora_exp.compiling import SCOPES, compile_model
from lora_exp.errors import UserError
from lora_exp.measure import bench

ARTIFACT = "efficiency"
COLUMNS = ["model", "seq_len", "batch_size", "method", "impl", "step_ms", "tokens_per_s"]
COLUMNS += ["peak_mem_bytes", "trainable", "saved_bytes", "device"]
METHODS = ("full_ft", "lora", "adapter_h", "bitfit")
MODES = ("eager", "compiled", "graphed", "compiled-graphed")
MODELS = ("roberta-large", "gpt2-medium")
LORA = {"rank": 8, "alpha": 16, "targets": ["q", "v"]}  # RoBERTa-large, Table 9 (and issue 5)
ADAPTER_RANK = 8  # AdptH (0.8M) of Table 2


def build(model_name: str, method: str, impl: str, device, seed: int, lora: dict, adapter_rank):
    """(model in train mode, () -> state to save, trainable count head excluded)."""
    from lora_exp.measure.params import count_parameters
    from lora_exp.methods import build_method
    from lora_exp.models import get_family, is_head_parameter

    model_cfg = bench.model_config(model_name)
    family = get_family(model_cfg.family)
    model = bench.build_model(model_cfg, "cls", device, torch.float32, seed)
    if impl == "peft":
        from peft import get_peft_model_state_dict

        head = sum(p.numel() for n, p in model.named_parameters() if is_head_parameter(family, n))
        model = bench.peft_lora(
            model, family, lora["rank"], lora["alpha"], lora["targets"], "SEQ_CLS"
        )
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) - head
        return model.train(), lambda: get_peft_model_state_dict(model), trainable
    settings = {"lora": lora, "adapter_h": {"rank": adapter_rank}}.get(method, {})
    algo = build_method(bench.method_config(method, **settings))
    algo.apply(model, family)
    trainable = count_parameters(model, family)["params/trainable"]
    if device.type == "cuda":  # as run_plan.py does under bf16-mixed (exact; frozen_precision.py)
        from lora_exp.frozen_precision import store_frozen_projections_in

        store_frozen_projections_in(model, torch.bfloat16)
    return model.train(), lambda: algo.state_to_save(model), trainable


def matmul_params(model: nn.Module) -> int:
    """Parameters of the weight matrices that multiply activations (Linear and GPT-2 Conv1D)."""
    return sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"
    )


def step_times(step, steps: int, device: torch.device) -> list[float]:
    """Milliseconds of each of `steps` consecutive steps (CUDA events between them on a GPU)."""
    if device.type != "cuda":
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        return times
    events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    torch.cuda.synchronize()
    events[0].record()
    for i in range(steps):
        step()
        events[i + 1].record()
    events[-1].synchronize()
    return [events[i].elapsed_time(events[i + 1]) for i in range(steps)]


def kernel_profile(step, steps: int) -> dict:
    """GPU kernels (and memory copies/sets) per step and the GPU time they take, from
    torch.profiler over `steps` steps. A step longer than its GPU time is launch-bound: the GPU
    waits for the host to issue work, and fewer kernels, not fewer FLOPs, make it faster."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    gpu = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy_us = sum(e.time_range.elapsed_us() for e in gpu)
    return {"kernels_per_step": len(gpu) / steps, "gpu_busy_ms": busy_us / 1e3 / steps}


def measure(model, seq: int, batch: int, steps: int, warmup: int, device, mode: str, seed,
            profile_steps: int = 0, compile_scope: str = "model"):  # fmt: skip
    """Time training steps of `model`; returns step statistics, memory and optimizer bytes (and,
    with `profile_steps` on a GPU, kernels and GPU time per step: `kernel_profile`)."""
    from lora_exp.engine.losses import classification_loss
    from lora_exp.engine.step import TrainStep, build_optimizer

    params = [p for p in model.parameters() if p.requires_grad]
    cuda = device.type == "cuda"
    graphed, compiled = mode.endswith("graphed"), mode.startswith("compiled")
    if graphed and not cuda:
        raise UserError(f"mode '{mode}' (a CUDA graph of the training step) needs a GPU")
    optimizer = build_optimizer(params, 1e-5, 0.01, mode, device)
    ids = bench.random_batch(model, batch, seq, device, seed)  # no padding: no attention mask
    labels = torch.randint(0, 2, (batch,), generator=torch.Generator().manual_seed(seed))
    inputs = {"input_ids": ids, "labels": labels.to(device)}
    forward = compile_model(model, compile_scope) if compiled else model
    # The training run's step (engine/step.py), in this mode: bf16 autocast on a GPU (the
    # framework's default there), fp32 on CPU; `graphed` captures at its first call.
    train_step = TrainStep(forward, classification_loss, optimizer, mode=mode,
                           autocast_dtype=torch.bfloat16 if cuda else None,
                           warmup=max(warmup, 1))  # fmt: skip

    def step():
        train_step(inputs)

    start = time.perf_counter()
    if graphed:
        # A replay allocates nothing (its activations live in the graph's pool), so the peak
        # is taken over the warm-up steps and the capture, which allocate what a step does.
        # compiled-graphed captures the compiled step: the warm-up passes compile it first.
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
    else:
        for _ in range(warmup):
            step()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - start
    times = step_times(step, steps, device)
    stats = bench.percentiles(times)
    optimizer_bytes = sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    )
    flops = 6 * matmul_params(model) * batch * seq + attention_flops(model, batch, seq)
    profiled = {}
    if cuda and profile_steps:
        try:  # a profiler failure must not cost the timing row
            profiled = kernel_profile(step, profile_steps)
        except Exception as exc:
            profiled = {"profile_error": f"{type(exc).__name__}: {exc}"[:200]}
    return {
        **profiled,
        "step_ms": stats["ms_median"],
        "step_ms_p10": stats["ms_p10"],
        "step_ms_p90": stats["ms_p90"],
        "tokens_per_s": batch * seq / (stats["ms_median"] / 1e3),
        "peak_mem_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        "optimizer_state_bytes": optimizer_bytes,
        "trainable_with_head": sum(p.numel() for p in params),
        "warmup_s": round(warmup_s, 2),
        "full_ft_flops_per_step": flops,
        "step_times_ms": times,
    }


def attention_flops(model: nn.Module, batch: int, seq: int) -> int:
    """QK^T and AV of every layer, forward and backward: 12 L d T^2 per sequence."""
    config = model.config
    return 12 * config.num_hidden_layers * config.hidden_size * seq * seq * batch


def matmul_ceiling_tflops(device: torch.device, size: int = 8192, reps: int = 20) -> float | None:
    """Measured bf16 matrix-multiply throughput of the GPU (None on the CPU)."""
    if device.type != "cuda":
        return None
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    end.synchronize()
    return 2 * size**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12


def one_configuration(model_name, seq, method, impl, mode, settings: dict) -> dict:
    """Build, train for warm-up + timed steps, and measure one row of the table."""
    dev = settings["device"]
    if mode.startswith("compiled"):
        torch._dynamo.reset()  # each configuration compiles afresh
    model, to_save, trainable = build(
        model_name, method, impl, dev, settings["seed"], settings["lora"], settings["adapter_rank"]
    )
    try:
        result = measure(
            model, seq, settings["batch_size"], settings["steps"], settings["warmup"], dev,
            mode, settings["seed"], settings.get("profile_steps", 0),
            settings.get("compile_scope", "model"),
        )  # fmt: skip
        saved = bench.serialized_bytes(to_save())
    finally:
        del model, to_save
        if mode.startswith("compiled"):
            torch._dynamo.reset()
        bench.free_memory()
    row = {
        "model": model_name,
        "seq_len": seq,
        "batch_size": settings["batch_size"],
        "method": method,
        "impl": impl + ("" if mode == "eager" else f"-{mode}"),
        **result,
        "trainable": trainable,
        "saved_bytes": saved,
        "device": bench.device_name(dev),
    }
    for key in ("step_ms", "step_ms_p10", "step_ms_p90", "tokens_per_s"):
        row[key] = round(row[key], 3)
    return row


def mfu_line(row: dict, ceiling: float | None) -> str:
    """Model FLOP/s of a full fine-tuning row, and its share of the matmul ceiling."""
    tflops = row["full_ft_flops_per_step"] / (row["step_ms"] / 1e3) / 1e12
    line = f"{row['model']} seq {row['seq_len']} full_ft {row['impl']}: {tflops:.3g} TFLOP/s"
    if ceiling:
        line += f" = {tflops / ceiling:.0%} of the measured bf16 matmul ceiling"
    return line + " (model FLOPs: 6 N per token + attention 12 L d T^2 per sequence)"


def row_line(row: dict) -> str:
    return (
        f"{row['model']} seq {row['seq_len']} {row['method']:9s} {row['impl']:18s} "
        f"{row['step_ms']:9.2f} ms/step {row['tokens_per_s']:12,.0f} tok/s "
        f"peak {row['peak_mem_bytes'] or 0:,} B saved {row['saved_bytes']:,} B"
        + (
            f" | {row['kernels_per_step']:.0f} kernels, GPU busy {row['gpu_busy_ms']:.1f} ms/step"
            if row.get("kernels_per_step") is not None
            else ""
        )
    )


def pool_rounds(rounds: list[dict]) -> dict:
    """One row from a configuration's rounds: step statistics over all their steps, the largest
    peak memory (each round is built fresh, so they agree to within allocator noise)."""
    row = dict(rounds[0])
    times = [t for r in rounds for t in r["step_times_ms"]]
    stats = bench.percentiles(times)
    row |= {"step_ms": stats["ms_median"], "step_ms_p10": stats["ms_p10"]}
    row |= {"step_ms_p90": stats["ms_p90"], "step_times_ms": times, "rounds": len(rounds)}
    row["tokens_per_s"] = row["batch_size"] * row["seq_len"] / (stats["ms_median"] / 1e3)
    row["round_medians_ms"] = [round(r["step_ms"], 3) for r in rounds]
    peaks = [r["peak_mem_bytes"] for r in rounds if r["peak_mem_bytes"] is not None]
    row["peak_mem_bytes"] = max(peaks) if peaks else None
    for key in ("step_ms", "step_ms_p10", "step_ms_p90", "tokens_per_s"):
        row[key] = round(row[key], 3)
    return row


def run_efficiency(
    models=MODELS,
    seq_lens=(128, 512),
    batch_size: int = 32,
    methods=METHODS,
    peft: bool = True,
    modes=("eager",),
    steps: int = 20,
    warmup: int = 5,
    device: str = "auto",
    lora: dict | None = None,
    adapter_rank: int = ADAPTER_RANK,
    seed: int = 0,
    rounds: int = 1,
    profile_steps: int = 0,
    compile_scope: str = "model",
    log=print,
) -> dict:
    """Every model x length x mode x (method, impl); returns rows, notes and the MFU lines.

    With `rounds` > 1 the configurations of one (model, length, mode) are measured in turn,
    each round starting one configuration further along, and a row pools its rounds' steps:
    drift over the minutes a group takes (host CPU load, clocks) then hits every configuration
    alike, where one block of steps each left the launch-bound length-128 rows up to 40% apart
    between two runs. A configuration that fails (out of memory, a compile error) is left out
    with a note, so one failure does not cost the other measurements of a GPU session.
    """
    dev = bench.resolve_device(device)
    settings = {"device": dev, "seed": seed, "lora": lora or LORA, "adapter_rank": adapter_rank}
    settings |= {"batch_size": batch_size, "steps": steps, "warmup": warmup}
    settings |= {"profile_steps": profile_steps, "compile_scope": compile_scope}
    notes, rows = [], []
    runs = [(m, "lora_exp") for m in methods if bench.method_available(m)]
    notes += [
        f"{m}: method not registered yet, skipped" for m in methods if (m, "lora_exp") not in runs
    ]
    if peft:
        runs.append(("lora", "peft"))
    ceiling = matmul_ceiling_tflops(dev)
    for model_name in models:
        for seq in seq_lens:
            for mode in modes:
                measured: dict[tuple, list[dict]] = {run: [] for run in runs}
                failed: set[tuple] = set()
                for round_ in range(rounds):
                    start = round_ % len(runs)
                    for method, impl in [*runs[start:], *runs[:start]]:
                        if (method, impl) in failed:
                            continue
                        try:
                            row = one_configuration(model_name, seq, method, impl, mode, settings)
                        except UserError:
                            raise
                        except Exception as exc:  # keep the session's other rows
                            note = f"{model_name} seq {seq} {method} {impl} {mode}: failed, "
                            first = (str(exc).splitlines() or [""])[0][:200]
                            notes.append(note + f"{type(exc).__name__}: {first}")
                            log(notes[-1])
                            failed.add((method, impl))
                            bench.free_memory()
                            continue
                        measured[(method, impl)].append(row)
                        log(f"round {round_ + 1}/{rounds} " + row_line(row))
                for run in runs:
                    if measured[run] and run not in failed:
                        rows.append(pool_rounds(measured[run]))
                        if rounds > 1:
                            log("pooled      " + row_line(rows[-1]))
    mfu = [mfu_line(r, ceiling) for r in rows if r["method"] == "full_ft"]
    return {"rows": rows, "notes": notes, "mfu": mfu, "matmul_tflops": ceiling, "device": dev}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lora_exp.measure.efficiency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="conf/model names")
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--no-peft", action="store_true", help="leave out PEFT's LoRA")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["eager"],
        choices=list(MODES),
        help="compiled: torch.compile of the model (impl suffix -compiled); graphed: the "
        "training step as one CUDA graph (impl suffix -graphed, GPU only); compiled-graphed: "
        "the compiled step captured the same way (-compiled-graphed, GPU only)",
    )
    parser.add_argument(
        "--compile-scope", default="model", choices=list(SCOPES),
        help="compiled mode: the whole model, or each repeated block (lora_exp/compiling.py)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measure each (model, length, mode) group this many times in rotating order",
    )  # fmt: skip
    parser.add_argument(
        "--profile-steps", type=int, default=3,
        help="after timing, profile this many steps for kernels and GPU time per step (GPU only)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--lora-rank", type=int, default=LORA["rank"])
    parser.add_argument("--lora-alpha", type=float, default=LORA["alpha"])
    parser.add_argument("--adapter-rank", type=int, default=ADAPTER_RANK)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results") / ARTIFACT)
    parser.add_argument("--no-record", action="store_true", help="no run record in OUT/runs")
    args = parser.parse_args(argv)
    lora = {**LORA, "rank": args.lora_rank, "alpha": args.lora_alpha}
    started = time.time()
    try:
        result = run_efficiency(
            args.models, args.seq_lens, args.batch_size, args.methods, not args.no_peft,
            args.modes, args.steps, args.warmup, args.device, lora, args.adapter_rank, args.seed,
            args.rounds, args.profile_steps, args.compile_scope,
        )  # fmt: skip
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    cuda = result["device"].type == "cuda"
    config = {
        "benchmark": ARTIFACT, "model": {"name": ",".join(args.models)}, "models": args.models,
        "seq_lens": args.seq_lens, "batch_size": args.batch_size, "methods": args.methods,
        "peft": not args.no_peft, "modes": args.modes, "steps": args.steps, "rounds": args.rounds,
        "profile_steps": args.profile_steps, "compile_scope": args.compile_scope,
        "warmup": args.warmup, "device": args.device, "autocast": cuda, "fused_adamw": cuda,
        "lora": lora, "adapter_rank": args.adapter_rank, "seed": args.seed,
    }  # fmt: skip
    for path in write_outputs(args.out, result, config, started, not args.no_record):
        print(path)
    return 0


def write_outputs(out: Path, result: dict, config: dict, started: float, record: bool) -> list:
    """table.csv, table.md and (with `record`) runs/<stamp>/record.json."""
    from lora_exp.measure.tables import efficiency_markdown

    extra = {
        "efficiency": result["rows"],
        "notes": result["notes"],
        "mfu": result["mfu"],
        "matmul_tflops": result["matmul_tflops"],
    }
    markdown = efficiency_markdown(result, config)
    return bench.write_outputs(
        out, ARTIFACT, COLUMNS, result, markdown, config, extra, started, record
    )


if __name__ == "__main__":
    sys.exit(main())
