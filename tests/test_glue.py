"""GLUE: both local layouts, labels, metrics, bad input, offline failure, hparams, init_from, runs.

Fixtures: tests/assets/glue (written by make_fixtures.py): `glue_tsv/` is the original GLUE
distribution, `hub_parquet/` and `hub_jsonl/` are per-split exports of the hub dataset.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from lora_exp.errors import UserError
from tests.conftest import CONF, ROOT, compose, run_cli

ASSETS = ROOT / "tests" / "assets" / "glue"
sys.path.insert(0, str(ASSETS))
import make_fixtures  # noqa: E402  (the examples, with their hub label ids written by hand)

TASKS = ["mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb"]
FOLDER = make_fixtures.GLUE_FOLDERS
TINY_RUN = [
    "model=tiny-bert",
    "method=lora",
    "lr=3e-3",
    "batch_size=8",
    "epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
]
LEAD_CALLS_PREFLIGHT = "preflight" in (ROOT / "lora_exp" / "run_cell.py").read_text()
LEAD_SCORES_EXTRAS = "score_extra_splits" in (ROOT / "lora_exp" / "fit.py").read_text()
LEAD_LOADS_INIT = "load_init_checkpoint" in (ROOT / "lora_exp" / "fit.py").read_text()
SETUP_IS_A_DEFAULT = "- setup:" in (CONF / "config.yaml").read_text()
RESTRICTED = "setup=restricted" if SETUP_IS_A_DEFAULT else "+setup=restricted"


def _task(name: str, data_dir, *extra: str):
    return compose([f"task={name}", f"task.data_dir={data_dir}", *extra]).task


def _load(name: str, data_dir, *extra: str):
    from lora_exp.tasks import load_splits

    return load_splits(_task(name, data_dir, *extra))


def _as_dict(splits) -> dict:
    return {name: ds.to_dict() for name, ds in splits.items()}


# --- both layouts, same examples, the hub's label ids -----------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_every_layout_reads_the_same_examples_and_label_ids(task):
    tsv = _load(task, ASSETS / "glue_tsv")  # the GLUE root: DIR/<FOLDER>/...
    parquet = _load(task, ASSETS / "hub_parquet")  # DIR/<config>/<split>.parquet
    jsonl = _load(task, ASSETS / "hub_jsonl" / task)  # DIR/<split>.jsonl
    assert _as_dict(tsv) == _as_dict(parquet) == _as_dict(jsonl)
    assert tsv["train"].features == parquet["train"].features == jsonl["train"].features

    cfg = _task(task, ASSETS / "glue_tsv")
    fields = list(cfg.text_fields)
    expected = make_fixtures.examples(task)
    splits = {"train": cfg.splits.train, "validation": cfg.splits.validation}
    splits |= {s: s for s in cfg.extra_eval_splits}
    assert set(tsv) == {*splits, "test"}
    for ours, hub in splits.items():
        rows = expected[hub]
        assert tsv[ours].column_names == [*fields, "label"]
        assert len(tsv[ours]) == len(rows) == make_fixtures.SIZES[task][hub]
        for k, field in enumerate(fields):
            assert tsv[ours][field] == [r[k] for r in rows]
        if task == "stsb":
            assert tsv[ours]["label"] == pytest.approx([r[-1] for r in rows], abs=1e-6)
        else:
            assert tsv[ours]["label"] == [r[-1] for r in rows]
    assert tsv["test"].to_dict() == tsv["validation"].to_dict()  # GLUE reports dev


def test_label_ids_follow_the_hubs_class_order():
    """Hand-checked rows: string labels (MNLI/QNLI/RTE) and 0/1 labels map to the hub's ids."""
    mnli = _load("mnli", ASSETS / "glue_tsv")
    assert mnli["train"].features["label"].names == ["entailment", "neutral", "contradiction"]
    assert mnli["train"]["hypothesis"][2] == "Chloe has never been to the old library."
    assert mnli["train"]["label"][:3] == [0, 1, 2]  # entailment, neutral, contradiction
    assert len(mnli["validation"]) == 9 and len(mnli["validation_mismatched"]) == 7
    rte = _load("rte", ASSETS / "glue_tsv")
    assert (
        rte["train"]["sentence2"][0] == "Ada sold a small bakery." and rte["train"]["label"][0] == 1
    )
    assert rte["train"].features["label"].names == ["entailment", "not_entailment"]
    qnli = _load("qnli", ASSETS / "glue_tsv")
    assert qnli["train"]["label"][:2] == [0, 1]  # "entailment", "not_entailment" in the TSV
    mrpc = _load("mrpc", ASSETS / "glue_tsv")  # train.tsv starts with a byte-order mark
    assert mrpc["train"].features["label"].names[1] == "equivalent"
    assert mrpc["train"]["label"][:3] == [0, 1, 1]
    cola = _load("cola", ASSETS / "glue_tsv")  # no header; "*" marks the unacceptable ones
    assert cola["train"]["sentence"][0] == "Farid the book gave to Ben to."
    assert cola["train"]["label"][:3] == [0, 1, 1]
    sst2 = _load("sst2", ASSETS / "glue_tsv")
    assert sst2["train"]["sentence"][0].endswith(
        " "
    )  # GLUE's trailing space is kept, as the hub does


