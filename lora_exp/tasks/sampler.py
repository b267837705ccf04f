"""Samplers whose order depends only on (seed, epoch), sharded over data-parallel processes.

PyTorch's default `RandomSampler` draws each epoch's permutation from the global RNG, so a run
resumed from a checkpoint sees different batches than an uninterrupted one. Lightning calls
`set_epoch` on samplers that have it (as it does for `DistributedSampler`), so seeding the
permutation with (seed, epoch) makes resumption exact.

Under data parallelism (trainer=ddp/fsdp) the trainer is built with
`use_distributed_sampler=False` and these samplers shard themselves. Every rank draws the same
permutation and takes every `world_size`-th index of it, starting at its rank. With a per-device
batch of `batch_size / world_size`, step i of an N-process run then covers exactly the examples
of step i of a 1-process run with the global batch (example: perm = [7, 2, 5, 0, ...], global
batch 4, 2 ranks: rank 0 takes [7, 5], rank 1 [2, 0]; one process takes [7, 2, 5, 0]).

When the length is not a multiple of the world size, the permutation is padded by wrapping around
(as `DistributedSampler` does): the last global batch repeats up to world_size - 1 examples, and
every rank takes ceil(n / world_size) steps, the same number of optimizer steps per epoch as one
process. Evaluation is padded the same way, so every rank runs the same number of forward passes
(FSDP gathers weights collectively in each one), but the padding is flagged (`eval_mask`) and
never scored: each example is scored exactly once.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset, Sampler


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")


class EpochSeededSampler(Sampler[int]):
    """This rank's share of a random permutation of range(num_examples), fixed by (seed, epoch).

    Args:
        num_examples: dataset length.
        seed: the run's seed.
        rank: this process's global rank.
        world_size: number of data-parallel processes.
    """

    def __init__(self, num_examples: int, seed: int, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.num_examples, self.seed, self.epoch = num_examples, seed, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_examples, generator=generator).tolist()
        padded = len(self) * self.world_size
        order += order[: padded - len(order)]  # wrap around: at most world_size - 1 repeats
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.world_size)


class ShardedEvalSampler(Sampler[int]):
    """Indices rank, rank + world_size, ... of range(padded), padded = a multiple of world_size.

    Indices >= num_examples are padding; `MaskedEvalDataset` serves them flagged, never scored.

    Args:
        num_examples: dataset length.
        rank: this process's global rank.
        world_size: number of data-parallel processes.
    """

    def __init__(self, num_examples: int, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.num_examples, self.rank, self.world_size = num_examples, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, len(self) * self.world_size, self.world_size))

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.world_size)


class MaskedEvalDataset(Dataset):
    """Evaluation examples with `eval_mask` = 1, and padding indices (>= len) with `eval_mask` = 0.

    Args:
        examples: the tokenised split (a list of dicts).
    """

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        n = len(self.examples)
        return {**self.examples[index % n], "eval_mask": int(index < n)}
