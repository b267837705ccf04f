"""The Lightning data module: load a task's splits, subsample per budget, tokenise, batch.

Tokenisation happens once, up front (`datasets.map`), and batches are padded dynamically to their
longest example (`collate.TokenCollator`, what `DataCollatorWithPadding` returns), which matters
for short texts such as tweets. A captured or compiled training step wants a few fixed shapes
instead (`use_static_shapes`): batches are then padded to the smallest length bucket that holds
them and to a fixed row count, with zero-weight rows (`lora_exp/engine/buckets.py`), which
changes no loss or metric.
Subsamples (`budget.max_train_examples`, `budget.max_eval_examples`) are seeded by the task's split
seed, not the run's seed, so different seeds of a configuration see the same examples.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter

import lightning as L
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from lora_exp.tasks import token_cache
from lora_exp.tasks.collate import TokenCollator
from lora_exp.tasks.registry import load_splits
from lora_exp.tasks.sampler import (
    MaskedEvalDataset,
    ResumableTrainOrder,
    ShardedEvalSampler,
    loader_generator,
)


def _subsample(dataset, limit: int | None, seed: int):
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(int(limit)))


def fingerprint(splits, text_fields: list[str], names=("train", "validation", "test")) -> str:
    """sha256 over every split's texts and labels: changes if the data or the split change."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        for field in [*text_fields, "label"]:
            digest.update("\x1f".join(map(str, splits[name][field])).encode())
    return digest.hexdigest()[:16]