def test_quotes_are_text_and_incomplete_rows_are_dropped_as_the_hub_does():
    mnli = _load("mnli", ASSETS / "glue_tsv")
    assert mnli["train"]["premise"][3] == 'Dev waited at the station for the "last train.'
    qqp = _load("qqp", ASSETS / "glue_tsv")
    assert "Why is the sky blue?" not in qqp["train"]["question1"]  # the row lacking its label
    assert len(qqp["train"]) == 24
    raw_lines = (ASSETS / "glue_tsv" / "QQP" / "train.tsv").read_text().splitlines()
    assert len(raw_lines) == 1 + 25  # header + 24 rows + the incomplete one


def test_stsb_is_float_regression_in_every_layout():
    from datasets import Value

    for data_dir in (ASSETS / "glue_tsv", ASSETS / "hub_parquet", ASSETS / "hub_jsonl" / "stsb"):
        splits = _load("stsb", data_dir)
        assert splits["train"].features["label"] == Value("float32")
        assert splits["train"]["label"][1] == pytest.approx(0.7, abs=1e-6)


def test_task_folder_and_hub_shard_names_are_found(tmp_path):
    base = _as_dict(_load("rte", ASSETS / "glue_tsv"))
    assert _as_dict(_load("rte", ASSETS / "glue_tsv" / "RTE")) == base  # DIR = the task folder
    snapshot = tmp_path / "rte"  # `huggingface-cli download nyu-mll/glue` names
    snapshot.mkdir()
    for split in ("train", "validation"):
        shutil.copy(
            ASSETS / "hub_parquet" / "rte" / f"{split}.parquet",
            snapshot / f"{split}-00000-of-00001.parquet",
        )
    assert _as_dict(_load("rte", tmp_path)) == base


def test_committed_fixtures_are_what_make_fixtures_writes(tmp_path):
    make_fixtures.write_all(tmp_path)
    for path in sorted(ASSETS.rglob("*")):
        if path.suffix in (".tsv", ".jsonl"):
            assert (tmp_path / path.relative_to(ASSETS)).read_bytes() == path.read_bytes(), path


# --- metrics on hand-made predictions ---------------------------------------------------------


def _metrics(keys, num_labels, preds, target):
    import torch

    from lora_exp.tasks.metrics import build_metrics

    collection = build_metrics(keys, num_labels)
    collection.update(torch.tensor(preds), torch.tensor(target))
    return {k: v.item() for k, v in collection.compute().items()}


def test_accuracy_f1_and_mcc_against_the_confusion_matrix():
    target = [1, 1, 1, 0, 0, 0, 1, 0]
    preds = [1, 0, 1, 0, 1, 0, 1, 1]  # TP=3 FN=1 FP=2 TN=2, worked by hand
    tp, fn, fp, tn = 3, 1, 2, 2
    got = _metrics(["acc", "f1", "mcc"], 2, preds, target)
    assert got["acc"] == pytest.approx(5 / 8)
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 6/9: F1 of class 1
    assert got["f1"] != pytest.approx(2 * tn / (2 * tn + fn + fp))  # not class 0's 4/7
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert got["mcc"] == pytest.approx(mcc)  # 4 / sqrt(240) = 0.2582
    assert mcc == pytest.approx(0.258199, abs=1e-6)


def test_mcc_is_zero_for_a_constant_prediction():
    """GLUE's CoLA metric (sklearn's convention): no correlation when one class is predicted."""
    got = _metrics(["mcc"], 2, [1, 1, 1, 1], [1, 0, 1, 0])
    assert got["mcc"] == pytest.approx(0.0)


def _ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # ties share their average rank
        i = j + 1
    return ranks


def _pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    return cov / (sx * sy)


