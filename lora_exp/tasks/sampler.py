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


def loader_generator(seed: int) -> torch.Generator:
    """The `generator` for a DataLoader, so that starting an epoch never draws from the global RNG.

    Each time a DataLoader starts an iterator it draws its workers' base seed, from the global
    torch RNG unless it has a generator of its own. The global RNG also draws dropout's masks on
    the CPU, so those draws would make the masks depend on the worker count, and with persistent
    workers (one draw per run instead of one per epoch) on whether a run was resumed: measured on
    the CPU (tiny-bert, LoRA, one worker), a resumed run's epoch-1 loss differed from the
    uninterrupted run's (1.04607 against 1.04505). The workers only collate, deterministically, so
    their seeds change nothing else.
    """
    return torch.Generator().manual_seed(int(seed))


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
        epoch: the epoch whose order the first iteration draws (a resumed run's next epoch).
    """

    def __init__(self, num_examples: int, seed: int, rank: int = 0, world_size: int = 1,
                 epoch: int = 0):  # fmt: skip
        _check_rank(rank, world_size)
        self.num_examples, self.seed, self.epoch = num_examples, seed, int(epoch)
        self.rank, self.world_size = rank, world_size
        self.finished_epoch: int | None = None  # the last epoch whose indices were all drawn

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        epoch = self.epoch
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.num_examples, generator=generator).tolist()
        padded = len(self) * self.world_size
        order += order[: padded - len(order)]  # wrap around: at most world_size - 1 repeats
        yield from order[self.rank :: self.world_size]
        self.finished_epoch = epoch

    def next_epoch(self) -> int:
        """The epoch a run resumed from a checkpoint taken now starts with: the one after the
        current epoch once its indices have all been drawn, else the current one again."""
        return self.epoch + 1 if self.finished_epoch == self.epoch else self.epoch

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.world_size)


class ResumableTrainOrder:
    """A LightningDataModule mixin: checkpoints record which epoch's order comes next.

    `set_epoch` alone does not make resumption exact. Lightning creates a run's first training
    iterator before its first `set_epoch` call (fit_loop.setup_data), and on a restart it trains
    the first epoch on that iterator; with worker processes the iterator draws its first batches'
    indices as it is created. A resumed run then trained its first epoch in epoch 0's order:
    measured on the CPU (tiny-bert, LoRA, one worker), its first batch was the uninterrupted run's
    epoch-0 batch. So the checkpoint carries the next epoch (`state_dict`, which Lightning saves
    with the datamodule and restores before it asks for the training loader), and the sampler is
    built at that epoch.
    """

    _train_sampler: EpochSeededSampler | None = None
    _start_epoch: int = 0

    def train_sampler(self, num_examples: int, seed: int, rank: int = 0,
                      world_size: int = 1) -> EpochSeededSampler:  # fmt: skip
        """The training sampler, at the epoch a restored checkpoint says comes next (else 0)."""
        self._train_sampler = EpochSeededSampler(num_examples, seed, rank, world_size,
                                                 epoch=self._start_epoch)  # fmt: skip
        return self._train_sampler

    def state_dict(self) -> dict:
        if self._train_sampler is None:
            return {}
        return {"next_train_epoch": self._train_sampler.next_epoch()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._start_epoch = int(state_dict.get("next_train_epoch", 0))


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
