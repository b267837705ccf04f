"""The latency (Table 1) and training-efficiency benchmarks, at tiny sizes on the CPU.

Each benchmark runs once per module (fixtures) with 2-3 trials; the tests read its rows, CSV,
Markdown and run record. The trial order is checked with a recording timer, the statistics with
a fake timer whose times are known, and the adapter sizes of Table 1 against full-size models on
the meta device.
"""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch

from lora_exp.engine.capture_path import one_attention_path_for_capture
from lora_exp.measure import bench, efficiency, latency
from lora_exp.measure.timing import Runner, interleave
from tests.family_cases import CASES, TINY_MODELS

LATENCY_COLUMNS = "batch_size,seq_len,variant,mode,ms_median,ms_p10,ms_p90,overhead_pct,device"
EFFICIENCY_COLUMNS = (
    "model,seq_len,batch_size,method,impl,step_ms,tokens_per_s,peak_mem_bytes,trainable,"
    "saved_bytes,device"
)


class RecordingTimer:
    """Times each call for real and remembers which runner it was."""

    def __init__(self):
        self.keys = []

    def __call__(self, runner: Runner) -> float:
        self.keys.append(runner.key)
        start = time.perf_counter()
        runner()
        return (time.perf_counter() - start) * 1e3


def read_csv(path):
    with open(path) as handle:
        header = handle.readline().strip()
    with open(path) as handle:
        return header, list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def latency_run():
    timer = RecordingTimer()
    result = latency.run_latency(
        "tiny-gpt2",
        [(2, 16, None)],
        trials=3,
        warmup=1,
        device="cpu",
        timer=timer,
        log=lambda *_: None,
    )
    return result, timer


@pytest.fixture(scope="module")
def efficiency_run():
    return efficiency.run_efficiency(
        models=["tiny-roberta"], seq_lens=[8], batch_size=2, steps=2, warmup=1, device="cpu",
        log=lambda *_: None,
    )  # fmt: skip


def test_interleave_visits_variants_round_robin():
    calls = []
    runners = [Runner((name,), lambda n=name: calls.append(n)) for name in "abc"]
    seen = []

    def fake(runner):
        seen.append(runner.key[0])
        runner()
        return 10.0 * len(seen)

    times = interleave(runners, trials=4, warmup=2, timer=fake)
    assert "".join(seen) == "abc" + "bca" + "cab" + "abc"  # each trial starts one further on
    assert "".join(calls) == "abc" * 2 + "".join(seen)  # 2 untimed warm-up rounds first
    assert times[("a",)] == [10.0, 60.0, 80.0, 100.0]  # a's position: 1st, 3rd, 2nd, 1st
    assert bench.percentiles(times[("b",)])["ms_median"] == 65.0  # [20, 40, 90, 110]


def test_latency_trials_are_interleaved_across_variants(latency_run):
    result, timer = latency_run
    order = [(v, "eager") for v in latency.VARIANTS]
    rotated = [order[t % len(order) :] + order[: t % len(order)] for t in range(3)]
    assert timer.keys == [key for trial in rotated for key in trial]
    assert [(r["variant"], r["mode"]) for r in result["rows"]] == order


def test_latency_rows_are_sane(latency_run):
    result, _ = latency_run
    rows = {r["variant"]: r for r in result["rows"]}
    for row in rows.values():
        assert 0 < row["ms_p10"] <= row["ms_median"] <= row["ms_p90"]
        assert row["device"].startswith("cpu") and row["trials"] == 3
    assert rows["base"]["overhead_pct"] == 0.0
    assert rows["adapter_h"]["adapter_params"] > rows["adapter_l"]["adapter_params"] > 0
    info = result["info"]
    assert info["2x16/lora_merged"]["total"] == info["2x16/base"]["total"]  # merge_and_unload
    assert info["2x16/lora_unmerged"]["total"] == info["2x16/base"]["total"] + 2 * 2 * 2 * 32 * 4
    assert result["checks"]["2x16"]["lora_merged_vs_unmerged_max_abs_diff"] < 1e-5
    assert any("CUDA graphs need a GPU" in n for n in result["notes"])


def test_latency_outputs_and_record(latency_run, tmp_path):
    result, _ = latency_run
    config = {"model": {"name": "tiny-gpt2"}, "trials": 3, "warmup": 1, "head": "lm"}
    config |= {"lora": latency.LORA, "device": "cpu", "sizes": [[2, 16, None]], "adapter_rank": 8}
    paths = latency.write_outputs(tmp_path, result, config, time.time(), record=True)
    header, rows = read_csv(tmp_path / "table.csv")
    assert header == LATENCY_COLUMNS and len(rows) == len(latency.VARIANTS)
    assert "| 2×16 | adapter_h |" in (tmp_path / "table.md").read_text()
    record = json.loads(paths[-1].read_text())
    assert paths[-1].name == "record.json" and paths[-1].parent.parent == tmp_path / "runs"
    assert record["status"] == "success" and record["schema_version"] == 1
    assert record["latency"][0]["variant"] == "base" and record["environment"]["packages"]
    from lora_exp.report.latency import latency_frame  # the report reads these records

    frame = latency_frame([tmp_path / "runs"])
    assert sorted(frame["variant"]) == sorted(latency.VARIANTS)
    assert frame.set_index("variant").loc["base", "overhead_pct"] == 0.0