def test_pearson_and_spearman_against_a_direct_computation():
    preds = [1.0, 2.0, 3.0, 4.0, 5.0, 2.5]
    target = [2.0, 4.0, 5.0, 4.0, 5.0, 1.0]  # ties in the target
    got = _metrics(["pearson", "spearman"], 1, preds, target)
    assert got["pearson"] == pytest.approx(_pearson(preds, target), abs=1e-6)
    assert got["spearman"] == pytest.approx(_pearson(_ranks(preds), _ranks(target)), abs=1e-6)
    assert _pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]) == pytest.approx(0.774597, abs=1e-6)


def test_matched_and_mismatched_accuracy_are_separate_numbers():
    matched = _metrics(["acc"], 3, [0, 1, 2, 2], [0, 1, 2, 0])
    mismatched = _metrics(["acc"], 3, [0, 0, 1], [0, 1, 2])
    assert (matched["acc"], mismatched["acc"]) == (pytest.approx(3 / 4), pytest.approx(1 / 3))


# --- bad input: one message naming the file and what is wrong ---------------------------------


def _copy_glue(tmp_path, folder: str) -> Path:
    shutil.copytree(ASSETS / "glue_tsv" / folder, tmp_path / folder)
    return tmp_path


def test_missing_file_is_named(tmp_path):
    root = _copy_glue(tmp_path, "RTE")
    (root / "RTE" / "dev.tsv").unlink()
    with pytest.raises(UserError, match=r"lacks .*RTE/dev\.tsv"):
        _load("rte", root)
    root = _copy_glue(tmp_path / "m", "MNLI")
    (root / "MNLI" / "dev_mismatched.tsv").unlink()
    with pytest.raises(UserError, match=r"dev_mismatched\.tsv.*task\.extra_eval_splits=null"):
        _load("mnli", root)
    splits = _load("mnli", root, "task.extra_eval_splits=null")  # the hint works
    assert "validation_mismatched" not in splits


def test_wrong_column_is_named(tmp_path):
    root = _copy_glue(tmp_path, "RTE")
    dev = root / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text().replace("sentence1", "premise", 1))
    with pytest.raises(UserError, match=r"RTE/dev\.tsv: no column 'sentence1' in its header"):
        _load("rte", root)
    import pyarrow.parquet as pq

    table = pq.read_table(ASSETS / "hub_parquet" / "rte" / "train.parquet")
    (tmp_path / "hub").mkdir()
    pq.write_table(
        table.rename_columns(["text_a", "sentence2", "label", "idx"]),
        tmp_path / "hub" / "train.parquet",
    )
    shutil.copy(ASSETS / "hub_parquet" / "rte" / "validation.parquet", tmp_path / "hub")
    with pytest.raises(UserError, match=r"train\.parquet: no column 'sentence1' \(it has text_a"):
        _load("rte", tmp_path / "hub")


def test_labels_outside_the_label_set_are_named(tmp_path):
    root = _copy_glue(tmp_path, "RTE")
    dev = root / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text().replace("\tnot_entailment\n", "\tmaybe\n", 1))
    with pytest.raises(UserError, match=r"RTE/dev\.tsv, line 2: label 'maybe' is not in rte's"):
        _load("rte", root)
    hub = tmp_path / "hub"
    hub.mkdir()
    lines = (ASSETS / "hub_jsonl" / "rte" / "train.jsonl").read_text().splitlines()
    lines[3] = lines[3].replace('"label": 0', '"label": -1')
    (hub / "train.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(ASSETS / "hub_jsonl" / "rte" / "validation.jsonl", hub)
    with pytest.raises(UserError, match=r"train\.jsonl, row 3: label -1 .*unlabelled test splits"):
        _load("rte", hub)
    stsb = _copy_glue(tmp_path / "s", "STS-B")
    train = stsb / "STS-B" / "train.tsv"
    train.write_text(train.read_text().replace("\t0.700\n", "\t7.500\n"))
    with pytest.raises(UserError, match=r"line 3: label '7\.500' is not a similarity score in \[0"):
        _load("stsb", stsb)


def test_empty_split_is_named(tmp_path):
    root = _copy_glue(tmp_path, "RTE")
    dev = root / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text().splitlines()[0] + "\n")
    with pytest.raises(UserError, match=r"RTE/dev\.tsv: the split is empty"):
        _load("rte", root)
    dev.write_text("")
    with pytest.raises(UserError, match=r"RTE/dev\.tsv is empty"):
        _load("rte", root)


