"""Markdown tables of the two benchmarks, with the paper's figures and claims beside ours."""

from __future__ import annotations

from lora_exp.measure.params import format_count

GIB = 1024**3

# What the lora_exp rows store (run_plan.py does the same under bf16-mixed; frozen_precision.py).
AUTOCAST_NOTE = (
    "bf16 autocast, trainable weights fp32; lora_exp stores frozen projection weights in bf16 "
    "(exact under autocast), PEFT keeps them fp32"
)


def _bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; binary units, as GPU memory is reported."""
    for unit, size in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n} B"


def _ms(row: dict) -> str:
    return f"{row['ms_median']:.2f} [{row['ms_p10']:.2f}, {row['ms_p90']:.2f}]"


def _pct(value) -> str:
    return "" if value is None or value == "" else f"{float(value):+.1f}%"


def latency_markdown(result: dict, config: dict, paper: list[dict]) -> str:
    """Table 1: one line per setting x variant x mode; the paper's mean and overhead beside."""
    figures = {
        (int(p["batch_size"]), int(p["seq_len"]), p["method"].replace("none", "base")): p
        for p in paper
    }
    lines = [
        f"### Table 1: inference latency, {config['model']['name']}, one forward pass",
        "",
        "| batch × seq | variant | r | \\|Θ\\| | mode | ms: median [p10, p90] | overhead "
        "| paper ms (mean) | paper overhead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        p = figures.get((row["batch_size"], row["seq_len"], row["variant"]), {})
        params = row["adapter_params"] if row["variant"] != "base" else 0
        lines.append(
            f"| {row['batch_size']}×{row['seq_len']} | {row['variant']} | {row['rank'] or ''} "
            f"| {format_count(params) if params else ''} | {row['mode']} | {_ms(row)} "
            f"| {_pct(row['overhead_pct'])} | {p.get('ms_mean', '')} "
            f"| {_pct(p.get('overhead_pct'))} |"
        )
    device = result["rows"][0]["device"] if result["rows"] else "?"
    notes = [
        f"device: {device}; dtype {result['dtype']}; {config['trials']} trials per variant and "
        f"mode after {config['warmup']} warm-up rounds, all variants and modes interleaved trial "
        "by trial; overhead = median / median of `base` in the same mode - 1.",
        "eager: CUDA events around `model(input_ids)` from an idle GPU (perf_counter on the "
        "CPU), Python and kernel-launch time included; graph: the same forward replayed as a "
        "CUDA graph (launch overhead removed).",
        "paper: NVIDIA Quadro RTX8000, mean of 100 trials; its first row is 'Fine-Tune/LoRA' "
        "(= base). Milliseconds on different GPUs do not compare; overheads do.",
        "lora_merged is `merge_and_unload` (W0 + (α/r) B A, LoRA modules removed): the base "
        "architecture with other weights. lora_unmerged computes B A x at every call. "
        f"LoRA r={config['lora']['rank']}, α={config['lora']['alpha']} on "
        f"{','.join(config['lora']['targets'])} (Table 11).",
        "adapter r: the bottleneck whose |Θ| (Sec. 5.1 formula; the table shows the count "
        "measured on the model) is closest to Table 1's: 0.5M, and 11M read as 11.09M, Table 3's "
        "exact |Θ| of GPT-2 medium AdapterL/AdapterH (Table 1 gives one |Θ| per column for both)."
        if any(size[2] for size in config.get("sizes", []))
        else f"adapter r: {config.get('adapter_rank')} (fixed; the paper protocol sizes the "
        "adapters to Table 1's |Θ|).",
        f"head: {config['head']} (the paper's GPT-2 code is a language model: `lm`).",
    ]
    for setting, checks in result["checks"].items():
        for name, value in checks.items():
            notes.append(f"check {setting}: {name} = {value:.3g}")
    notes += result["notes"]
    return "\n".join([*lines, "", *[f"- {n}" for n in notes]]) + "\n"


EFFICIENCY_REFERENCE = [
    "paper (GPT-3 175B, Sec. 4.2): LoRA trains 25% faster than full fine-tuning (43.1 vs 32.5 "
    "tokens/s per V100), VRAM 1.2 TB -> 350 GB, checkpoint 350 GB -> 35 MB (fp16).",
    "reference on an H200 (issue 5; roberta-large, batch 32, bf16 autocast, fused AdamW, "
    "eager): full_ft 62.0 ms/step at 128 and 103.3 ms at 512; PEFT LoRA r=8 on q,v 68.0 and "
    "88.2 ms. torch.compile: full_ft 42.9 / 117.1 ms, PEFT LoRA 33.4 ms at 128.",
]


def launch_bound_lines(rows: list[dict]) -> list[str]:
    """Kernels and GPU time per step beside the step time (rows profiled on a GPU only)."""
    profiled = [r for r in rows if r.get("kernels_per_step") is not None]
    if not profiled:
        return []
    lines = [
        "",
        "GPU time per step (torch.profiler: the kernels' own time, summed): where it is well "
        "below the step time the GPU waits for the host to launch work, and the step's length "
        "follows the number of kernels, not the FLOPs.",
        "",
        "| model | seq | method | impl | kernels/step | GPU busy ms/step | ms/step "
        "| GPU busy share |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in profiled:
        lines.append(
            f"| {r['model']} | {r['seq_len']} | {r['method']} | {r['impl']} "
            f"| {r['kernels_per_step']:,.0f} | {r['gpu_busy_ms']:.1f} | {r['step_ms']:.1f} "
            f"| {r['gpu_busy_ms'] / r['step_ms']:.0%} |"
        )
    return lines


def efficiency_markdown(result: dict, config: dict) -> str:
    """Step time, throughput, memory and checkpoint size, with ratios to full fine-tuning."""
    rows = result["rows"]
    full = {
        (r["model"], r["seq_len"], r["impl"].replace("lora_exp", "")): r
        for r in rows
        if r["method"] == "full_ft"
    }
    lines = [
        "### Training efficiency: step time, throughput, memory, checkpoint size",
        "",
        "| model | seq | method | impl | ms/step: median [p10, p90] | tokens/s | × full_ft "
        "| peak memory | × full_ft | optimizer state | trainable | saved |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        suffix = r["impl"].removeprefix("lora_exp").removeprefix("peft")
        ref = full.get((r["model"], r["seq_len"], suffix))
        speed = f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}" if ref else ""
        mem = r["peak_mem_bytes"]
        mem_ratio = (
            f"{mem / ref['peak_mem_bytes']:.2f}" if ref and mem and ref["peak_mem_bytes"] else ""
        )
        lines.append(
            f"| {r['model']} | {r['seq_len']} | {r['method']} | {r['impl']} "
            f"| {r['step_ms']:.1f} [{r['step_ms_p10']:.1f}, {r['step_ms_p90']:.1f}] "
            f"| {r['tokens_per_s']:,.0f} | {speed} | {_bytes(mem) if mem else 'n/a'} "
            f"| {mem_ratio} | {_bytes(r['optimizer_state_bytes'])} "
            f"| {format_count(r['trainable'])} | {_bytes(r['saved_bytes'])} |"
        )
    lines += launch_bound_lines(rows)
    device = rows[0]["device"] if rows else "?"
    notes = [
        f"device: {device}; batch {config['batch_size']}; "
        f"{AUTOCAST_NOTE if config['autocast'] else 'fp32, no autocast'}; "
        f"AdamW ({'fused' if config['fused_adamw'] else 'default'}); {config['steps']} timed "
        f"steps after {config['warmup']} warm-up steps"
        + (
            f", in each of {config['rounds']} rounds over the configurations of a (model, "
            "length, mode) in rotating order, pooled (ms/step: median [p10, p90] of all steps)"
            if config.get("rounds", 1) > 1
            else ""
        )
        + "; a step is forward, backward, optimizer step and zero_grad; each configuration is "
        "built fresh and measured alone.",
        "peak memory: torch.cuda.max_memory_allocated over the timed steps (weights, gradients, "
        "optimizer state and activations); n/a on the CPU. trainable: the paper's count (head "
        "excluded). saved: `state_to_save` (PEFT: `get_peft_model_state_dict`) as a "
        "safetensors file, fp32, head included.",
        f"methods: LoRA r={config['lora']['rank']}, α={config['lora']['alpha']} on "
        f"{','.join(config['lora']['targets'])}; adapter_h r={config['adapter_rank']}; PEFT: "
        "LoraConfig with the same r, α, modules and dropout 0 (on GPT-2 PEFT adapts the whole "
        "fused c_attn with one rank-r update, our LoRA one update per q and v slice).",
        "impl: `lora_exp`/`peft` eager; `-compiled`: torch.compile of "
        + (
            "each transformer block (regional compilation, lora_exp/compiling.py)"
            if config.get("compile_scope") == "blocks"
            else "the model"
        )
        + "; `-graphed`: the whole step (forward, backward, AdamW) captured once and replayed as "
        "one CUDA graph (engine.step.TrainStep; its peak memory is taken over the warm-up "
        "steps and the capture, since a replay allocates nothing); `-compiled-graphed`: the "
        "compiled step captured the same way. These are the training run's own step "
        "(`trainer.step`): `python run.py` on one GPU replays it as CUDA graphs by default "
        "(`graphed`, with batches padded to a few length buckets), eager on CPU and under "
        "DDP/FSDP; results/training_path measures the whole run. See "
        "results/efficiency/targets.md for which mode is fastest where.",
        *EFFICIENCY_REFERENCE,
    ]
    if result.get("matmul_tflops"):
        notes.append(f"measured bf16 matmul ceiling: {result['matmul_tflops']:.0f} TFLOP/s")
    for line in result.get("mfu", []):
        notes.append(line)
    notes += result["notes"]
    return "\n".join([*lines, "", *[f"- {n}" for n in notes]]) + "\n"
