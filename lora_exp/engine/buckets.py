"""Static shapes for captured and compiled steps: a few sequence lengths and a fixed row count.

A CUDA graph replays fixed shapes, and a compiled graph recompiles for every new one. Dynamic
padding (to each batch's longest example) gives a new shape almost every step, so a captured
step pads each batch to the smallest of a few *length buckets* that holds its longest example,
and a short final batch to the full row count with rows of weight zero.

Neither changes the math:

* padded positions have attention mask 0, and padded keys get zero attention weight, so the
  outputs at real positions are those of the unpadded batch (to floating-point rounding, since
  reductions run over more, zeroed, terms);
* padded rows copy the batch's first row (a valid input: an all-padding row would make the
  attention softmax 0/0 in some kernels) with `loss_weight` 0 (classification, regression) and
  labels -100 (causal LM), and the loss is the weighted mean sum_i w_i l_i / sum_i w_i, so their
  loss and gradient contributions are exactly zero (`losses.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Keys padded along the sequence dimension, and the value that fills them.
SEQUENCE_PAD = {"attention_mask": 0, "token_type_ids": 0, "labels": -100}
ROW_WEIGHT = "loss_weight"


def default_buckets(max_seq_len: int) -> list[int]:
    """max/4, max/2 and max, each rounded up to a multiple of 8 (tensor-core friendly).

    Three shapes keep capture and compile cheap (one graph each) while a short-text task such as
    tweets (99% under 50 tokens at max 128) mostly runs at a quarter of the maximum.
    """
    sizes = {max_seq_len}
    for divisor in (4, 2):
        size = -(-max_seq_len // divisor)
        sizes.add(min(max_seq_len, -(-size // 8) * 8))
    return sorted(s for s in sizes if s > 0)


def check_buckets(buckets: Sequence[int], max_seq_len: int) -> list[int]:
    """Sorted, positive, and the largest one holds `max_seq_len` tokens (every example fits)."""
    sizes = sorted({int(b) for b in buckets})
    if not sizes or sizes[0] <= 0:
        raise ValueError(f"length buckets must be positive integers, got {list(buckets)}")
    if sizes[-1] < max_seq_len:
        raise ValueError(
            f"the largest length bucket ({sizes[-1]}) is shorter than task.max_seq_len "
            f"({max_seq_len}): the longest examples would not fit"
        )
    return sizes


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `length` tokens."""
    for size in buckets:
        if size >= length:
            return size
    raise ValueError(f"a sequence of {length} tokens is longer than every bucket {list(buckets)}")


def pad_to_shape(batch: dict, length: int, rows: int | None, pad_token_id: int) -> dict:
    """`batch` (right-padded tensors) padded to `length` positions and `rows` rows.

    Adds `loss_weight` (rows,): 1 for real rows, 0 for padding rows.
    """
    real = batch["input_ids"].shape[0]
    rows = real if rows is None else rows
    if real > rows:
        raise ValueError(f"a batch of {real} rows does not fit the static shape of {rows}")
    out = {}
    for key, value in batch.items():
        if value.dim() == 2:  # (real, seq): token ids, masks, causal-LM labels
            fill = pad_token_id if key == "input_ids" else SEQUENCE_PAD.get(key, 0)
            extra = length - value.shape[1]
            if extra < 0:
                raise ValueError(f"'{key}' has {value.shape[1]} positions, more than {length}")
            value = torch.nn.functional.pad(value, (0, extra), value=fill)  # (real, length)
        if rows > real:
            copies = value[:1].expand(rows - real, *value.shape[1:]).clone()
            if key == "labels" and value.dim() == 2:
                copies.fill_(-100)  # causal LM: no target in a padding row
            if key == "eval_mask":
                copies.zero_()  # never scored
            value = torch.cat([value, copies])
        out[key] = value
    weight = torch.zeros(rows, dtype=torch.float32)
    weight[:real] = 1.0
    out[ROW_WEIGHT] = weight
    return out


class BucketCollator:
    """Wraps a collate function: its right-padded batch, padded to a bucket and a row count.

    Args:
        collate: the task's collate function (dynamic padding to the longest example).
        buckets: the sequence lengths batches are padded to.
        pad_token_id: the tokenizer's padding id.
        rows: the row count every batch is padded to (the batch size), or None to keep it.
    """

    def __init__(self, collate: Callable, buckets: Sequence[int], pad_token_id: int, rows=None):
        self.collate, self.buckets = collate, list(buckets)
        self.pad_token_id, self.rows = int(pad_token_id), rows

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.collate(examples)
        length = bucket_length(batch["input_ids"].shape[1], self.buckets)
        return pad_to_shape(batch, length, self.rows, self.pad_token_id)