def test_directory_without_the_files_explains_both_layouts(tmp_path):
    with pytest.raises(UserError) as err:
        _load("rte", tmp_path)
    for part in ("DIR/RTE/train.tsv", "DIR/RTE/dev.tsv", "DIR/train.parquet", "task.data_dir=DIR"):
        assert part in str(err.value)


def test_bad_labels_fail_the_run_without_a_success_record(tmp_path):
    root = _copy_glue(tmp_path, "RTE")
    dev = root / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text().replace("\tentailment\n", "\tyes\n", 1))
    run_dir = tmp_path / "run"
    result = run_cli(
        [
            "task=rte",
            f"task.data_dir={root}",
            "model=tiny-bert",
            f"hydra.run.dir={run_dir}",
            f"records_root={tmp_path}",
        ]
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "RTE/dev.tsv, line" in result.stderr and "label 'yes'" in result.stderr
    assert "Traceback" not in result.stderr
    record = run_dir / "record.json"
    assert not record.exists() or json.loads(record.read_text())["status"] == "failed"


# --- offline: fast, one message for both layouts ----------------------------------------------


def test_offline_without_data_dir_fails_at_once_naming_both_layouts(monkeypatch):
    import socket

    from lora_exp.checks.inputs import preflight

    def no_network(*args, **kwargs):
        raise AssertionError("offline mode must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_DATASETS_CACHE", "/nonexistent")
    cfg = compose(["task=mnli"])
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        preflight(cfg)
    assert time.perf_counter() - start < 0.5
    message = str(err.value)
    assert "hub (huggingface.co) is not reachable" in message and "\n" not in message
    for part in (
        "DIR/MNLI/train.tsv",
        "DIR/MNLI/dev_matched.tsv",
        "DIR/MNLI/dev_mismatched.tsv",
        "DIR/train.parquet",
        "DIR/validation_matched.parquet",
        "DIR/validation_mismatched.parquet",
        "task.data_dir=DIR",
        "nyu-mll/glue",
    ):
        assert part in message, part


def test_preflight_passes_with_complete_local_files():
    from lora_exp.checks.inputs import preflight

    for task in TASKS:
        preflight(compose([f"task={task}", f"task.data_dir={ASSETS / 'glue_tsv'}"]))


@pytest.mark.skipif(not LEAD_CALLS_PREFLIGHT, reason="needs run_cell.main to call preflight")
def test_offline_cli_run_fails_within_five_seconds(tmp_path):
    start = time.time()
    result = run_cli(["task=mnli", f"hydra.run.dir={tmp_path}", f"records_root={tmp_path}"])
    elapsed = time.time() - start
    assert result.returncode == 2
    assert "DIR/MNLI/dev_matched.tsv" in result.stderr and "DIR/train.parquet" in result.stderr
    assert elapsed < 5.0, elapsed


# --- the paper's hyperparameters --------------------------------------------------------------

# (batch_size, epochs, lr, max_seq_len) per task, column order mnli sst2 mrpc cola qnli qqp rte stsb
TABLE9 = {
    "roberta-base": (
        [16, 16, 16, 32, 32, 16, 32, 16],
        [30, 60, 30, 80, 25, 25, 80, 40],
        [5e-4, 5e-4, 4e-4, 4e-4, 4e-4, 5e-4, 5e-4, 4e-4],
        [512] * 8,
    ),
    "roberta-large": (
        [4, 4, 4, 4, 4, 4, 8, 8],
        [10, 10, 20, 20, 10, 20, 20, 30],
        [3e-4, 4e-4, 3e-4, 2e-4, 2e-4, 3e-4, 4e-4, 2e-4],
        [128, 128, 512, 128, 512, 512, 512, 512],
    ),
}
LORA_DAGGER = ([4] * 8, [10, 10, 20, 20, 10, 20, 20, 10], TABLE9["roberta-large"][2], [128] * 8)
TABLE10 = (
    [8, 8, 32, 4, 6, 8, 4, 4],
    [5, 16, 30, 10, 8, 11, 11, 10],
    [1e-4, 6e-5, 2e-4, 1e-4, 1e-4, 1e-4, 2e-4, 2e-4],
    [256, 128, 128, 64, 512, 320, 320, 128],
)
TABLE10_WD = [0, 0.01, 0.01, 0, 0.01, 0.01, 0.01, 0.1]
TABLE10_CLS = [0.15, 0, 0, 0.1, 0.1, 0.2, 0.2, 0.2]


def _check(cfg, table, i):
    batch, epochs, lr, seq = (column[i] for column in table)
    assert (cfg.batch_size, cfg.epochs, cfg.task.max_seq_len) == (batch, epochs, seq)
    assert cfg.lr == pytest.approx(lr) and isinstance(cfg.lr, float)


@pytest.mark.parametrize("task", TASKS)
def test_table9_and_table10_compose_without_flags(task):
    i = TASKS.index(task)
    from_mnli = {"task": "mnli"} if task in ("mrpc", "rte", "stsb") else None
    for model, alpha in (("roberta-base", 8), ("roberta-large", 16)):
        cfg = compose([f"model={model}", "method=lora", f"task={task}"])
        _check(cfg, TABLE9[model], i)
        assert (cfg.rank, cfg.alpha, list(cfg.targets)) == (8, alpha, ["q", "v"])
        assert (cfg.method.rank, cfg.method.alpha) == (8, alpha)
        assert (cfg.warmup_ratio, cfg.weight_decay, cfg.setup) == (0.06, 0.1, "standard")
        assert cfg.task.init_from == from_mnli
    cfg = compose(["model=deberta-v2-xxlarge", "method=lora", f"task={task}"])
    _check(cfg, TABLE10, i)
    assert (cfg.rank, cfg.alpha) == (16, 32)  # the official scripts (the paper prints 8, 8)
    assert (cfg.warmup_ratio, cfg.weight_decay) == (0.1, pytest.approx(TABLE10_WD[i]))
    assert cfg.model.config_overrides.cls_dropout == pytest.approx(TABLE10_CLS[i])
    assert cfg.task.init_from == from_mnli


@pytest.mark.parametrize("task", TASKS)
def test_restricted_setup_for_lora_dagger(task):
    cfg = compose(["model=roberta-large", "method=lora", f"task={task}", RESTRICTED])
    _check(cfg, LORA_DAGGER, TASKS.index(task))
    assert (cfg.rank, cfg.alpha, cfg.setup, cfg.task.init_from) == (8, 16, "restricted", None)


ADAPTERS = {  # method -> {rank: (epochs, lr)}, Table 9's † rows; batch 32, seq 128 throughout
    "adapter_h": {
        8: ([10, 5, 10, 10, 5, 20, 20, 10], [3e-4] * 8),
        64: ([10, 5, 10, 10, 5, 20, 20, 10], [3e-5] + [3e-4] * 7),
    },
    "adapter_p": {
        16: ([5, 20, 20, 20, 10, 20, 20, 20], [3e-4] * 8),
        64: ([10, 20, 20, 20, 10, 20, 20, 20], [3e-5, 3e-5] + [3e-4] * 6),
    },
}


@pytest.mark.parametrize("method", sorted(ADAPTERS))
def test_adapter_rows_follow_the_rank(method):
    for rank, (epochs, lrs) in ADAPTERS[method].items():
        for i, task in enumerate(TASKS):
            for setup in ([], [RESTRICTED]):  # adapters have only the † setup: both give it
                cfg = compose(
                    [
                        "model=roberta-large",
                        f"method={method}",
                        f"task={task}",
                        f"rank={rank}",
                        *setup,
                    ]
                )
                assert (cfg.epochs, cfg.batch_size, cfg.task.max_seq_len) == (epochs[i], 32, 128)
                assert cfg.lr == pytest.approx(lrs[i]) and cfg.method.rank == rank
                assert (cfg.setup, cfg.task.init_from, cfg.warmup_ratio) == (
                    "restricted",
                    None,
                    0.06,
                )
    default = compose(["model=roberta-large", f"method={method}", "task=mnli"])
    assert default.rank == min(ADAPTERS[method])  # the 0.8M row unless rank= says otherwise


def test_command_line_overrides_win():
    cfg = compose(
        [
            "model=roberta-large",
            "method=lora",
            "task=rte",
            "lr=1e-3",
            "batch_size=7",
            "epochs=3",
            "alpha=4",
            "task.max_seq_len=64",
            "task.init_from=null",
            "warmup_ratio=0.1",
        ]
    )
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.alpha, cfg.method.alpha) == (1e-3, 7, 3, 4, 4)
    assert (cfg.task.max_seq_len, cfg.task.init_from, cfg.warmup_ratio) == (64, None, 0.1)
    cfg = compose(["model=roberta-large", "method=adapter_p", "task=mnli", "rank=64", "lr=1e-4"])
    assert (cfg.lr, cfg.epochs) == (1e-4, 10)


