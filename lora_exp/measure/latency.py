"""Inference latency of one forward pass: the paper's Table 1 (Hu et al. 2021, Sec. 3, App. B).

    python -m lora_exp.measure.latency --protocol paper --out results/table1_latency
    python -m lora_exp.measure.latency --model tiny-gpt2 --sizes 2x16 --trials 5 --out DIR

The paper's protocol: GPT-2 medium (random weights: weights do not change latency), one forward
pass at (batch, seq) = (32, 512), (16, 256), (1, 128), 100 trials. Variants:

* base: the stock model (the paper's "Fine-Tune/LoRA" row).
* lora_merged: LoRA with W0 + (alpha/r) B A folded in and its modules removed
  (`merge_and_unload`): exactly the base architecture, so it must cost exactly the base latency.
* lora_unmerged: our LoRALinear computing W0 x + (alpha/r) B A x at every call.
* adapter_l, adapter_h: bottleneck adapters sized to Table 1's |Θ| (see `adapter_rank`).
* prefix_layer: l_p + l_i extra positions in every block (conf/method/prefix_layer.yaml).
* peft_unmerged (optional, `--variants`): PEFT's LoRA on the same modules.

LoRA is r=4, alpha=32 on W_q, W_v (the paper's GPT-2 setting, Table 11), with B random so that
merging changes the weights; the merged and unmerged outputs are compared and the difference is
recorded. The variants are interleaved trial by trial (`timing.interleave`). On a GPU each
variant is timed eagerly (CUDA events) and as a replayed CUDA graph (no launch overhead); on the
CPU only eagerly (perf_counter). Output: `table.csv` (one row per setting x variant x mode),
`table.md` (the paper's figures beside ours) and a run record in `runs/`.

`measure_inference_latency` times a trained model at the end of a run (merged where it can be).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lora_exp.engine.capture_path import one_attention_path_for_capture
from lora_exp.errors import UserError
from lora_exp.measure import bench
from lora_exp.measure.timing import Runner, Timer, default_timer, interleave
from lora_exp.measure.variants import LORA, adapter_rank, build_variants, model_dims

ARTIFACT = "table1_latency"
COLUMNS = ["batch_size", "seq_len", "variant", "mode", "ms_median", "ms_p10", "ms_p90"]
COLUMNS += ["overhead_pct", "device"]
VARIANTS = ("base", "lora_merged", "lora_unmerged", "adapter_l", "adapter_h", "prefix_layer")
OPTIONAL_VARIANTS = ("peft_unmerged", "base_copy")
# Table 1: (batch, seq, |Θ| of each adapter variant). The 11M columns aim at 11.09M, the paper's
# exact |Θ| for GPT-2 medium AdapterL and AdapterH in Table 3, which Table 1 rounds to 11M.
PAPER_SIZES = ((32, 512, 500_000), (16, 256, 11_090_000), (1, 128, 11_090_000))
GRAPH_UNSAFE = {
    "prefix_layer": "its input hook reads `int(positions.max())` (a host sync), which CUDA-graph "
    "capture forbids (lora_exp/methods/prefix.py, PrefixTokens.rewrite_inputs)",
}


def capture_graph(forward, model: nn.Module) -> tuple[torch.cuda.CUDAGraph, object]:
    """Record `forward()` (a call of `model`) into a CUDA graph after warming it up on a side
    stream, warm-up and capture on one attention path (`engine/capture_path.py`).

    Returns:
        (graph, the static output): keep both alive while the graph is replayed.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with one_attention_path_for_capture(model):
        with torch.cuda.stream(stream):
            for _ in range(3):
                forward()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = forward()
    return graph, output


def max_abs_diff(a: nn.Module, b: nn.Module, ids: torch.Tensor) -> float:
    return float((a(input_ids=ids).logits.float() - b(input_ids=ids).logits.float()).abs().max())