def test_latency_cli(tmp_path, capsys):
    args = ["--model", "tiny-gpt2", "--sizes", "1x8", "--trials", "2", "--warmup", "0"]
    args += ["--variants", "base", "adapter_l", "--device", "cpu", "--out", str(tmp_path)]
    assert latency.main(args) == 0
    header, rows = read_csv(tmp_path / "table.csv")
    assert header == LATENCY_COLUMNS
    assert [r["variant"] for r in rows] == ["base", "adapter_l"]
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 1
    with pytest.raises(SystemExit):
        latency.main(["--protocol", "paper", "--model", "tiny-gpt2"])


@pytest.mark.parametrize(
    "variant, budget, rank, count",
    [
        ("adapter_l", 500_000, 9, 516_312),
        ("adapter_h", 500_000, 5, 540_912),
        ("adapter_l", 11_090_000, 224, 11_089_152),  # Table 3's 11.09M exactly
        ("adapter_h", 11_090_000, 112, 11_064_576),
    ],
)
def test_table1_adapter_sizes_on_gpt2_medium(variant, budget, rank, count):
    from lora_exp.measure.params import count_parameters
    from lora_exp.methods import build_method
    from lora_exp.models import build_on_meta, get_family

    model_cfg = bench.model_config("gpt2-medium")
    assert latency.adapter_rank(variant, 1024, 24, budget) == rank
    model = build_on_meta(model_cfg, 2, "single_label_classification")
    build_method(bench.method_config(variant, rank=rank)).apply(model, get_family("gpt2"))
    assert count_parameters(model, get_family("gpt2"))["params/trainable"] == count


def test_efficiency_rows_are_sane(efficiency_run, tmp_path):
    rows = {(r["method"], r["impl"]): r for r in efficiency_run["rows"]}
    assert list(rows) == [(m, "lora_exp") for m in efficiency.METHODS] + [("lora", "peft")]
    for row in rows.values():
        assert row["step_ms_p10"] <= row["step_ms"] <= row["step_ms_p90"] and row["step_ms"] > 0
        assert row["tokens_per_s"] == pytest.approx(2 * 8 / (row["step_ms"] / 1e3), rel=1e-3)
        assert row["peak_mem_bytes"] is None  # GPU only
    full, lora, peft = rows["full_ft", "lora_exp"], rows["lora", "lora_exp"], rows["lora", "peft"]
    assert lora["saved_bytes"] < full["saved_bytes"] / 10
    assert lora["trainable"] == peft["trainable"] == 2 * 2 * 2 * 32 * 8  # 2 layers, q and v
    assert lora["optimizer_state_bytes"] < full["optimizer_state_bytes"]
    config = {"batch_size": 2, "autocast": False, "fused_adamw": False, "steps": 2, "warmup": 1}
    config |= {"lora": efficiency.LORA, "adapter_rank": 8, "device": "cpu", "seed": 0}
    efficiency.write_outputs(tmp_path, efficiency_run, config, time.time(), record=False)
    header, csv_rows = read_csv(tmp_path / "table.csv")
    assert header == EFFICIENCY_COLUMNS and len(csv_rows) == 5
    assert csv_rows[0]["peak_mem_bytes"] == "" and int(csv_rows[0]["saved_bytes"]) > 0
    assert "| tiny-roberta | 8 | lora | peft |" in (tmp_path / "table.md").read_text()


def test_efficiency_cli(tmp_path):
    args = ["--models", "tiny-gpt2", "--seq-lens", "8", "--batch-size", "2", "--steps", "1"]
    args += ["--warmup", "0", "--methods", "lora", "--device", "cpu", "--out", str(tmp_path)]
    assert efficiency.main(args) == 0
    header, rows = read_csv(tmp_path / "table.csv")
    assert header == EFFICIENCY_COLUMNS
    assert [(r["method"], r["impl"]) for r in rows] == [("lora", "lora_exp"), ("lora", "peft")]
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert record["status"] == "success" and len(record["efficiency"]) == 2


