"""One problem interface: both LightningModules are siblings on `TrainingModule`, and checkpoints
written before the split still load (the Section 7 report and resumes read them)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, compose

COMMITTED_RUN = ROOT / "results/section7/runs/rank-8_targets-_q+v_seed-0_cpu"


def test_problems_are_siblings_each_built_by_the_shared_constructor():
    import inspect

    from lora_exp.generation_module import GenerationModule
    from lora_exp.module import ClassificationModule
    from lora_exp.training_module import TrainingModule

    for problem in (ClassificationModule, GenerationModule):
        assert problem.__bases__ == (TrainingModule,)
        source = inspect.getsource(problem.__init__)
        assert "super().__init__(" in source and "LightningModule.__init__" not in source
    assert not issubclass(GenerationModule, ClassificationModule)


def _module_of_committed_run():
    """A ClassificationModule of the committed run's configuration (random backbone weights)."""
    from lora_exp.methods import build_method
    from lora_exp.models import get_family, load_backbone
    from lora_exp.module import ClassificationModule

    record = json.loads((COMMITTED_RUN / "record.json").read_text())
    keep = [o for o in record["overrides"] if not o.startswith(("model.", "sweep="))]
    cfg = compose([*keep, "model.weights=random"])
    model = load_backbone(cfg.model, len(cfg.task.label_names), cfg.task.problem, 0)
    method = build_method(cfg.method)
    method.apply(model, get_family(cfg.model.family))
    optim = {"lr": 1e-3, "weight_decay": 0.0, "warmup_ratio": 0.0}
    return ClassificationModule(model, method, cfg.task, optim)


def test_a_committed_best_checkpoint_loads_with_the_same_keys():
    import torch

    checkpoint = torch.load(
        COMMITTED_RUN / "checkpoints/best.ckpt", map_location="cpu", weights_only=True
    )
    assert "hyper_parameters" not in checkpoint  # none saved before, none expected now
    module = _module_of_committed_run()
    module.on_load_checkpoint(checkpoint)
    missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    assert unexpected == [] and missing  # the frozen backbone is not in the checkpoint
    loaded = module.state_dict()
    for key, tensor in checkpoint["state_dict"].items():
        assert torch.equal(loaded[key], tensor), key
    assert module.history == [] and module.resumed_from_epoch is None  # a test, not a resume

    saved = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(saved)
    assert set(saved["state_dict"]) == set(checkpoint["state_dict"])
    assert set(saved["lora_exp"]) == set(checkpoint["lora_exp"])


@pytest.mark.parametrize("method", ["lora", "bitfit"])
def test_generation_checkpoints_hold_the_methods_tensors_only(method):
    from transformers import AutoConfig, AutoModelForCausalLM

    from lora_exp.generation_module import GenerationModule
    from lora_exp.methods import build_method
    from lora_exp.models import get_family

    cfg = compose(["model=tiny-gpt2", "task=e2e", f"method={method}"])
    arch = dict(cfg.model.arch)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    model = AutoModelForCausalLM.from_config(config)
    built = build_method(cfg.method)
    built.apply(model, get_family(cfg.model.family))
    module = GenerationModule(model, built, cfg.task, {}, None, 0, 0, [])
    saved = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(saved)
    expected = {f"model.{name}" for name in built.state_to_save(model)}
    assert set(saved["state_dict"]) == expected and expected