@torch.no_grad()
def measure_setting(models: dict, ids, trials, warmup, device, graphs, timer) -> tuple:
    """Rows for one (batch, seq): every variant x mode, interleaved; plus notes and checks."""
    notes, checks, runners, keep = [], {}, [], []
    for name, (model, _) in list(models.items()):  # one forward each: a failure drops the variant
        try:
            model(input_ids=ids)
        except Exception as exc:
            if name == "base":
                raise
            notes.append(f"{name}: forward pass failed, skipped ({type(exc).__name__}: {exc})")
            del models[name]
    if "lora_merged" in models and "lora_unmerged" in models:
        checks["lora_merged_vs_unmerged_max_abs_diff"] = max_abs_diff(
            models["lora_merged"][0],
            models["lora_unmerged"][0],
            ids[:1],  # one row is enough
        )
    for name, (model, _) in models.items():
        runners.append(Runner((name, "eager"), lambda m=model: m(input_ids=ids)))
    if graphs:
        for name, (model, _) in models.items():
            if name in GRAPH_UNSAFE:
                notes.append(f"{name}: no CUDA-graph timing, {GRAPH_UNSAFE[name]}")
                continue
            try:
                graph, output = capture_graph(lambda m=model: m(input_ids=ids), model)
            except Exception as exc:  # a model that cannot be captured keeps its eager row
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize()
                notes.append(f"{name}: CUDA-graph capture failed ({type(exc).__name__}: {exc})")
                continue
            keep.append((graph, output))
            runners.append(Runner((name, "graph"), graph.replay))
    times = interleave(runners, trials, warmup, timer or default_timer(device))
    del keep
    return times, notes, checks


def run_latency(
    model_name: str,
    sizes: list[tuple[int, int, int | None]],
    variants=VARIANTS,
    trials: int = 100,
    warmup: int = 10,
    device: str = "auto",
    dtype: str = "auto",
    graphs: bool = True,
    head: str = "auto",
    adapter_rank_default: int = 8,
    seed: int = 0,
    timer: Timer | None = None,
    log=print,
) -> dict:
    """Measure every (batch, seq, budget) in `sizes`; returns rows, per-variant info, notes.

    Args:
        sizes: (batch, seq, adapter |Θ| budget or None for `adapter_rank_default`).
        timer: injected by tests; default CUDA events on a GPU, perf_counter on the CPU.
    """
    from lora_exp.models import get_family

    dev = bench.resolve_device(device)
    dtype = ("fp16" if dev.type == "cuda" else "fp32") if dtype == "auto" else dtype
    model_cfg = bench.model_config(model_name)
    family = get_family(model_cfg.family)
    head = ("lm" if family.decoder else "cls") if head == "auto" else head
    graphs = graphs and dev.type == "cuda"
    notes = [] if dev.type == "cuda" else ["CUDA graphs need a GPU: on the CPU only eager timings"]
    rows, info, checks = [], {}, {}
    for batch, seq, budget in sizes:
        base = bench.build_model(model_cfg, head, dev, bench.DTYPES[dtype], seed).eval()
        d, layers = model_dims(base)
        ranks = {
            v: adapter_rank(v, d, layers, budget) if budget else adapter_rank_default
            for v in ("adapter_l", "adapter_h")
        }
        models, skipped = build_variants(base, family, variants, ranks, seed)
        ids = bench.random_batch(base, batch, seq, dev, seed)
        times, more, setting_checks = measure_setting(
            models, ids, trials, warmup, dev, graphs, timer
        )
        notes += [n for n in skipped + more if n not in notes]
        checks[f"{batch}x{seq}"] = setting_checks
        stats = {key: bench.percentiles(samples) for key, samples in times.items()}
        for (name, mode), s in stats.items():
            base_ms = stats[("base", mode)]["ms_median"] if ("base", mode) in stats else None
            overhead = 0.0 if name == "base" else (s["ms_median"] / base_ms - 1) * 100
            variant_info = models[name][1]
            info[f"{batch}x{seq}/{name}"] = variant_info
            rows.append(
                {
                    "batch_size": batch,
                    "seq_len": seq,
                    "variant": name,
                    "mode": mode,
                    **{k: round(v, 4) for k, v in s.items() if k != "n"},
                    "overhead_pct": round(overhead, 2) if base_ms else None,
                    "device": bench.device_name(dev),
                    "rank": variant_info["rank"],
                    "adapter_params": variant_info["params"],
                    "trials": s["n"],
                    # every trial, in trial order: trial t of each variant ran in the same
                    # rotation as trial t of the base, the pairs the claims' interval resamples
                    "ms_trials": [round(t, 4) for t in times[(name, mode)]],
                }
            )
            log(
                f"{batch}x{seq} {name:14s} {mode:5s} median {s['ms_median']:9.3f} ms "
                f"[{s['ms_p10']:.3f}, {s['ms_p90']:.3f}] overhead {rows[-1]['overhead_pct']}%"
            )
        del models, base
        bench.free_memory()
    return {
        "rows": rows,
        "info": info,
        "notes": notes,
        "checks": checks,
        "dtype": dtype,
        "head": head,
    }


