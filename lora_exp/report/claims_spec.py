"""The paper's claims as data: which cells each claim compares, how, and where its evidence lives.

    python -m lora_exp.report claims      # claims.py turns this into results/claims.md

Claims (a)-(c) rest on trained runs: each is a list of `Comparison`s of two cells (a − b), each
cell named by its artifact (results/<artifact>/runs) and filters on the report's keys (method,
task, rank, targets). Task AVG is the per-seed mean over AVG_TASKS (the embedded Table 2 average).
The kinds and the margin are verdicts.py's. The paper's compound sentences are split into these
precise comparisons; claims (d)-(f) are measured differently (checkpoints, benchmarks) and their
comparisons are built in claims_measured.py; here they only have their text, setup and links.

Links are relative to results/ (where claims.md lives); readme.py rebases them for the README.
"""

from __future__ import annotations

from dataclasses import dataclass

AVG = "avg"
AVG_TASKS = ("tweet_sentiment", "bbc_news")


@dataclass(frozen=True)
class Cell:
    """One table cell: its artifact and the key values that select its runs."""

    artifact: str
    method: str
    task: str
    rank: int | None = None
    targets: str | None = None  # canonical, e.g. "q,v"

    @property
    def label(self) -> str:
        what = self.method if self.method != "lora" else "LoRA"
        if self.targets:
            what += f" {self.targets}"
        if self.rank is not None and self.method == "lora":
            what += f" r={self.rank}"
        return what


@dataclass(frozen=True)
class Comparison:
    """a − b judged by `kind` (better | matches | at_least) with the verdicts.py margin."""

    a: Cell
    b: Cell
    kind: str

    @property
    def label(self) -> str:
        task = "average" if self.a.task == AVG else self.a.task
        return f"{self.a.label} vs {self.b.label}, {task}"


@dataclass(frozen=True)
class Claim:
    key: str
    paper: str
    setup: str
    links: tuple[tuple[str, str], ...]
    comparisons: tuple[Comparison, ...] = ()
    source: str = "runs"  # runs | section7 | latency | efficiency (claims_measured.py)
    note: str = ""


def _methods() -> tuple[Comparison, ...]:
    lora = {t: Cell("embedded_methods", "lora", t, 8, "q,v") for t in (*AVG_TASKS, AVG)}
    out = [
        Comparison(lora[t], Cell("embedded_methods", "full_ft", t), "matches")
        for t in (*AVG_TASKS, AVG)
    ]
    for other in ("adapter_h", "adapter_p", "adapter_d", "bitfit"):
        out += [
            Comparison(lora[t], Cell("embedded_methods", other, t), "at_least")
            for t in (*AVG_TASKS, AVG)
        ]
    return tuple(out)


def _ranks() -> tuple[Comparison, ...]:
    cell = lambda r, t: Cell("embedded_rank", "lora", "tweet_sentiment", r, t)  # noqa: E731
    return tuple(
        Comparison(cell(small, targets), cell(64, targets), "matches")
        for targets in ("q,v", "q,k,v,o")
        for small in (1, 4)
    )


def _weight_types() -> tuple[Comparison, ...]:
    cell = lambda t, r: Cell("embedded_weight_types", "lora", "tweet_sentiment", r, t)  # noqa: E731
    more_types = [
        Comparison(cell("q,v", 4), cell(single, 8), "better") for single in ("q", "k", "v", "o")
    ]
    more_types += [
        Comparison(cell("q,k,v,o", 2), cell(single, 8), "better") for single in ("q", "k", "v", "o")
    ]
    # "q alone is the weakest": every other cell beats q r=8 (q,v r=4 and q,k,v,o r=2 vs q r=8
    # are already above, so they are not repeated)
    q_weakest = [
        Comparison(cell(t, r), cell("q", 8), "better")
        for t, r in (("k", 8), ("v", 8), ("o", 8), ("q,k", 4))
    ]
    return tuple(more_types + q_weakest)


