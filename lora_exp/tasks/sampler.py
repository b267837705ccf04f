"""A training sampler whose order depends only on (seed, epoch).

PyTorch's default `RandomSampler` draws each epoch's permutation from the global RNG, so a run
resumed from a checkpoint sees different batches than an uninterrupted one. Lightning calls
`set_epoch` on samplers that have it (as it does for `DistributedSampler`), so seeding the
permutation with (seed, epoch) makes resumption exact.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class EpochSeededSampler(Sampler[int]):
    """Random permutation of range(num_examples), a pure function of (seed, epoch).

    Args:
        num_examples: dataset length.
        seed: the run's seed.
    """

    def __init__(self, num_examples: int, seed: int):
        self.num_examples, self.seed, self.epoch = num_examples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_examples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_examples