def test_hparams_files_name_their_table_and_the_scripts():
    paper = ("roberta-base", "roberta-large", "deberta-v2-xxlarge", "restricted")
    files = [p for d in paper for p in sorted((CONF / "hparams" / d).rglob("*.yaml"))]
    assert len(files) == 8 * 8  # tasks x (3 LoRA, 2 adapter, 2 adapter pointers, 1 DeBERTa)
    for path in files:
        lines = path.read_text().splitlines()
        assert lines[0] == "# @package _global_", path
        head = " ".join(line.lstrip("#").strip() for line in lines if line.startswith("#"))
        assert "python run.py" in head, path
        if "defaults:" in lines:  # an adapter's standard-path pointer to its † file
            continue
        assert ("Table 9" in head) or ("Table 10" in head), path
        assert "script" in head, path  # says where the official scripts differ, or that they agree


def test_deberta_hparams_give_the_papers_4_7m_parameters():
    from lora_exp.measure.params import count_parameters
    from lora_exp.methods import build_method
    from lora_exp.models import build_on_meta, get_family

    cfg = compose(["model=deberta-v2-xxlarge", "method=lora", "task=mnli"])
    model = build_on_meta(cfg.model, 3, cfg.task.problem)
    build_method(cfg.method).apply(model, get_family(cfg.model.family))
    assert count_parameters(model, get_family("deberta_v2"))["params/trainable"] == 4_718_592


