"""Data for conditional generation (E2E): `context <sep> text <eos>`, loss on the text only.

The sequence layout is the official GPT-2 code's (microsoft/LoRA `examples/NLG/src/gpt2_encode.py`
with `--add_bos --add_eos`, and its `FT_Dataset`): the context's tokens, one separator token
(GPT-2's `<|endoftext|>`, id 50256, which is also its EOS), then " " + text and EOS. Training
targets are the text tokens and the final EOS; the context and separator are masked out of the
loss (label -100).
Here the separator is the tokenizer's EOS token, so any causal-LM tokenizer works the same way.

Splits:
    train        every (MR, reference) row (subsampled by `budget.max_train_examples`);
    validation   every row, teacher-forced: the validation loss (subsampled by
                 `budget.max_eval_examples`);
    test         one prompt (`context <sep>`) per unique MR, in order of first appearance, and the
                 MR's references for the multi-reference metrics (`task.generation.max_test_inputs`
                 limits the number of MRs for quick checks).

Training batches are right-padded; generation prompts are left-padded, so every prompt ends at
the last position and generation continues right after it.
"""

from __future__ import annotations

import functools
import hashlib
import time

import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from lora_exp.errors import UserError
from lora_exp.tasks.datamodule import _subsample
from lora_exp.tasks.e2e_metrics import group_references
from lora_exp.tasks.registry import load_splits
from lora_exp.tasks.sampler import ResumableTrainOrder, loader_generator


def eos_id(tokenizer) -> int:
    """The end-of-text id (GPT-2's <|endoftext|>); WordPiece tokenizers fall back to [SEP]."""
    token_id = tokenizer.eos_token_id
    if token_id is None:
        token_id = tokenizer.sep_token_id
    if token_id is None:
        raise UserError("the tokenizer has neither an EOS nor a SEP token to end generated text")
    return int(token_id)


def encode_pair(tokenizer, context: str, text: str, max_len: int) -> dict[str, list[int]]:
    """input_ids = context + [EOS] + " text" + [EOS]; labels mask the context and separator."""
    end = eos_id(tokenizer)
    prompt = [*tokenizer(context, add_special_tokens=False)["input_ids"], end]
    target = [*tokenizer(" " + text, add_special_tokens=False)["input_ids"], end]
    ids = (prompt + target)[:max_len]
    labels = ([-100] * len(prompt) + target)[:max_len]
    return {"input_ids": ids, "labels": labels}


def encode_prompt(tokenizer, context: str, max_len: int) -> list[int]:
    """The generation prompt: context + [EOS] (its last tokens if too long)."""
    return [*tokenizer(context, add_special_tokens=False)["input_ids"], eos_id(tokenizer)][
        -max_len:
    ]


def pad_batch(rows: list[dict], pad_id: int, left: bool = False) -> dict[str, torch.Tensor]:
    """Stack variable-length rows: input_ids, attention_mask, and labels (-100) when present."""
    width = max(len(r["input_ids"]) for r in rows)
    out: dict[str, list] = {"input_ids": [], "attention_mask": []}
    has_labels = "labels" in rows[0]
    if has_labels:
        out["labels"] = []
    for row in rows:
        n = len(row["input_ids"])
        fill = width - n

        def place(values, value, fill=fill):
            return [value] * fill + values if left else values + [value] * fill

        out["input_ids"].append(place(row["input_ids"], pad_id))
        out["attention_mask"].append(place([1] * n, 0))
        if has_labels:
            out["labels"].append(place(row["labels"], -100))
    batch = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
    if "index" in rows[0]:
        batch["index"] = torch.tensor([r["index"] for r in rows], dtype=torch.long)
    return batch


class GenerationDataModule(ResumableTrainOrder, L.LightningDataModule):
    """Train/validation (teacher-forced) and test (one prompt per MR) loaders for a text task."""

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
        self.task_cfg, self.budget_cfg, self.tokenizer = task_cfg, budget_cfg, tokenizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.shuffle_seed = num_workers, shuffle_seed
        self.splits: dict | None = None
        self.test_mrs: list[str] = []
        self.test_references: list[list[str]] = []
        self.info: dict = {}
        self.timings: dict[str, float] = {}  # data_load, tokenize (seconds)
        self.buckets: list[int] | None = None  # None: dynamic padding (engine/buckets.py)
        self.pin_memory = False

    def use_static_shapes(self, buckets: list[int] | None, pin_memory: bool = False) -> None:
        """Pad training and validation batches to `buckets` lengths and full row counts."""
        self.buckets, self.pin_memory = buckets, pin_memory

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        task, budget = self.task_cfg, self.budget_cfg
        started = time.perf_counter()
        raw = load_splits(task)
        seed = int(task.get("split", {}).get("seed", 0))
        full = {name: len(raw[name]) for name in ("train", "validation", "test")}
        train = _subsample(raw["train"], budget.max_train_examples, seed)
        validation = _subsample(raw["validation"], budget.max_eval_examples, seed)
        mrs, references = group_references(list(raw["test"]["mr"]), list(raw["test"]["ref"]))
        contexts = dict(zip(raw["test"]["mr"], raw["test"]["context"], strict=True))
        limit = task.generation.get("max_test_inputs")
        if limit is not None:
            mrs, references = mrs[: int(limit)], references[: int(limit)]
        self.test_mrs, self.test_references = mrs, references
        max_len = int(task.max_seq_len)
        tok = self.tokenizer
        tokenising = time.perf_counter()
        self.timings["data_load"] = tokenising - started

        def pairs(ds):
            return [
                encode_pair(tok, c, r, max_len)
                for c, r in zip(ds["context"], ds["ref"], strict=True)
            ]

        self.splits = {
            "train": pairs(train),
            "validation": pairs(validation),
            "test": [
                {"input_ids": encode_prompt(tok, contexts[mr], max_len), "index": i}
                for i, mr in enumerate(mrs)
            ],
        }
        self.timings["tokenize"] = time.perf_counter() - tokenising
        digest = hashlib.sha256()
        for name in ("train", "validation", "test"):
            digest.update(name.encode())
            for field in ("mr", "ref"):
                digest.update("\x1f".join(raw[name][field]).encode())
        self.info = {
            "split_sizes_full": full,
            "split_sizes_used": {
                "train": len(train),
                "validation": len(validation),
                "test": sum(len(r) for r in references),
            },
            "test_inputs": len(mrs),  # unique MRs generated for; references are grouped per MR
            "fingerprint": digest.hexdigest()[:16],
            "majority_test_acc": None,
        }
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_id(tok)

    def _loader(self, rows, batch_size, sampler=None, left=False) -> DataLoader:
        collate = functools.partial(pad_batch, pad_id=self.pad_id, left=left)
        if self.buckets is not None and not left:  # generation prompts keep dynamic shapes
            from lora_exp.engine.buckets import BucketCollator

            collate = BucketCollator(collate, self.buckets, self.pad_id, rows=batch_size)
        return DataLoader(
            rows,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,  # no new worker every epoch
            pin_memory=self.pin_memory,
            generator=loader_generator(self.shuffle_seed),  # see tasks/sampler.py
        )

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler(len(self.splits["train"]), self.shuffle_seed)
        return self._loader(self.splits["train"], self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["validation"], self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        size = int(self.task_cfg.generation.batch_size)
        return self._loader(self.splits["test"], size, left=True)
