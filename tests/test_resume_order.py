"""A resumed run trains on the data, in the order, and with the random stream of an uninterrupted
one, whatever the loader's worker count (tasks/sampler.py: `ResumableTrainOrder`,
`loader_generator`)."""

from __future__ import annotations

import json
import subprocess
import sys

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lora_exp.tasks.sampler import EpochSeededSampler, ResumableTrainOrder, loader_generator
from tests.conftest import ROOT, TINY_RUN, kill_after_first_checkpoint


def test_the_next_epoch_is_the_current_one_until_its_indices_are_all_drawn():
    sampler = EpochSeededSampler(10, seed=1)
    assert sampler.next_epoch() == 0  # nothing drawn: epoch 0 again
    drawn = iter(sampler)
    next(drawn)
    assert sampler.next_epoch() == 0  # mid-epoch: the epoch restarts
    list(drawn)
    assert sampler.next_epoch() == 1  # all drawn: the next one
    sampler.set_epoch(1)
    assert sampler.next_epoch() == 1  # set, not yet drawn


def test_a_sampler_built_at_an_epoch_draws_that_epochs_order():
    later = EpochSeededSampler(50, seed=4, epoch=2)
    reference = EpochSeededSampler(50, seed=4)
    reference.set_epoch(2)
    assert list(later) == list(reference)


class _Module(ResumableTrainOrder, L.LightningDataModule):
    pass


def test_the_datamodule_state_carries_the_next_epoch_to_the_resumed_sampler():
    before = _Module()
    assert before.state_dict() == {}  # no training loader yet
    list(before.train_sampler(12, seed=0))  # epoch 0 drawn in full
    state = before.state_dict()
    assert state == {"next_train_epoch": 1}
    after = _Module()
    after.load_state_dict(state)
    assert after.train_sampler(12, seed=0).epoch == 1


def test_starting_an_epoch_never_draws_from_the_global_random_stream():
    """The global stream draws dropout's masks on the CPU; a loader's start must leave it alone."""
    loader = DataLoader(list(range(8)), batch_size=4, generator=loader_generator(0))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for _ in range(2):
        list(loader)
    assert torch.equal(torch.rand(3), expected)


def _record(run_dir):
    return json.loads((run_dir / "record.json").read_text())


@pytest.mark.slow
def test_a_killed_lora_run_with_a_loader_worker_resumes_exactly(tmp_path):
    """A run with a loader worker (trainer.num_workers=1: one persistent worker), on the
    CPU: before the fix the resumed run trained its second epoch in the first epoch's order."""
    run = [a for a in TINY_RUN if not a.startswith("method=")]
    base = [sys.executable, str(ROOT / "run.py"), *run, "method=lora", "trainer.num_workers=1"]
    whole = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'whole'}",
                            f"records_root={tmp_path / 'r1'}"], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    args = [*base, f"hydra.run.dir={tmp_path / 'k'}", f"records_root={tmp_path / 'r2'}"]
    kill_after_first_checkpoint(args, tmp_path / "k" / "checkpoints" / "last.ckpt")
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, uninterrupted = _record(tmp_path / "k"), _record(tmp_path / "whole")
    assert resumed["resumed_from_epoch"] is not None and resumed["resumed_from_epoch"] < 2
    assert resumed["test"] == uninterrupted["test"]
    assert resumed["history"] == uninterrupted["history"]  # the training losses too, exactly