# --- init_from: the best MNLI checkpoint of the same model, method, rank and seed -------------


def _fake_run(
    root: Path,
    name: str,
    task: str,
    status="success",
    seed=0,
    rank=8,
    model="roberta-base",
    finished="2026-01-01T00:00:00",
    full=True,
    checkpoint=True,
) -> Path:
    run_dir = root / name
    (run_dir / "checkpoints").mkdir(parents=True)
    config = {
        "model": {"name": model},
        "method": {"name": "lora", "rank": rank, "alpha": 8, "targets": ["q", "v"]},
        "task": {"name": task},
        "budget": {"max_train_examples": None if full else 4000},
        "setup": "standard",
    }
    record = {
        "status": status,
        "seed": seed,
        "config": config,
        "finished_at": finished,
        "run_dir": str(run_dir),
    }
    (run_dir / "record.json").write_text(json.dumps(record))
    if checkpoint:
        (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"")
    return run_dir / "checkpoints" / "best.ckpt"


def test_init_from_finds_the_matching_mnli_run(tmp_path):
    from lora_exp.tasks.init_from import find_init_checkpoint

    _fake_run(tmp_path, "other_seed", "mnli", seed=1)
    _fake_run(tmp_path, "other_rank", "mnli", rank=4)
    _fake_run(tmp_path, "other_model", "mnli", model="roberta-large")
    _fake_run(tmp_path, "failed", "mnli", status="failed", finished="2027-01-01T00:00:00")
    _fake_run(tmp_path, "rte", "rte")
    _fake_run(tmp_path, "quick_newer", "mnli", full=False, finished="2026-06-01T00:00:00")
    _fake_run(tmp_path, "older", "mnli", finished="2025-01-01T00:00:00")
    want = _fake_run(tmp_path, "newest_full", "mnli", finished="2026-02-01T00:00:00")
    cfg = compose(["model=roberta-base", "method=lora", "task=rte", f"records_root={tmp_path}"])
    assert cfg.task.init_from.task == "mnli"
    assert find_init_checkpoint(cfg, tmp_path) == want


def test_init_from_without_a_source_run_gives_the_command(tmp_path):
    from lora_exp.checks.inputs import preflight
    from lora_exp.tasks.init_from import find_init_checkpoint

    _fake_run(tmp_path, "no_ckpt", "mnli", checkpoint=False)
    cfg = compose(
        [
            "model=roberta-base",
            "method=lora",
            "task=stsb",
            "seed=3",
            f"records_root={tmp_path}",
            f"task.data_dir={ASSETS / 'glue_tsv'}",
        ]
    )
    with pytest.raises(UserError) as err:
        find_init_checkpoint(cfg, tmp_path)
    message = str(err.value)
    command = (
        "python run.py model=roberta-base method=lora task=mnli rank=8 alpha=8 'targets=[q,v]' "
        f"seed=3 budget=quick task.data_dir={ASSETS / 'glue_tsv'} records_root={tmp_path}"
    )
    assert command in message, message
    assert "task.init_from=null" in message
    with pytest.raises(UserError, match="Produce it first"):
        preflight(cfg)
    way_out = ["model=roberta-base", "method=lora", "task=stsb", "task.init_from=null"]
    preflight(compose([*way_out, f"task.data_dir={ASSETS / 'glue_tsv'}"]))