class TaskDataModule(ResumableTrainOrder, L.LightningDataModule):
    """Train/validation/test dataloaders for one task and tokenizer.

    Args:
        task_cfg: the `task` config group.
        budget_cfg: the `budget` config group (subsample sizes).
        tokenizer: a transformers tokenizer.
        batch_size: the global training batch (split over data-parallel processes).
        eval_batch_size: validation/test batch size per device (memory only, never results).
        num_workers: dataloader workers.
    """

    def __init__(
        self,
        task_cfg: DictConfig,
        budget_cfg: DictConfig,
        tokenizer,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int = 0,
        shuffle_seed: int = 0,
    ):
        super().__init__()
        self.shuffle_seed = shuffle_seed
        self.task_cfg, self.budget_cfg, self.tokenizer = task_cfg, budget_cfg, tokenizer
        self.batch_size, self.eval_batch_size, self.num_workers = (
            batch_size,
            eval_batch_size,
            num_workers,
        )
        self.splits = None
        self.info: dict = {}
        self.timings: dict[str, float] = {}  # data_load, tokenize (seconds)
        self.buckets: list[int] | None = None  # None: dynamic padding
        self.pin_memory = False

    def use_static_shapes(self, buckets: list[int] | None, pin_memory: bool = False) -> None:
        """Pad batches to `buckets` lengths and full row counts (None: dynamic padding).

        Args:
            pin_memory: page-locked batches, so copies to the GPU do not block the host.
        """
        self.buckets, self.pin_memory = buckets, pin_memory

    def _collate(self, rows: int):
        if self.buckets is None:
            return self.collate
        from lora_exp.engine.buckets import BucketCollator

        return BucketCollator(self.collate, self.buckets, self.tokenizer.pad_token_id, rows=rows)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        task, budget = self.task_cfg, self.budget_cfg
        started = time.perf_counter()
        raw = load_splits(task)
        seed = int(task.get("split", {}).get("seed", 0))
        names = ("train", "validation", "test", *(task.get("extra_eval_splits") or {}))
        full_sizes = {name: len(raw[name]) for name in names}
        raw["train"] = _subsample(raw["train"], budget.max_train_examples, seed)
        raw["validation"] = _subsample(raw["validation"], budget.max_eval_examples, seed)
        if task.get("test_is_validation"):
            raw["test"] = raw["validation"]
            for name in names[3:]:  # extra dev splits (MNLI mismatched) are scored like test
                raw[name] = _subsample(raw[name], budget.max_eval_examples, seed)
        fields = list(task.text_fields)
        # Plain columns, read once per split through Arrow: datasets 5 reads `ds[column]` row by
        # row (seconds for 37k tweets on a 2-core CPU).
        columns = {
            name: ds.select_columns([*fields, "label"]).to_dict() for name, ds in raw.items()
        }
        self.info = {
            "split_sizes_full": full_sizes,
            "split_sizes_used": {name: len(raw[name]) for name in names},
            "fingerprint": fingerprint(columns, fields),
            "majority_test_acc": self._majority_acc(columns),
        }
        tokenising = time.perf_counter()
        self.timings["data_load"] = tokenising - started
        every_split = fingerprint(columns, fields, names)  # extra dev splits (MNLI mismatched)
        key = token_cache.cache_key(every_split, self.tokenizer, int(task.max_seq_len), fields)
        self.splits = token_cache.load(key)
        self.info["tokenized_from_cache"] = self.splits is not None
        if self.splits is None:
            self.splits = self._tokenize(columns, fields)
            token_cache.store(key, self.splits)
        self.timings["tokenize"] = time.perf_counter() - tokenising
        self.collate = TokenCollator(self.tokenizer.pad_token_id, self.tokenizer.padding_side)

    def _tokenize(self, columns: dict, fields: list[str]) -> dict[str, list[dict]]:
        """Every split tokenised (truncated to the task's max_seq_len), as lists of dicts.

        One fast-tokenizer call per split on plain lists (what `datasets.map` would do batch by
        batch, without writing Arrow files); per example, the same ids.
        """
        max_len = int(self.task_cfg.max_seq_len)
        splits = {}
        for name, split in columns.items():
            encoded = self.tokenizer(
                *[split[f] for f in fields], truncation=True, max_length=max_len
            )
            keys = list(encoded.keys())
            # Plain lists of dicts: indexing an Arrow-backed Dataset row by row costs ~50 µs a row.
            splits[name] = [
                {"labels": label, **{key: encoded[key][i] for key in keys}}
                for i, label in enumerate(split["label"])
            ]
        return splits

    @staticmethod
    def _majority_acc(columns) -> float | None:
        """Accuracy of always predicting the most frequent training label (a sanity baseline)."""
        labels = columns["train"]["label"]
        if not labels or isinstance(labels[0], float):
            return None
        majority = Counter(labels).most_common(1)[0][0]
        test = columns["test"]["label"]
        return sum(1 for y in test if y == majority) / len(test)

    def _loader(self, name: str, batch_size: int, sampler=None) -> DataLoader:
        return DataLoader(
            self.splits[name],
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=self._collate(batch_size),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,  # no new worker every epoch
            pin_memory=self.pin_memory,
            generator=loader_generator(self.shuffle_seed),  # see sampler.py
        )

    def _shard(self) -> tuple[int, int]:
        """(global rank, world size) of this process; (0, 1) outside a distributed trainer."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        from lora_exp.distributed import per_device_batch

        rank, world = self._shard()  # batch_size is global: see lora_exp/distributed.py
        sampler = self.train_sampler(len(self.splits["train"]), self.shuffle_seed, rank, world)
        return self._loader("train", per_device_batch(self.batch_size, world), sampler)

    def eval_dataloader(self, name: str) -> DataLoader:
        """This rank's shard of an evaluation split; padding is flagged by `eval_mask`."""
        rank, world = self._shard()
        return DataLoader(
            MaskedEvalDataset(self.splits[name]),
            batch_size=self.eval_batch_size,
            sampler=ShardedEvalSampler(len(self.splits[name]), rank, world),
            collate_fn=self._collate(self.eval_batch_size),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,  # no new worker every epoch
            pin_memory=self.pin_memory,
            generator=loader_generator(self.shuffle_seed),  # see sampler.py
        )

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("validation")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")
