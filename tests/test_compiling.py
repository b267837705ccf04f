"""torch.compile of a whole model or of its repeated blocks (lora_exp/compiling.py)."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from torch import nn
from torch._dynamo.utils import counters

from lora_exp.compiling import compile_model, repeated_blocks
from lora_exp.measure import bench, efficiency
from tests.family_cases import FAMILY_CASES, TINY_MODELS


def _lora_model(name: str, monkeypatch=None, layers: int | None = None):
    if layers is not None:  # more blocks than the tiny configs' two
        config = bench.model_config(name)
        key = "num_hidden_layers" if "num_hidden_layers" in config.arch else "n_layer"
        config.arch[key] = layers
        monkeypatch.setattr(bench, "model_config", lambda _: config)
    cpu = torch.device("cpu")
    model, _, _ = efficiency.build(name, "lora", "lora_exp", cpu, 0, efficiency.LORA, 8)
    for param_name, param in model.named_parameters():
        if "lora_B" in param_name:
            nn.init.normal_(param, std=0.1)
    return model.eval()  # no dropout: eager and compiled must agree


@pytest.mark.parametrize("name, blocks", [(row.model, row.blocks) for row in FAMILY_CASES])
def test_repeated_blocks_are_the_transformer_layers(name, blocks):
    model = _lora_model(name)
    assert repeated_blocks(model) is model.get_submodule(blocks)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_blocks_scope_matches_eager_with_one_graph_per_input_kind(name, monkeypatch):
    model = _lora_model(name, monkeypatch, layers=4)
    ids = bench.random_batch(model, 2, 8, torch.device("cpu"), 0)
    labels = torch.tensor([0, 1])
    eager = model(input_ids=ids, labels=labels).loss
    dynamo.reset()
    counters.clear()
    compiled = compile_model(model, "blocks", backend="aot_eager")
    assert compiled is model
    loss = compiled(input_ids=ids, labels=labels).loss
    loss.backward()
    # the first block's input needs no gradient (frozen embeddings), the others' do: two graphs
    # for any number of blocks (here 4), not one per block
    assert counters["stats"]["unique_graphs"] == 2
    dynamo.reset()
    torch.testing.assert_close(loss, eager)


def test_bad_scope_and_models_without_blocks_are_refused():
    with pytest.raises(ValueError, match="compile scope"):
        compile_model(nn.Linear(2, 2), "layers")
    with pytest.raises(ValueError, match="no list of repeated blocks"):
        compile_model(nn.Sequential(nn.Linear(2, 2)), "blocks")


TINY_LORA = [
    "model=tiny-bert",
    "method=lora",
    "budget.max_train_examples=64",
    "budget.max_eval_examples=32",
    "epochs=1",
    "trainer.enable_progress_bar=false",
    "measure.latency_trials=2",
]


@pytest.mark.slow
def test_a_run_with_compiled_blocks_trains_evaluates_merged_and_records(tmp_path):
    import json

    from tests.conftest import run_cli

    run_dir = tmp_path / "run"
    args = [*TINY_LORA, "trainer.step=compiled", f"hydra.run.dir={run_dir}"]
    result = run_cli([*args, f"records_root={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "success" and record["step"]["mode"] == "compiled"
    assert record["step"]["fallback"] is None
    assert record["step"]["buckets"] == [32, 64, 128]  # tweet_sentiment: max_seq_len 128
    assert record["test"] and record["measurements"]["latency/ms"] > 0


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("graphed", "trainer.step=graphed cannot run here: CUDA graphs need a GPU"),
        ("compiled-graphed", "cannot run here: CUDA graphs need a GPU"),
        ("fast", "trainer.step must be auto or one of eager, compiled, graphed"),
    ],
)
def test_a_step_mode_that_cannot_run_here_is_refused_with_exit_2(tmp_path, step, message):
    from tests.conftest import run_cli

    args = [*TINY_LORA, f"trainer.step={step}", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_cli([*args, f"records_root={tmp_path}"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