def test_load_init_checkpoint_copies_lora_tensors_not_the_head(tmp_path, tiny_model):
    import torch

    from lora_exp.methods import build_method
    from lora_exp.models import get_family
    from lora_exp.tasks.init_from import load_init_checkpoint

    family = get_family("bert")
    source, cfg = tiny_model("tiny-bert", num_labels=3, seed=1)
    build_method(cfg.method).apply(source, family)
    with torch.no_grad():
        for param in source.parameters():
            if param.requires_grad:
                param.normal_()
    state = {
        f"model.{n}": p.detach().clone() for n, p in source.named_parameters() if p.requires_grad
    }
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)

    target, _ = tiny_model("tiny-bert", num_labels=2, seed=2)
    build_method(cfg.method).apply(target, family)
    head_before = target.classifier.weight.detach().clone()
    loaded = load_init_checkpoint(target, path, family)
    assert sorted(loaded) == sorted(k.removeprefix("model.") for k in state if "lora_" in k)
    assert len(loaded) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    for name in loaded:
        assert torch.equal(dict(target.named_parameters())[name], state[f"model.{name}"])
    assert torch.equal(target.classifier.weight, head_before)  # 2 labels: MNLI's head is not used

    other, _ = tiny_model("tiny-bert", num_labels=2)
    build_method(compose(["model=tiny-bert", "rank=4"]).method).apply(other, family)
    with pytest.raises(UserError, match="does not fit this model"):
        load_init_checkpoint(other, path, family)


# --- end to end on the fixtures ---------------------------------------------------------------


def _run(tmp_path, name: str, *overrides: str) -> dict:
    from lora_exp.run_cell import main

    cfg = compose(
        [*TINY_RUN, *overrides, f"records_root={tmp_path}", f"+run_dir={tmp_path / name}"]
    )
    return main(cfg)


@pytest.fixture(scope="module")
def mnli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue_runs")
    record = _run(root, "mnli", "task=mnli", f"task.data_dir={ASSETS / 'glue_tsv'}")
    return root, record


def test_mnli_run_writes_the_record(mnli_run):
    _, record = mnli_run
    assert record["status"] == "success" and record["primary_metric"] == "acc"
    assert record["config"]["task"]["table_metric"] == "acc"
    sizes = record["task"]["split_sizes_used"]
    assert {k: sizes[k] for k in ("train", "validation", "test")} == {
        "train": 24,
        "validation": 9,
        "test": 9,
    }
    assert all(set(h) >= {"val/acc"} for h in record["history"]) and len(record["history"]) == 2
    expected = {"test/acc", "test/acc_mm"} if LEAD_SCORES_EXTRAS else {"test/acc"}
    assert set(record["test"]) == expected


def test_init_from_loads_the_real_mnli_checkpoint(mnli_run, tiny_model):
    import torch

    from lora_exp.methods import build_method
    from lora_exp.models import get_family
    from lora_exp.tasks.init_from import find_init_checkpoint, load_init_checkpoint

    root, record = mnli_run
    cfg = compose([*TINY_RUN, "task=rte", "task.init_from={task: mnli}", f"records_root={root}"])
    checkpoint = find_init_checkpoint(cfg, root)
    assert checkpoint == Path(record["run_dir"]) / "checkpoints" / "best.ckpt"
    model, _ = tiny_model("tiny-bert", num_labels=2)
    build_method(cfg.method).apply(model, get_family("bert"))
    loaded = load_init_checkpoint(model, checkpoint, get_family("bert"))
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert len(loaded) == 8 and all(
        torch.equal(dict(model.named_parameters())[n], state[f"model.{n}"]) for n in loaded
    )


@pytest.mark.skipif(not LEAD_LOADS_INIT, reason="needs fit.py to call tasks.init_from")
def test_rte_run_starts_from_the_mnli_run(mnli_run):
    root, mnli = mnli_run
    data = f"task.data_dir={ASSETS / 'glue_tsv'}"
    record = _run(root, "rte_init", "task=rte", data, "task.init_from={task: mnli}")
    assert record["status"] == "success"
    assert record["init_from"] == str(Path(mnli["run_dir"]) / "checkpoints" / "best.ckpt")