EMBEDDED = "MiniLM (all-MiniLM-L6-v2, 22.6M parameters)"
CLAIMS = (
    Claim(
        "a",
        "LoRA with ~0.1-1% of the parameters matches full fine-tuning and is at least as good as "
        "other PEFT methods at a comparable budget (Table 2)",
        f"{EMBEDDED}, LoRA r=8 q,v (73.7K trained, 0.33%); tweet_sentiment + bbc_news",
        (
            ("table", "embedded_methods/table.md"),
            ("val", "embedded_methods/val/table.md"),
            ("figure", "embedded_methods/score_vs_params.png"),
        ),
        _methods(),
    ),
    Claim(
        "b",
        "a very small rank suffices (Table 6: r=1 competitive on q,v)",
        f"{EMBEDDED}, LoRA on tweet_sentiment",
        (
            ("table", "embedded_rank/table.md"),
            ("val", "embedded_rank/val/table.md"),
            ("figure", "embedded_rank/rank_ablation.png"),
        ),
        _ranks(),
    ),
    Claim(
        "c",
        "at a fixed budget, more weight types at a lower rank beat one type at a higher rank; q "
        "alone is the weakest (Table 5)",
        f"{EMBEDDED}, LoRA on tweet_sentiment, budget 8 ranks-worth (18,432 params)",
        (
            ("table", "embedded_weight_types/table.md"),
            ("val", "embedded_weight_types/val/table.md"),
            ("figure", "embedded_weight_types/weight_types.png"),
        ),
        _weight_types(),
    ),
    Claim(
        "d",
        "Sec. 7: the top directions of A at a small and a large rank overlap (φ > 0.5 for the "
        "top direction, Fig. 3); ΔW amplifies directions of W that W does not emphasise, by "
        "~21.5 at r=4 and ~1.9 at r=64 (Table 7)",
        "MiniLM LoRA q,v, tweet_sentiment; the r=4, r=8 and r=64 checkpoints of every seed "
        "present (GPU runs, bf16, gradient norm clipped at 1; devices in the table); φ r=8 vs "
        "r=64: one pair per seed with both ranks; φ seed vs seed at r=64: "
        "disjoint seed pairs (0,1), (2,3), ...; W = pretrained MiniLM q/v",
        (
            ("table", "section7/table.md"),
            ("amplification", "section7/amplification_by_layer.png"),
            ("heatmap r8 vs r64", "section7/r8_vs_r64/subspace_layer3.png"),
            ("heatmap seeds", "section7/r64_seed0_vs_seed1/subspace_layer3.png"),
        ),
        source="section7",
        note="the paper also finds ‖UᵀWVᵀ‖ of ΔW's top directions far above that of random "
        "directions (0.32 vs 0.02 at r=4); compare the two columns of the table's Table 7 rows "
        "(not judged here)",
    ),
    Claim(
        "e",
        "Table 1: merged LoRA adds no inference latency; adapters add up to ~30% at batch 1 "
        "(AdapterH +30.3%, AdapterL +20.7% at 1x128)",
        "GPT-2 medium, random weights, fp16, 100 trials interleaved in rotating order",
        (
            ("table", "table1_latency/table.md"),
            ("report", "table1_latency/report.md"),
            ("figure", "table1_latency/latency_overhead.png"),
            ("targets", "efficiency/targets.md"),
        ),
        source="latency",
    ),
    Claim(
        "f",
        "Sec. 4.2 (GPT-3 175B): LoRA trains 25% faster than full FT (43.1 vs 32.5 tokens/s per "
        "V100), VRAM 1.2 TB -> 350 GB (0.29x), checkpoint 350 GB -> 35 MB",
        "roberta-large / gpt2-medium, random weights, batch 32, bf16 autocast, fused AdamW, "
        "each method in its fastest mode, both rows from one benchmark run",
        (("table", "efficiency/table.md"), ("targets", "efficiency/targets.md")),
        source="efficiency",
        note="at 355M parameters activations, not weights and optimizer state, dominate memory, "
        "and LoRA keeps nearly all of them: 0.29x is a GPT-3 175B figure",
    ),
)
