"""The key paths of a run record, as the code before issue 18's result objects wrote them.

Fitting now returns result objects that `run_cell.py` alone turns into the record (fit_result.py);
the record itself must not change. These sets were read from records that the previous code
(commit 94d3a61) wrote for a tiny classification run and a tiny E2E run: tests compare a fresh
record's key paths with them. `config` and `environment.packages` are left unexpanded (their keys
follow the config and the installed packages, not the record's shape).
"""

from __future__ import annotations


def key_paths(obj, prefix: str = "") -> set[str]:
    """Dotted key paths of a record; a list's entries share one path (`history[].epoch`)."""
    paths: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{prefix}{key}"
            paths.add(path)
            if path not in ("config", "environment.packages"):
                paths |= key_paths(value, path + ".")
    elif isinstance(obj, list):
        for value in obj:
            paths |= key_paths(value, prefix[:-1] + "[].")
    return paths


# Both problems' records have these.
COMMON = frozenset(
    {
        "best",
        "best.epoch",
        "best.step",
        "best.train/loss_mean",
        "config",
        "config_hash",
        "distributed",
        "distributed.devices",
        "distributed.effective_batch_size",
        "distributed.num_nodes",
        "distributed.per_device_batch_size",
        "distributed.strategy",
        "distributed.world_size",
        "effective_batch_size",
        "environment",
        "environment.device",
        "environment.git",
        "environment.git.commit",
        "environment.git.dirty",
        "environment.hostname",
        "environment.packages",
        "environment.python",
        "environment.slurm",
        "error",
        "finished_at",
        "history",
        "history[].epoch",
        "history[].step",
        "history[].train/loss_mean",
        "init_from",
        "measurements",
        "measurements.checkpoint/saved_bytes",
        "measurements.latency/batch_size",
        "measurements.latency/ms",
        "measurements.latency/seq_len",
        "measurements.memory/kind",
        "measurements.memory/peak_bytes",
        "measurements.throughput/tokens_per_s",
        "measurements.throughput/train_seconds",
        "overrides",
        "params",
        "params.params/head",
        "params.params/total",
        "params.params/trainable",
        "params.params/trainable_with_head",
        "primary_metric",
        "resumed_from",
        "resumed_from_epoch",
        "run_dir",
        "schema_version",
        "seed",
        "started_at",
        "status",
        "step",
        "step.buckets",
        "step.capture_s",
        "step.fallback",
        "step.graphs_captured",
        "step.mode",
        "step.reason",
        "step.requested",
        "table_metric",
        "task",
        "task.fingerprint",
        "task.majority_test_acc",
        "task.name",
        "task.split_sizes_full",
        "task.split_sizes_full.test",
        "task.split_sizes_full.train",
        "task.split_sizes_full.validation",
        "task.split_sizes_used",
        "task.split_sizes_used.test",
        "task.split_sizes_used.train",
        "task.split_sizes_used.validation",
        "task.test_is_validation",
        "task.version",
        "test",
        "timing",
        "timing.timing/capture",
        "timing.timing/checkpoint",
        "timing.timing/data_load",
        "timing.timing/eval",
        "timing.timing/imports",
        "timing.timing/memory_check",
        "timing.timing/model_load",
        "timing.timing/other",
        "timing.timing/test",
        "timing.timing/tokenize",
        "timing.timing/total",
        "timing.timing/train",
        "wall_time_s",
    }
)

# A classification run's own (tweet_sentiment: acc and macro F1).
CLASSIFICATION_ONLY = frozenset(
    {
        "best.val/acc",
        "best.val/f1_macro",
        "examples_scored",
        "examples_scored.test",
        "examples_scored.validation",
        "history[].val/acc",
        "history[].val/f1_macro",
        "task.tokenized_from_cache",
        "test.test/acc",
        "test.test/f1_macro",
    }
)

# A generation run's own (E2E: val/loss selects the epoch, beam-search metrics).
GENERATION_ONLY = frozenset(
    {
        "best.val/loss",
        "history[].val/loss",
        "predictions",
        "task.ptb_tokenizer",
        "task.test_inputs",
        "test.test/bleu",
        "test.test/cider",
        "test.test/meteor",
        "test.test/nist",
        "test.test/rouge_l",
    }
)

CLASSIFICATION = COMMON | CLASSIFICATION_ONLY
GENERATION = COMMON | GENERATION_ONLY
