"""The training step's static shapes and modes, on the CPU.

Issue 16, item 2: a batch padded to a length bucket and to a full row count (zero-weight rows)
gives the loss and gradients of the unpadded batch, to fp32 rounding, for classification,
regression and causal-LM batches. Plus: the bucket arithmetic, the mode choice, and that the
eager TrainStep is the plain PyTorch step (same parameters after several steps).
"""

from __future__ import annotations

import pytest
import torch

from lora_exp.engine.buckets import (
    BucketCollator,
    bucket_length,
    check_buckets,
    default_buckets,
    pad_to_shape,
)
from lora_exp.engine.losses import loss_for
from lora_exp.engine.modes import plan_step
from lora_exp.engine.step import TrainStep, build_optimizer
from lora_exp.errors import UserError


def test_default_buckets_are_quarter_half_and_full_length_in_multiples_of_8():
    assert default_buckets(128) == [32, 64, 128]
    assert default_buckets(512) == [128, 256, 512]
    assert default_buckets(100) == [32, 56, 100]  # 25 -> 32, 50 -> 56, and the maximum itself
    assert bucket_length(1, [32, 64, 128]) == 32
    assert bucket_length(33, [32, 64, 128]) == 64
    assert bucket_length(128, [32, 64, 128]) == 128
    with pytest.raises(ValueError, match=r"shorter than task\.max_seq_len"):
        check_buckets([32, 64], 128)
    assert check_buckets([128, 16, 16], 128) == [16, 128]