@pytest.mark.skipif(not LEAD_CALLS_PREFLIGHT, reason="needs run_cell.main to call preflight")
def test_run_without_its_mnli_source_stops_before_training(tmp_path):
    data = f"task.data_dir={ASSETS / 'glue_tsv'}"
    with pytest.raises(UserError, match=r"Produce it first with: python run.py model=tiny-bert"):
        _run(tmp_path, "rte", "task=rte", data, "task.init_from={task: mnli}")
    assert not (tmp_path / "rte" / "record.json").exists()  # nothing recorded, let alone success


def test_extra_split_scores_mismatched_accuracy_with_the_best_checkpoint(tmp_path):
    """score_extra_splits gives test/acc_mm, equal to accuracy counted by hand on mismatched."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lora_exp.methods import build_method
    from lora_exp.models import get_family, load_backbone, load_tokenizer
    from lora_exp.module import ClassificationModule
    from lora_exp.tasks.datamodule import TaskDataModule
    from lora_exp.tasks.extra_eval import score_extra_splits

    cfg = compose([*TINY_RUN, "task=mnli", f"task.data_dir={ASSETS / 'hub_parquet'}"])
    L.seed_everything(0, verbose=False)
    tokenizer = load_tokenizer(cfg.model)
    data = TaskDataModule(cfg.task, cfg.budget, tokenizer, 8, 16)
    data.setup()
    model = load_backbone(cfg.model, 3, cfg.task.problem, tokenizer.pad_token_id)
    method = build_method(cfg.method)
    method.apply(model, get_family("bert"))
    module = ClassificationModule(
        model, method, cfg.task, {"lr": 3e-3, "weight_decay": 0.0, "warmup_ratio": 0.0}
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/acc", mode="max")
        ],
    )
    trainer.fit(module, datamodule=data)
    matched = trainer.test(module, datamodule=data, ckpt_path="best", verbose=False)[0]
    extras = score_extra_splits(trainer, module, data, cfg.task)
    assert set(matched) == {"test/acc"} and set(extras) == {"test/acc_mm"}
    assert module.test_metrics.postfix is None  # restored

    rows = data.splits["validation_mismatched"]  # the best checkpoint is loaded in `module`
    batch = data.collate(rows)  # one batch, merged, as the test loop ran it
    module.eval()
    method.merge(module.model)
    with torch.no_grad():
        logits = module.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    method.unmerge(module.model)
    correct = (logits.argmax(-1) == batch["labels"]).sum().item()
    assert len(rows) == 7 and extras["test/acc_mm"] == pytest.approx(correct / 7)


def test_stsb_regression_run_from_hub_parquet(tmp_path):
    record = _run(tmp_path, "stsb", "task=stsb", f"task.data_dir={ASSETS / 'hub_parquet'}")
    assert record["status"] == "success" and record["primary_metric"] == "pearson"
    assert set(record["test"]) == {"test/pearson", "test/spearman"}
    assert record["config"]["task"]["table_metric"] == "pearson"
    assert record["task"]["majority_test_acc"] is None  # a regression task has no majority class
    assert all(-1.0 <= v <= 1.0 for v in record["test"].values())


def test_mrpc_and_cola_runs_from_hub_jsonl(tmp_path):
    mrpc = _run(tmp_path, "mrpc", "task=mrpc", f"task.data_dir={ASSETS / 'hub_jsonl' / 'mrpc'}")
    assert mrpc["status"] == "success" and set(mrpc["test"]) == {"test/acc", "test/f1"}
    cola = _run(tmp_path, "cola", "task=cola", f"task.data_dir={ASSETS / 'hub_jsonl'}")
    assert cola["status"] == "success" and set(cola["test"]) == {"test/mcc"}
    assert cola["primary_metric"] == cola["config"]["task"]["table_metric"] == "mcc"


def test_rte_cli_run_on_the_glue_distribution_with_tiny_roberta(tmp_path):
    """The issue's 'done when': python run.py task=rte task.data_dir=DIR model=tiny-roberta."""
    run_dir = tmp_path / "run"
    result = run_cli(
        [
            "task=rte",
            f"task.data_dir={ASSETS / 'glue_tsv'}",
            "model=tiny-roberta",
            "epochs=1",
            f"hydra.run.dir={run_dir}",
            f"records_root={tmp_path}",
            "trainer.enable_progress_bar=false",
        ],
        env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "success" and set(record["test"]) == {"test/acc"}
    assert record["task"]["split_sizes_full"] == {"train": 24, "validation": 8, "test": 8}
