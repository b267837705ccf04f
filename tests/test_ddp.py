"""Data parallelism (trainer=ddp / trainer=fsdp): sharded samplers, layout checks, every method's
gradients, and 2 CPU processes on gloo against 1 process with the same global batch.

Tolerance of the 1-process vs 2-process comparison (tiny-bert, dropout off, deterministic CPU
kernels): every step sees the same examples and the same global-batch mean gradient; only the
order of floating-point sums differs (the gradient all-reduce, the loss average). Test metrics
must agree within 0.002 absolute (fewer than 8 of 3,725 test predictions flipping) and the mean
training loss within 1e-4 relative; measured, they are equal to 1e-7.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from omegaconf import OmegaConf

from lora_exp.checks.layout import check_layout
from lora_exp.distributed import (
    block_classes,
    build_strategy,
    is_global_zero,
    layout,
    per_device_batch,
)
from lora_exp.errors import UserError
from lora_exp.records import config_hash
from lora_exp.tasks.sampler import EpochSeededSampler, MaskedEvalDataset, ShardedEvalSampler
from tests.conftest import ROOT, compose, run_cli
from tests.family_cases import CASES, TINY_MODELS
from tests.test_methods import MATRIX, method_config

METRIC_TOLERANCE = 0.002
LOSS_RTOL = 1e-4


# --- samplers: N processes see the steps of one ---
@pytest.mark.parametrize("n", [256, 250, 97, 5])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_rank_shards_form_the_single_process_steps(n, world):
    per_device, epoch = 4, 3
    single = EpochSeededSampler(n, seed=7)
    single.set_epoch(epoch)
    order = list(single)
    shards = []
    for rank in range(world):
        sampler = EpochSeededSampler(n, seed=7, rank=rank, world_size=world)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler) == -(-n // world)  # every rank: the same steps
    steps = -(-len(shards[0]) // per_device)
    assert steps == -(-n // (per_device * world))  # as many optimizer steps as one process
    global_batch = per_device * world
    for step in range(steps):
        union = [i for s in shards for i in s[step * per_device : (step + 1) * per_device]]
        expected = order[step * global_batch : (step + 1) * global_batch]
        if len(expected) == global_batch or n % world == 0:
            assert sorted(union) == sorted(expected)
        else:  # last batch: padded by wrapping around to the permutation's start
            assert set(expected) <= set(union) and set(union) - set(expected) <= set(order[:world])
    assert sorted({i for s in shards for i in s}) == list(range(n))  # nothing dropped


def test_single_process_order_is_unchanged():
    """world_size=1 keeps the order of the pre-DDP sampler: old runs resume exactly."""
    sampler = EpochSeededSampler(10, seed=3)
    sampler.set_epoch(2)
    generator = torch.Generator().manual_seed(3 * 100_003 + 2)
    assert list(sampler) == torch.randperm(10, generator=generator).tolist()


@pytest.mark.parametrize("n", [129, 128, 1])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_evaluation_scores_each_example_exactly_once(n, world):
    dataset = MaskedEvalDataset([{"labels": i} for i in range(n)])
    scored, lengths = [], set()
    for rank in range(world):
        indices = list(ShardedEvalSampler(n, rank, world))
        lengths.add(len(indices))
        scored += [dataset[i]["labels"] for i in indices if dataset[i]["eval_mask"]]
    assert len(lengths) == 1  # equal forward passes on every rank (FSDP needs it)
    assert sorted(scored) == list(range(n))


# --- layout: batch semantics, rank zero, launcher, cell identity ---
def test_global_batch_must_split_evenly():
    assert per_device_batch(32, 2) == 16
    with pytest.raises(UserError, match="global batch"):
        per_device_batch(32, 3)
    with pytest.raises(UserError, match="multiple of 3"):
        check_layout(compose(["trainer=ddp", "trainer.devices=3"]))


def test_a_sweep_with_in_process_ranks_is_refused(monkeypatch):
    for var in ("SLURM_NTASKS", "RANK"):
        monkeypatch.delenv(var, raising=False)
    cfg = compose(["trainer=ddp"])
    check_layout(cfg)  # a single run: Lightning's subprocess launcher starts rank 1
    with pytest.raises(UserError, match="launcher=slurm"):
        check_layout(cfg, multirun=True)
    monkeypatch.setenv("SLURM_NTASKS", "2")  # srun starts every rank: fine in a sweep
    check_layout(cfg, multirun=True)


def test_record_layout_has_the_effective_batch():
    cfg = compose(["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "batch_size=64"])
    assert layout(cfg) == {
        "strategy": "ddp",
        "devices": 4,
        "num_nodes": 2,
        "world_size": 8,
        "per_device_batch_size": 8,
        "effective_batch_size": 64,
    }


def test_rank_zero_is_read_from_the_launchers_variables(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    assert is_global_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's child in an interactive SLURM shell
    assert not is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert not is_global_zero()


def test_device_layout_is_not_part_of_the_cell():
    def cell(*overrides):
        return config_hash(OmegaConf.to_container(compose(list(overrides)), resolve=True))

    one = cell()
    assert one == cell("trainer=ddp", "trainer.devices=4") == cell("trainer=fsdp")
    assert one != cell("trainer=ddp", "batch_size=64")  # the global batch is


def test_slurm_launcher_starts_one_task_per_device_on_every_node():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    overrides = ["launcher=slurm", "~local", "trainer=ddp", "trainer.devices=4"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            "config", overrides=[*overrides, "trainer.num_nodes=2"], return_hydra_config=True
        )
        plain = hydra_compose("config", overrides=["launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert (plain.hydra.launcher.nodes, plain.hydra.launcher.tasks_per_node) == (1, 1)


# --- every method under DDP: all trainable parameters take part (find_unused_parameters=False) ---
@pytest.mark.parametrize(("family", "case"), MATRIX)  # the method matrix's (family, case) pairs
def test_every_trainable_parameter_gets_a_gradient(tiny_model, family, case):
    from lora_exp.methods import build_method
    from lora_exp.models import get_family

    model, cfg = tiny_model(family)
    method = build_method(method_config(case))
    method.apply(model, get_family(cfg.model.family))
    model.train()
    ids = torch.randint(1000, 2000, (2, 9), generator=torch.Generator().manual_seed(0))
    model(
        input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 2])
    ).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing  # DDP would stop at the next step: "Expected to have finished reduction"


# --- FSDP: built right; counted before wrapping (torch's FSDP needs CUDA: not run here) ---
def test_fsdp_strategy_shards_blocks_and_keeps_original_parameters(tiny_model):
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    model, _ = tiny_model("tiny-roberta")
    strategy = build_strategy(compose(["trainer=fsdp"]).trainer, model)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True  # the optimizer sees the method's tensors
    policy = strategy.kwargs["auto_wrap_policy"]
    assert {type(model.roberta.encoder.layer[0])} == policy._module_classes
    assert compose(["trainer=fsdp"]).trainer.frozen_projections_bf16 is False  # one dtype a unit
    assert isinstance(build_strategy(compose(["trainer=ddp"]).trainer), DDPStrategy)
    assert build_strategy(compose([]).trainer) == "auto"


@pytest.mark.parametrize("name", TINY_MODELS)
def test_block_classes_find_each_familys_transformer_block(tiny_model, name):
    model, _ = tiny_model(name)
    assert block_classes(model) == {type(model.get_submodule(CASES[name].blocks)[0])}


# --- end to end: 2 gloo processes vs 1, through run.py ---
TINY_DDP = [
    "model=tiny-bert",
    "method=full_ft",
    "lr=1e-2",
    "batch_size=16",  # the global batch: 2 x 8 under trainer=ddp
    "budget.max_train_examples=256",
    "budget.max_eval_examples=129",  # odd: the shards are uneven, padding must not be scored
    "eval_batch_size=16",
    "epochs=3",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    # Dropout off: each rank draws its own masks, which would make the runs differ by more than
    # the order of floating-point sums.
    "+model.config_overrides.hidden_dropout_prob=0.0",
    "+model.config_overrides.attention_probs_dropout_prob=0.0",
]
ENV = {"OMP_NUM_THREADS": "1"}


def _record(run_dir):
    return json.loads((run_dir / "record.json").read_text())


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    runs = {}
    for name, extra in [("one", []), ("two", ["trainer=ddp", "trainer.devices=2"])]:
        run_dir = root / name
        args = [*TINY_DDP, *extra, f"hydra.run.dir={run_dir}", f"records_root={run_dir}"]
        result = run_cli(args, env=ENV)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = run_dir
    return root, runs


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(one_and_two_processes):
    _, runs = one_and_two_processes
    one, two = _record(runs["one"]), _record(runs["two"])
    assert one["status"] == two["status"] == "success"
    assert two["distributed"]["world_size"] == 2 and two["distributed"]["strategy"] == "ddp"
    assert two["effective_batch_size"] == one["effective_batch_size"] == 16
    assert two["distributed"]["per_device_batch_size"] == 8
    assert one["config_hash"] == two["config_hash"]  # the same cell
    assert one["test"]["test/acc"] > one["task"]["majority_test_acc"]  # it learned something
    for key, value in one["test"].items():
        assert two["test"][key] == pytest.approx(value, abs=METRIC_TOLERANCE)
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["step"] == b["step"]
        assert b["train/loss_mean"] == pytest.approx(a["train/loss_mean"], rel=LOSS_RTOL)
        assert b["val/acc"] == pytest.approx(a["val/acc"], abs=METRIC_TOLERANCE)
    sizes = two["task"]["split_sizes_used"]
    expected = {"validation": sizes["validation"], "test": sizes["test"]}
    assert two["examples_scored"] == one["examples_scored"] == expected  # none twice or dropped


@pytest.mark.slow
def test_two_processes_write_one_record_and_one_log(one_and_two_processes):
    _, runs = one_and_two_processes
    run_dir = runs["two"]
    assert [p.relative_to(run_dir) for p in run_dir.rglob("record.json")] == [
        run_dir.joinpath("record.json").relative_to(run_dir)
    ]
    assert [p.name for p in run_dir.rglob("metrics.csv")] == ["metrics.csv"]
    assert not list(run_dir.rglob("*.tmp*"))
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_on_one_process(one_and_two_processes, tmp_path):
    """Killed after an epoch on 2 processes, the cell ends on 1 like an uninterrupted run."""
    _, runs = one_and_two_processes
    run_dir = tmp_path / "k"
    common = [*TINY_DDP, f"hydra.run.dir={run_dir}", f"records_root={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *common, "trainer=ddp", "trainer.devices=2"],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # rank 1 is its child: kill the whole group
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _record(run_dir)["status"] == "running"
    result = run_cli(common, env=ENV)  # the default trainer: one process
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, uninterrupted = _record(run_dir), _record(runs["one"])
    assert resumed["status"] == "success" and resumed["resumed_from"].endswith("last.ckpt")
    assert resumed["resumed_from_epoch"] < 2 and resumed["distributed"]["world_size"] == 1
    for key, value in uninterrupted["test"].items():
        assert resumed["test"][key] == pytest.approx(value, abs=METRIC_TOLERANCE)
    for a, b in zip(resumed["history"], uninterrupted["history"], strict=True):
        assert a["step"] == b["step"]
        assert a["train/loss_mean"] == pytest.approx(b["train/loss_mean"], rel=LOSS_RTOL)


def test_scaling_benchmark_runs_two_gloo_processes(tmp_path):
    """The GPU script's benchmark (scripts/gpu_multigpu.sh), at tiny size on CPU."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    bench = ["-m", "lora_exp.measure.ddp_scaling", "--model", "tiny-roberta", "--batch", "2"]
    bench += ["--seq", "16", "--steps", "2", "--warmup", "1", "--out", str(tmp_path)]
    for n in (1, 2):
        result = subprocess.run(
            [*command, "--nproc_per_node", str(n), *bench],
            cwd=ROOT,
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    table = subprocess.run(
        [sys.executable, "-m", "lora_exp.measure.ddp_scaling", "--table", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    rows = (tmp_path / "table.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header; full_ft and lora on 1 and 2 processes
    assert "| tiny-roberta | lora | 2 x 16 | 2 |" in table.stdout
    assert (tmp_path / "table.md").exists()
