"""Section 7 (Hu et al. 2021): subspace similarity φ, the random control, the amplification factor,
and the section7 command on run directories.

Expectation tested for the random control: for a fixed i-dim subspace and a uniformly random
j-dim subspace of R^d, E‖U₁ⁱᵀ U₂ʲ‖²_F = i·j/d, so E φ = max(i, j)/d (not min(i, j)/d; see
subspace.py).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lora_exp.errors import UserError
from lora_exp.report import section7, subspace


def random_a(r: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((r, d))


def test_phi_is_one_for_identical_and_zero_for_orthogonal_subspaces():
    a = random_a(8, 32, 0)
    assert np.allclose(subspace.phi_grid(a, a), 1.0)
    assert np.allclose(subspace.phi_grid(a, -3.0 * a), 1.0)  # same subspace, other scale and sign
    eye = np.eye(16)
    first, second = eye[:4], 2.0 * eye[4:12]  # spans e1..e4 and e5..e12
    assert np.allclose(subspace.phi_grid(first, second), 0.0)
    # A row space contained in a larger one: φ(i, j) = 1 once j covers it.
    big = np.vstack([10.0 * first, eye[4:8]])  # top 4 directions = first's span
    assert subspace.phi(first, big, 4, 4) == pytest.approx(1.0)
    assert subspace.phi(first, big, 4, 8) == pytest.approx(1.0)


def test_phi_matches_a_hand_computation():
    # A₁: right-singular vectors e1 (σ=3), e3 (σ=1). A₂: (e1+e2)/√2 (σ=2√2), e3 (σ=1).
    a1 = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a2 = np.array([[2.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    # U₁ᵀU₂ = [[1/√2, 0], [0, 1]] up to signs: squared entries [[0.5, 0], [0, 1]].
    assert subspace.phi(a1, a2, 1, 1) == pytest.approx(0.5)
    assert subspace.phi(a1, a2, 1, 2) == pytest.approx(0.5 / 1)
    assert subspace.phi(a1, a2, 2, 1) == pytest.approx(0.5 / 1)
    assert subspace.phi(a1, a2, 2, 2) == pytest.approx((0.5 + 1.0) / 2)
    assert np.allclose(subspace.phi_grid(a1, a2), [[0.5, 0.5], [0.5, 0.75]])


def test_phi_is_symmetric_and_grid_equals_pointwise():
    a1, a2 = random_a(4, 20, 1), random_a(6, 20, 2)
    grid = subspace.phi_grid(a1, a2)
    assert grid.shape == (4, 6)
    assert np.allclose(grid, subspace.phi_grid(a2, a1).T)  # φ(A₁,A₂,i,j) = φ(A₂,A₁,j,i)
    for i in range(1, 5):
        for j in range(1, 7):
            assert grid[i - 1, j - 1] == pytest.approx(subspace.phi(a1, a2, i, j))
    assert ((grid >= 0) & (grid <= 1 + 1e-12)).all()
    with pytest.raises(ValueError):
        subspace.phi(a1, a2, 5, 1)


def test_random_control_is_near_max_i_j_over_d():
    d, draws = 64, 400
    a = random_a(8, d, 3)
    mean = np.mean(
        [subspace.phi_grid(a, subspace.gaussian_like(a, seed)) for seed in range(draws)], axis=0
    )
    expected = np.array(
        [[subspace.expected_random_phi(i, j, d) for j in range(1, 9)] for i in range(1, 9)]
    )
    assert np.abs(mean - expected).max() < 0.01
    # e.g. (i, j) = (1, 8): 8/64 = 0.125, far from min(i, j)/d = 1/64.
    assert mean[0, 7] == pytest.approx(0.125, abs=0.01)


def orthogonal(n: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


def test_amplification_factor_closed_form():
    d_out, d_in = 12, 10
    p, q = orthogonal(d_out, 0)[:, :d_in], orthogonal(d_in, 1)
    s = np.array([9.0, 7.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.25])
    w = p @ np.diag(s) @ q.T  # singular values s, left p_k, right q_k
    # Rank 1 along W's 6th direction: ΔW = c p₆ q₆ᵀ -> Uᵀ W V = s₆, amplification c / s₆.
    delta = 0.4 * np.outer(p[:, 5], q[:, 5])
    stats = subspace.amplification(delta, w, r=1)
    assert stats["proj_delta"] == pytest.approx(2.0)
    assert stats["amplification"] == pytest.approx(0.4 / 2.0)
    assert stats["proj_w"] == pytest.approx(9.0)  # W's own top direction
    assert stats["norm_w"] == pytest.approx(np.sqrt(np.sum(s**2)))
    # Rank 2 crossing W's top directions: ΔW = c₁ p₁ q₂ᵀ + c₂ p₂ q₁ᵀ (c₁ > c₂), so
    # Uᵀ W V = [[p₁ᵀWq₂, p₁ᵀWq₁], [p₂ᵀWq₂, p₂ᵀWq₁]] = [[0, s₁], [s₂, 0]].
    c1, c2 = 0.3, 0.1
    delta = c1 * np.outer(p[:, 0], q[:, 1]) + c2 * np.outer(p[:, 1], q[:, 0])
    stats = subspace.amplification(delta, w, r=2)
    assert stats["norm_delta"] == pytest.approx(np.hypot(c1, c2))
    assert stats["proj_delta"] == pytest.approx(np.hypot(9.0, 7.0))
    assert stats["amplification"] == pytest.approx(np.hypot(c1, c2) / np.hypot(9.0, 7.0))
    assert 0 < stats["proj_random"] < stats["proj_w"]


# --- the section7 command on run directories ---


def tiny_bert_config(rank: int, weights: str = "random", local_path=None) -> dict:
    arch = {
        "model_type": "bert",
        "vocab_size": 64,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 32,
        "type_vocab_size": 2,
    }
    return {
        "model": {
            "name": "tiny-bert",
            "family": "bert",
            "weights": weights,
            "hf_name": None,
            "local_path": local_path,
            "arch": arch,
        },
        "method": {"name": "lora", "rank": rank, "alpha": rank, "targets": ["q", "v"]},
        "task": {"name": "t", "problem": "single_label_classification", "label_names": ["a", "b"]},
    }


def make_run(
    path, rank: int, seed: int, config: dict | None = None, lora: bool = True,
    task: str = "tweet_sentiment",
):  # fmt: skip
    """A run directory: record.json and a Lightning-style checkpoint of A, B and the head."""
    gen = torch.Generator().manual_seed(seed)
    state = {"model.classifier.weight": torch.zeros(2, 16)}
    if lora:
        for layer in range(2):
            for name in ("query", "value"):
                prefix = f"model.bert.encoder.layer.{layer}.attention.self.{name}"
                state[f"{prefix}.lora_A"] = torch.randn(rank, 16, generator=gen)
                state[f"{prefix}.lora_B"] = torch.randn(16, rank, generator=gen)
    (path / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 0}, path / "checkpoints" / "best.ckpt")
    record = {
        "config": config or tiny_bert_config(rank),
        "seed": seed,
        "task": {"name": task},
        "environment": {"device": "cpu (test)"},
    }
    (path / "record.json").write_text(json.dumps(record))
    return state


def test_section7_writes_grids_heatmaps_and_amplification(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    arch = dict(tiny_bert_config(4)["model"]["arch"])
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        AutoConfig.for_model(arch.pop("model_type"), num_labels=2, **arch)
    )
    model.save_pretrained(tmp_path / "pretrained")  # stands in for a pretrained checkpoint
    config = tiny_bert_config(4, weights="hub", local_path=str(tmp_path / "pretrained"))
    state_a = make_run(tmp_path / "r4", 4, seed=0, config=config)
    state_b = make_run(tmp_path / "r8", 8, seed=1, config=tiny_bert_config(8))
    written = section7.report_section7(tmp_path / "r4", tmp_path / "r8", tmp_path / "out")
    assert sorted(p.name for p in written) == [
        "amplification.csv",
        "amplification.md",
        "subspace.csv",
        "subspace_layer1.pdf",
        "subspace_layer1.png",
    ]
    import pandas as pd

    grid = pd.read_csv(tmp_path / "out" / "subspace.csv")
    assert len(grid) == 2 * 2 * 4 * 8  # layers × targets × i × j
    key = "model.bert.encoder.layer.1.attention.self.value.lora_A"
    expected = subspace.phi_grid(state_a[key].double().numpy(), state_b[key].double().numpy())
    cell = grid[(grid.layer == 1) & (grid.target == "v") & (grid.i == 3) & (grid.j == 5)]
    assert cell["phi"].item() == pytest.approx(expected[2, 4], abs=1e-6)
    assert cell["expected_random"].item() == pytest.approx(5 / 16)
    amp = pd.read_csv(tmp_path / "out" / "amplification.csv")
    assert len(amp) == 4 and set(amp["run"].str[0]) == {"a"}  # run b is random-initialised
    prefix = "bert.encoder.layer.0.attention.self.query"
    w = model.get_submodule(prefix).weight.detach().double().numpy()
    delta = (
        state_a[f"model.{prefix}.lora_B"].double().numpy()
        @ state_a[f"model.{prefix}.lora_A"].double().numpy()
    )  # alpha / r = 1
    row = amp[(amp.layer == 0) & (amp.target == "q")].iloc[0]
    assert row["amplification"] == pytest.approx(
        subspace.amplification(delta, w, 4)["amplification"], rel=1e-5
    )
    assert "random-initialised model" in (tmp_path / "out" / "amplification.md").read_text()


def test_fused_gpt2_factors_are_split_per_target(tmp_path):
    config = tiny_bert_config(2)
    config["model"] = {"name": "tiny-gpt2", "family": "gpt2", "weights": "random"}
    a = torch.arange(2 * 2 * 6, dtype=torch.float32).reshape(4, 6)  # (P·r, d_in), P = 2 (q, v)
    b = torch.arange(2 * 6 * 2, dtype=torch.float32).reshape(12, 2)  # (P·o, r)
    (tmp_path / "checkpoints").mkdir()
    state = {
        "model.transformer.h.0.attn.c_attn.lora_A": a,
        "model.transformer.h.0.attn.c_attn.lora_B": b,
    }
    torch.save({"state_dict": state}, tmp_path / "checkpoints" / "best.ckpt")
    (tmp_path / "record.json").write_text(json.dumps({"config": config}))
    factors, _ = section7.lora_factors(tmp_path)
    assert sorted(factors) == [(0, "q"), (0, "v")]
    assert np.array_equal(factors[(0, "v")].a, a[2:].numpy())
    assert np.array_equal(factors[(0, "v")].b, b[6:].numpy()) and factors[(0, "v")].part == 2


def test_section7_bad_input_messages(tmp_path):
    with pytest.raises(UserError, match=r"has no record\.json"):
        section7.lora_factors(tmp_path)
    (tmp_path / "record.json").write_text(json.dumps({"config": tiny_bert_config(4)}))
    with pytest.raises(UserError, match=r"has no LoRA weights: no checkpoints/best\.ckpt"):
        section7.lora_factors(tmp_path)
    make_run(tmp_path / "ft", 4, seed=0, lora=False)
    with pytest.raises(UserError, match="holds no lora_A tensors"):
        section7.lora_factors(tmp_path / "ft")
    make_run(tmp_path / "a", 4, seed=0)
    other = tiny_bert_config(4)
    other["model"]["name"] = "tiny-bert-2"
    make_run(tmp_path / "b", 4, seed=0, config=other)
    with pytest.raises(UserError, match="different models"):
        section7.report_section7(tmp_path / "a", tmp_path / "b", tmp_path / "out")


def test_section7_study_summarises_pairs_and_table7(tmp_path):
    """The no-argument section7 command: small vs large rank, two seeds, Table 7 per seed."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lora_exp.report import section7_study

    arch = dict(tiny_bert_config(2)["model"]["arch"])
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        AutoConfig.for_model(arch.pop("model_type"), num_labels=2, **arch)
    )
    model.save_pretrained(tmp_path / "pretrained")
    runs = tmp_path / "runs"
    for rank, seed in [(2, 0), (2, 1), (8, 0), (8, 1)]:
        config = tiny_bert_config(rank, weights="hub", local_path=str(tmp_path / "pretrained"))
        make_run(runs / f"r{rank}_s{seed}", rank, seed=seed, config=config)
    make_run(runs / "no_ckpt", 8, seed=2, lora=False)  # no lora_A: not a LoRA [q,v] source
    # embedded_methods' LoRA also ran bbc_news: another task, not a source of the rank study
    make_run(runs / "bbc", 8, seed=3, config=config, task="bbc_news")
    (runs / "no_ckpt" / "checkpoints" / "best.ckpt").unlink()
    written = section7_study.report_study(
        runs, tmp_path / "out", small=2, large=8, amplification_ranks=(2, 8)
    )
    names = {p.relative_to(tmp_path / "out").as_posix() for p in written}
    assert {"table.md", "amplification.csv", "amplification_by_layer.png"} <= names
    assert {"subspace_pairs.csv", "r2_vs_r8/subspace.csv"} <= names
    assert "r8_seed0_vs_seed1/subspace_layer1.png" in names  # one representative pair each
    amp = pd.read_csv(tmp_path / "out" / "amplification.csv")
    assert len(amp) == 4 * 2 * 2  # runs × layers × targets
    assert sorted(amp["rank"].unique()) == [2, 8]
    text = (tmp_path / "out" / "table.md").read_text()
    assert "r=2: seed 0,1 on" not in text and "r=2: seeds 0,1 on cpu (test)" in text
    assert "r=2: seeds [0, 1]; r=8: seeds [0, 1]" in text
    # two rank pairs (seeds 0 and 1), one seed pair (0, 1) at r = 8
    assert "| r2_vs_r8 | ΔW_q | mean | 2 |" in text and "| r8_seeds | ΔW_v | 1 | 1 |" in text
    assert "2 pairs: r2 s0 vs r8 s0, r2 s1 vs r8 s1" in text
    pairs = pd.read_csv(tmp_path / "out" / "subspace_pairs.csv")
    assert sorted(pairs["pair"].unique()) == ["r2 s0 vs r8 s0", "r2 s1 vs r8 s1", "r8 s0 vs r8 s1"]
    at = pairs[(pairs.comparison == "r2_vs_r8") & (pairs.target == "q") & (pairs.i == 2)]
    per_pair = at[at.j == 8].groupby("pair")["phi"].mean()  # mean over layers, per pair
    assert f"{np.median(per_pair):.3f} [{per_pair.min():.3f}, {per_pair.max():.3f}]" in text
    with pytest.raises(UserError, match=r"needs LoRA \[q,v\] checkpoints"):
        section7_study.report_study(runs, tmp_path / "out2", small=4, large=8)


def test_missing_local_weights_fall_back_to_the_original_with_a_warning(monkeypatch, tmp_path):
    """Section 7 regenerates exactly only from the weights the run trained on; without them it
    says so and loads the model's original weights."""
    import lora_exp.models

    loaded = {}
    monkeypatch.setattr(
        lora_exp.models,
        "load_backbone",
        lambda model, *args, **kwargs: loaded.setdefault("local_path", model.local_path),
    )
    config = tiny_bert_config(4, weights="hub", local_path=str(tmp_path / "gone"))
    with pytest.warns(UserWarning, match="gone.*missing.*original weights"):
        section7.load_pretrained({"config": config})
    assert loaded == {"local_path": None}