def _right_padded(lengths, vocab=100, pad=0, seed=0, causal_labels=False):
    """A dynamically padded batch (to its longest row) of random token ids."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, vocab, (n,), generator=generator)
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if causal_labels:
        labels = ids.clone()
        labels[mask == 0] = -100
        labels[:, :2] = -100  # the prompt: no target
        batch["labels"] = labels
    return batch


def _loss_and_grads(model, loss_fn, batch):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _assert_same(reference, padded):
    loss_ref, grads_ref = reference
    loss_pad, grads_pad = padded
    torch.testing.assert_close(loss_pad, loss_ref, rtol=1e-5, atol=1e-6)
    assert grads_ref.keys() == grads_pad.keys()
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads_pad[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("problem", ["single_label_classification", "regression"])
def test_padded_bucket_batch_has_the_loss_and_gradients_of_the_unpadded_one(problem):
    from lora_exp.models import load_backbone
    from tests.conftest import compose

    cfg = compose(["model=tiny-bert"])
    torch.manual_seed(0)
    num_labels = 1 if problem == "regression" else 3
    model = load_backbone(cfg.model, num_labels, problem, pad_token_id=0)
    model.eval()  # dropout off: the two passes must see the same function
    batch = _right_padded([5, 9, 3], vocab=cfg.model.arch.vocab_size)
    if problem == "regression":
        batch["labels"] = torch.tensor([0.5, 3.2, 4.9])
    else:
        batch["labels"] = torch.tensor([2, 0, 1])
    loss_fn = loss_for(problem)
    reference = _loss_and_grads(model, loss_fn, batch)
    # A short final batch: 3 real rows padded to 8, 9 positions padded to the bucket of 16.
    padded = pad_to_shape(batch, length=16, rows=8, pad_token_id=0)
    assert (
        padded["input_ids"].shape == (8, 16) and padded["loss_weight"].tolist() == [1] * 3 + [0] * 5
    )
    _assert_same(reference, _loss_and_grads(model, loss_fn, padded))
    # HF's own loss of the unpadded batch (what eager training computed before) agrees too.
    hf_loss = model(**batch).loss.detach()
    torch.testing.assert_close(reference[0], hf_loss, rtol=1e-6, atol=1e-6)


def test_padded_bucket_causal_lm_batch_has_the_loss_and_gradients_of_the_unpadded_one():
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.conftest import compose

    cfg = compose(["model=tiny-gpt2"])
    arch = dict(cfg.model.arch)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch.pop("model_type"), **arch))
    model.eval()
    batch = _right_padded([6, 11, 4], vocab=cfg.model.arch.vocab_size, causal_labels=True)
    loss_fn = loss_for("generation", label_smoothing=0.1)
    reference = _loss_and_grads(model, loss_fn, batch)
    padded = pad_to_shape(batch, length=16, rows=4, pad_token_id=0)
    assert (padded["labels"][3] == -100).all()  # a padding row has no target
    _assert_same(reference, _loss_and_grads(model, loss_fn, padded))


def test_bucket_collator_pads_rows_and_positions_and_flags_padding_rows_for_evaluation():
    def collate(rows):
        return {
            "input_ids": torch.tensor([r["ids"] + [0] * (3 - len(r["ids"])) for r in rows]),
            "attention_mask": torch.tensor(
                [[1] * len(r["ids"]) + [0] * (3 - len(r["ids"])) for r in rows]
            ),
            "labels": torch.tensor([r["label"] for r in rows]),
            "eval_mask": torch.tensor([1 for _ in rows]),
        }

    collator = BucketCollator(collate, [4, 8], pad_token_id=0, rows=4)
    batch = collator([{"ids": [5, 6, 7], "label": 1}, {"ids": [8], "label": 2}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0], [5, 6, 7, 0], [5, 6, 7, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [3, 1, 3, 3]
    assert batch["labels"].tolist() == [1, 2, 1, 1]
    assert batch["eval_mask"].tolist() == [1, 1, 0, 0]  # copies are never scored
    assert batch["loss_weight"].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_auto_picks_a_captured_step_on_one_gpu_and_eager_elsewhere():
    one_gpu = plan_step("auto", "cuda", False, "bf16-mixed", "single_label_classification")
    assert one_gpu.mode == "graphed" and one_gpu.captured and one_gpu.static_shapes
    assert plan_step("auto", "cpu", False, "32-true", "regression").mode == "eager"
    ddp = plan_step("auto", "cuda", True, "bf16-mixed", "single_label_classification")
    assert ddp.mode == "eager" and "data parallelism" in ddp.reason
    assert plan_step("auto", "cuda", False, "16-mixed", "generation").mode == "eager"
    assert plan_step("auto", "cuda", False, "bf16-mixed", "generation").mode == "graphed"
    assert plan_step("compiled", "cpu", False, "32-true", "regression").mode == "compiled"
    with pytest.raises(UserError, match="CUDA graphs need a GPU"):
        plan_step("graphed", "cpu", False, "32-true", "regression")
    with pytest.raises(UserError, match="beam search"):
        plan_step("compiled-graphed", "cuda", False, "bf16-mixed", "generation")
    with pytest.raises(UserError, match="must be auto or one of"):
        plan_step("turbo", "cuda", False, "bf16-mixed", "regression")


def test_eager_train_step_is_the_plain_pytorch_step():
    """Forward, loss, backward, clip, AdamW, schedule: the same parameters as a hand-written loop,
    and the loss is read once (its mean over the steps), not per step."""
    from transformers import get_linear_schedule_with_warmup

    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        optimizer = build_optimizer(model.parameters(), 1e-2, 0.01, "eager", torch.device("cpu"))
        return model, optimizer, get_linear_schedule_with_warmup(optimizer, 2, 10)

    class Out:
        def __init__(self, logits):
            self.logits = logits

    def loss_fn(model, batch):
        return loss_for("single_label_classification")(lambda **kw: Out(model(kw["input_ids"])),
                                                       batch)  # fmt: skip

    generator = torch.Generator().manual_seed(1)
    batches = [
        {"input_ids": torch.randn(4, 6, generator=generator), "labels": torch.tensor([0, 1, 2, 1])}
        for _ in range(5)
    ]
    model, optimizer, scheduler = build()

    def clip():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)

    step = TrainStep(model, loss_fn, optimizer, scheduler, mode="eager", clip=clip)
    for batch in batches:
        step(batch)

    reference, ref_opt, ref_sched = build()
    losses = []
    for batch in batches:
        loss = loss_fn(reference, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        ref_sched.step()
        losses.append(loss.item())
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert step.interval_loss() == pytest.approx(sum(losses) / len(losses), rel=1e-6)
    assert step.interval_loss() is None  # read and reset
    assert step.epoch_loss() == pytest.approx(sum(losses) / len(losses), rel=1e-6)


def test_token_collator_returns_what_transformers_data_collator_returns():
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from lora_exp.models import minilm_package_path
    from lora_exp.tasks.collate import TokenCollator

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_package_path()))
    texts = ["a short tweet", "a somewhat longer tweet about the weather today #sun", "ok"]
    rows = [
        {**tokenizer(t, truncation=True, max_length=8), "labels": i} for i, t in enumerate(texts)
    ]
    ours = TokenCollator(tokenizer.pad_token_id, tokenizer.padding_side)(rows)
    theirs = DataCollatorWithPadding(tokenizer)(rows)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key
        assert ours[key].dtype == value.dtype, key
    floats = [{**row, "labels": float(row["labels"]) + 0.5} for row in rows]  # regression
    assert TokenCollator(0)(floats)["labels"].dtype == torch.float32


def test_a_run_clips_gradients_with_the_fused_adamw_under_bf16_mixed(tmp_path, monkeypatch):
    """A GPU run always gets the fused AdamW, and Lightning's AMP plugin refuses to clip for a
    fused optimizer (it cannot unscale what the kernel unscales). bf16 has no loss scale, so
    the module clips with torch instead: the run must finish, clipping every step at the
    configured norm. Measured failure before the fix: all 20 collapse_clip runs on an H200."""
    from lora_exp.engine import step as step_module
    from lora_exp.run_cell import main
    from tests.conftest import TINY_RUN, compose

    def fused_adamw(params, lr, weight_decay, mode, device):  # what a CUDA device gets
        return torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay, fused=True)

    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(step_module, "build_optimizer", fused_adamw)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    overrides = ["trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0", "epochs=1"]
    cfg = compose([*TINY_RUN, *overrides, f"records_root={tmp_path}", f"+run_dir={tmp_path}/r"])
    record = main(cfg)
    assert record["status"] == "success", record["error"]
    assert norms and set(norms) == {1.0}
    assert len(norms) == record["history"][-1]["step"]  # once per optimizer step