@torch.no_grad()
def measure_inference_latency(
    model: nn.Module,
    method,
    batch_size: int = 1,
    seq_len: int = 128,
    trials: int = 100,
    warmup: int = 10,
    autocast_dtype: torch.dtype | None = None,
    timer: Timer | None = None,
) -> dict:
    """Latency of one forward pass of a trained model, merged where the method can merge.

    For the end of a training run: the model is put in eval mode and merged (`method.merge`, which
    keeps W0 so the unmerge afterwards is exact); its training mode and merge state are restored.

    Returns:
        {"latency/ms": median, "latency/ms_median", "latency/ms_p10", "latency/ms_p90",
         "latency/batch_size", "latency/seq_len", "latency/trials", "latency/merged"}.
    """
    device = next(model.parameters()).device
    was_training, merged = model.training, bool(getattr(method, "can_merge", False))
    model.eval()
    if merged:
        method.merge(model)
    try:
        ids = bench.random_batch(model, batch_size, seq_len, device, seed=0)
        enabled = autocast_dtype is not None

        def forward():
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=enabled):
                return model(input_ids=ids)

        runner = Runner(("model", "eager"), forward)
        samples = interleave([runner], trials, warmup, timer or default_timer(device))[runner.key]
    finally:
        if merged:
            method.unmerge(model)
        model.train(was_training)
    stats = bench.percentiles(samples)
    return {
        "latency/ms": stats["ms_median"],
        **{f"latency/{k}": stats[k] for k in ("ms_median", "ms_p10", "ms_p90")},
        "latency/batch_size": batch_size,
        "latency/seq_len": seq_len,
        "latency/trials": trials,
        "latency/merged": merged,
    }


def parse_size(text: str) -> tuple[int, int, None]:
    """'32x512' -> (32, 512, None)."""
    try:
        batch, seq = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must be BATCHxSEQ, e.g. 32x512: {text!r}") from exc
    return batch, seq, None


def write_outputs(out: Path, result: dict, config: dict, started: float, record: bool) -> list:
    """table.csv, table.md and (with `record`) runs/<stamp>/record.json."""
    from lora_exp.measure.tables import latency_markdown

    extra = {
        "latency": result["rows"],
        "params": result["info"],
        "checks": result["checks"],
        "notes": result["notes"],
    }
    markdown = latency_markdown(result, config, bench.read_paper_csv(ARTIFACT))
    return bench.write_outputs(
        out, ARTIFACT, COLUMNS, result, markdown, config, extra, started, record
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lora_exp.measure.latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--protocol",
        choices=["paper", "custom"],
        default="custom",
        help="paper: GPT-2 medium at Table 1's sizes and adapter |Θ|, 100 trials",
    )
    parser.add_argument("--model", help="a conf/model name (default gpt2-medium)")
    parser.add_argument("--sizes", nargs="+", type=parse_size, help="BATCHxSEQ ... (e.g. 2x16)")
    parser.add_argument("--trials", type=int, help="timed trials per variant and mode (100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS + OPTIONAL_VARIANTS)
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *bench.DTYPES],
        help="auto: fp16 on a GPU, fp32 on the CPU",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--head",
        default="auto",
        choices=["auto", "lm", "cls"],
        help="auto: lm for GPT-2 (the paper's code), cls otherwise",
    )
    parser.add_argument("--no-graphs", action="store_true", help="eager timings only")
    parser.add_argument(
        "--adapter-rank",
        type=int,
        default=8,
        help="adapter bottleneck r outside the paper protocol",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results") / ARTIFACT)
    parser.add_argument("--no-record", action="store_true", help="no run record in OUT/runs")
    args = parser.parse_args(argv)
    paper = args.protocol == "paper"
    model = args.model or "gpt2-medium"
    if paper and model != "gpt2-medium":
        parser.error("--protocol paper measures gpt2-medium; use --protocol custom for others")
    if paper and args.sizes:
        parser.error("--protocol paper fixes the sizes; use --protocol custom with --sizes")
    sizes = list(PAPER_SIZES) if paper else args.sizes or [(b, s, None) for b, s, _ in PAPER_SIZES]
    trials = args.trials or 100
    variants = tuple(args.variants or VARIANTS)
    started = time.time()
    try:
        result = run_latency(
            model,
            sizes,
            variants,
            trials,
            args.warmup,
            args.device,
            args.dtype,
            not args.no_graphs,
            args.head,
            args.adapter_rank,
            args.seed,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    config = {
        "benchmark": ARTIFACT,
        "protocol": args.protocol,
        "model": {"name": model},
        "sizes": [list(s) for s in sizes],
        "variants": list(variants),
        "trials": trials,
        "warmup": args.warmup,
        "dtype": result["dtype"],
        "device": args.device,
        "head": result["head"],
        "graphs": not args.no_graphs,
        "lora": LORA,
        "adapter_rank": args.adapter_rank,
        "seed": args.seed,
    }
    for path in write_outputs(args.out, result, config, started, not args.no_record):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