def test_efficiency_rounds_pool_every_step_and_rotate_the_order(tmp_path):
    args = ["--models", "tiny-gpt2", "--seq-lens", "8", "--batch-size", "2", "--steps", "2"]
    args += ["--warmup", "0", "--methods", "lora", "bitfit", "--no-peft", "--rounds", "3"]
    args += ["--device", "cpu", "--out", str(tmp_path)]
    assert efficiency.main(args) == 0
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert record["config"]["rounds"] == 3
    for row in record["efficiency"]:
        assert row["rounds"] == 3 and len(row["step_times_ms"]) == 6  # 3 rounds x 2 steps
        median = bench.percentiles(row["step_times_ms"])["ms_median"]
        assert row["step_ms"] == pytest.approx(median, abs=1e-3)  # rounded to the microsecond
    assert "in each of 3 rounds" in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize("mode", ["graphed", "compiled-graphed"])
def test_graphed_modes_need_a_gpu(tmp_path, capsys, mode):
    args = ["--models", "tiny-gpt2", "--seq-lens", "8", "--batch-size", "2", "--steps", "1"]
    args += ["--methods", "lora", "--modes", mode, "--device", "cpu", "--out", str(tmp_path)]
    assert efficiency.main(args) != 0
    assert f"mode '{mode}' (a CUDA graph of the training step) needs a GPU" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "table.csv").exists()


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_capture_takes_one_attention_path(model_name):
    """Warm-up and capture see one answer to transformers' "is a stream capturing?": the eager
    one (no mask) for an encoder, the capture one (explicit causal mask) for a causal LM (rows
    with `causal_lm`). Either path computes the same logits; the answer is restored afterwards."""
    from transformers.utils import import_utils

    causal = CASES[model_name].causal_lm

    model = bench.build_model(
        bench.model_config(model_name), "cls", torch.device("cpu"), torch.float32, 0
    ).eval()
    ids = bench.random_batch(model, 2, 12, torch.device("cpu"), 0)
    original = import_utils.is_cuda_stream_capturing
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with one_attention_path_for_capture(model):
            assert import_utils.is_cuda_stream_capturing() is causal
            assert import_utils.is_tracing() is causal
            pinned = model(input_ids=ids).logits
    assert import_utils.is_cuda_stream_capturing is original
    torch.testing.assert_close(pinned, plain, rtol=0, atol=1e-6)


def test_efficiency_markdown_shows_gpu_busy_time_where_profiled():
    from lora_exp.measure.tables import efficiency_markdown

    row = {"model": "m", "seq_len": 128, "method": "lora", "impl": "lora_exp", "step_ms": 50.0}
    row |= {"step_ms_p10": 49.0, "step_ms_p90": 51.0, "tokens_per_s": 1.0, "peak_mem_bytes": 1}
    row |= {"optimizer_state_bytes": 1, "trainable": 1, "saved_bytes": 1, "device": "gpu"}
    config = {"batch_size": 32, "autocast": True, "fused_adamw": True, "steps": 20, "warmup": 5}
    config |= {"lora": efficiency.LORA, "adapter_rank": 8}
    plain = efficiency_markdown({"rows": [row], "notes": []}, config)
    assert "GPU busy" not in plain
    row |= {"kernels_per_step": 1800.0, "gpu_busy_ms": 12.5}
    profiled = efficiency_markdown({"rows": [row], "notes": []}, config)
    assert "| m | 128 | lora | lora_exp | 1,800 | 12.5 | 50.0 | 25% |" in profiled


def test_measure_inference_latency_merges_and_restores():
    from lora_exp.methods import build_method
    from lora_exp.methods.lora import lora_layers
    from lora_exp.models import get_family

    model = bench.build_model(bench.model_config("tiny-roberta"), "cls", "cpu", torch.float32, 0)
    method = build_method(bench.method_config("lora", rank=2))
    method.apply(model, get_family("roberta"))
    model.train()
    seen = []

    def fake(runner):
        seen.append(all(layer.merged for layer in lora_layers(model)) and not model.training)
        runner()
        return 2.0

    out = latency.measure_inference_latency(model, method, 2, 8, trials=3, warmup=1, timer=fake)
    assert out["latency/ms"] == out["latency/ms_median"] == 2.0 and out["latency/merged"]
    assert seen == [True] * 3  # timed merged, in eval mode
    assert model.training and not any(layer.merged for layer in lora_layers(model))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_timings_exist():
    result = latency.run_latency(
        "tiny-gpt2", [(2, 16, None)], trials=3, warmup=1, device="cuda", log=lambda *_: None
    )
    modes = {(r["variant"], r["mode"]) for r in result["rows"]}
    for variant in ("base", "lora_merged", "lora_unmerged", "adapter_l", "adapter_h"):
        assert (variant, "graph") in modes and (variant, "eager") in modes
    assert all(r["ms_median"] > 0 for r in result["rows"])
