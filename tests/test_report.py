"""Reports: golden table from fixed records, seed statistics, paper matching, figures, wandb,
README.

The fixture `tests/assets/records/` holds 14 hand-made records of roberta-base on MNLI and RTE:
lora and full_ft × seeds 0, 1, 2 (scores below), one failed lora run, and one full_ft RTE run at an
old task version scoring 99.0 (it must not move the median). `tests/assets/expected_table.md` is
the exact output; the numbers in it are checked by hand here as well.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from lora_exp.errors import UserError
from lora_exp.report import latency, paper, plots, readme, tables, wandb_source
from lora_exp.report.__main__ import main, report_artifact
from lora_exp.report.load import (
    aggregate,
    load_cells,
    long_scores,
    record_row,
    records_frame,
    select,
)
from lora_exp.report.render import fmt, fmt_cell

ASSETS = Path(__file__).parent / "assets"
RECORDS = ASSETS / "records"
VERSIONS = {"mnli": 1, "rte": 1}
ROOT = Path(__file__).resolve().parent.parent


def make_record(method="lora", task="tweet_sentiment", seed=0, acc=0.5, **kw) -> dict:
    """A minimal record of the local schema."""
    rank, targets = kw.pop("rank", 8), kw.pop("targets", ["q", "v"])
    m = {"name": method} | ({"rank": rank, "alpha": rank, "targets": targets} if rank else {})
    config = {"model": {"name": kw.pop("model", "minilm")}, "method": m, "seed": seed}
    config["task"] = {"name": task, "version": kw.get("version", 1), "primary_metric": "acc"}
    return {
        "schema_version": 1,
        "status": kw.pop("status", "success"),
        "config": config,
        "config_hash": f"{method}-{task}-{rank}-{','.join(targets)}-{seed}",
        "seed": seed,
        "task": {"name": task, "version": kw.pop("version", 1)},
        "primary_metric": "acc",
        "params": {"params/trainable": kw.pop("trainable", 1000 * (rank or 100))},
        "test": {"test/acc": acc},
        "environment": {"device": "cpu (test)"},
        "finished_at": kw.pop("finished_at", "2026-01-01T00:00:00+00:00"),
        "run_dir": kw.pop("run_dir", f"runs/{method}_{task}_{seed}"),
        **kw,
    }


def write_records(root: Path, records: list[dict]) -> Path:
    for i, record in enumerate(records):
        (root / f"run{i:03d}").mkdir(parents=True)
        (root / f"run{i:03d}" / "record.json").write_text(json.dumps(record))
    return root


def test_golden_table(tmp_path):
    report_artifact("table2_roberta_base", [RECORDS], tmp_path, root=ROOT, versions=VERSIONS)
    assert (tmp_path / "table.md").read_text() == (ASSETS / "expected_table.md").read_text()
    csv = pd.read_csv(tmp_path / "table.csv")
    lora_rte = csv[(csv["method"] == "lora") & (csv["column"] == "rte")].iloc[0]
    scores = [85.2, 80.1, 86.6]  # the fixture's lora RTE seeds, x100
    assert lora_rte["median"] == pytest.approx(statistics.median(scores))
    assert lora_rte["std"] == pytest.approx(statistics.stdev(scores), abs=1e-4)
    assert (lora_rte["n"], lora_rte["paper"], lora_rte["delta"]) == (3, 86.6, pytest.approx(-1.4))
    ft_rte = csv[(csv["method"] == "full_ft") & (csv["column"] == "rte")].iloc[0]
    assert ft_rte["median"] == pytest.approx(78.1)  # the 99.0 of the stale version is left out
    tex = (tmp_path / "table.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"87.1 [86.9, 87.5] (3)" in tex


def test_regeneration_is_byte_identical(tmp_path):
    for out in ("a", "b"):
        report_artifact(
            "table2_roberta_base", [RECORDS], tmp_path / out, root=ROOT, versions=VERSIONS
        )
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [
        "score_vs_params.pdf",
        "score_vs_params.png",
        "table.csv",
        "table.md",
        "table.tex",
    ]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_median_std_and_count_on_known_inputs():
    records = [make_record(seed=s, acc=a) for s, a in enumerate([0.10, 0.20, 0.90])]
    records.append(make_record(task="bbc_news", acc=0.42))
    cells = aggregate(long_scores(records_frame(records)))
    tweet = cells[(cells["task"] == "tweet_sentiment") & (cells["metric"] == "acc")].iloc[0]
    assert tweet["median"] == pytest.approx(20.0)
    assert tweet["std"] == pytest.approx(statistics.stdev([10.0, 20.0, 90.0]))
    assert (tweet["n"], tweet["seeds"]) == (3, "0,1,2")
    bbc = cells[cells["task"] == "bbc_news"].iloc[0]
    assert bbc["n"] == 1 and math.isnan(bbc["std"])
    assert fmt_cell(tables.Cell("acc", bbc["median"], bbc["std"], 1)) == "42.0 (1)"
    assert fmt_cell(tables.Cell("nist", 8.8512, 0.0213, 5)) == "8.85 ± 0.02 (5)"
    assert [fmt(v, 1, signed=True) for v in (-0.04, 0.04, -1.26)] == ["+0.0", "+0.0", "-1.3"]
    record = make_record(acc=0.5, best={"epoch": 1, "val/acc": 0.6, "train/loss_mean": 0.9})
    assert record_row(record)["metric:acc"] == 0.5  # the test split of the best checkpoint
    assert record_row(record, "val")["metric:acc"] == 0.6  # --score val: the best epoch's val


def test_methods_sort_in_the_paper_order_and_new_methods_after():
    """The order comes from each method's `table_order`; a method without one sorts last."""
    assert tables.method_order() == (
        "full_ft",
        "bitfit",
        "ft_top2",
        "prefix_embed",
        "prefix_layer",
        "adapter_d",
        "adapter_l",
        "adapter_h",
        "adapter_p",
        "lora",
    )
    names = ["zz_unknown", "lora", "ia3", "adapter_h", "full_ft"]
    ordered = sorted(names, key=lambda m: tables.sort_key("method", m))
    assert ordered == ["full_ft", "adapter_h", "lora", "ia3", "zz_unknown"]


def test_select_drops_failed_stale_and_repeated_runs():
    records = [
        make_record(seed=0, acc=0.5, finished_at="2026-01-01T00:00:00+00:00"),
        make_record(seed=0, acc=0.7, finished_at="2026-01-02T00:00:00+00:00", run_dir="rerun"),
        make_record(seed=1, acc=0.6, status="failed"),
        make_record(seed=2, acc=0.9, version=0),
    ]
    kept, notes = select(records_frame(records), {"tweet_sentiment": 1})
    assert list(kept["run_dir"]) == ["rerun"]  # the later of two runs of one configuration
    assert notes == [
        "1 record(s) of task tweet_sentiment at version 0 left out (current version 1, "
        "conf/task/tweet_sentiment.yaml)",
        "1 record(s) with status failed left out",
        "1 repeated run(s) of one setting and seed left out",
    ]


def test_runs_of_one_cell_with_other_settings_are_flagged():
    records = [make_record(seed=s, acc=0.5) for s in range(2)]
    records[0]["config"]["lr"] = 3e-3
    records[1]["config"]["lr"] = 1e-3  # another learning rate in the same cell
    records[1]["config"]["logger"] = {"name": "wandb"}  # where it logged does not matter
    _, notes = select(records_frame(records), {"tweet_sentiment": 1})
    assert notes == [
        "warning: the runs of minilm/lora/8/q,v/tweet_sentiment differ in lr (not only the seed)"
    ]


def test_entries_only_newer_records_carry_are_named_apart_from_real_differences():
    records = [make_record(seed=s, acc=0.5) for s in range(3)]
    for newer in records[1:]:  # two runs made after the option existed, one before
        newer["config"]["trainer"] = {"step": "eager"}
    _, notes = select(records_frame(records), {"tweet_sentiment": 1})
    assert notes == [
        "note: the runs of minilm/lora/8/q,v/tweet_sentiment 1 of 3 predate the entries "
        "trainer.step"
    ]
    records[2]["config"]["trainer"] = {"step": "graphed"}  # and now two values of it
    _, notes = select(records_frame(records), {"tweet_sentiment": 1})
    assert notes == [
        "warning: the runs of minilm/lora/8/q,v/tweet_sentiment differ in trainer.step "
        "(not only the seed)"
    ]


def test_task_versions_come_from_conf(tmp_path):
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "tweet_sentiment.yaml").write_text("name: tweet_sentiment\nversion: 2\n")
    records = [make_record(seed=0, acc=0.5, version=1), make_record(seed=1, acc=0.7, version=2)]
    write_records(tmp_path / "runs", records)
    cells, kept, _ = load_cells([tmp_path / "runs"], None, tmp_path)
    assert list(kept["seed"]) == [1]
    assert cells[cells["metric"] == "acc"]["median"].tolist() == [pytest.approx(70.0)]


def test_bad_input_gives_one_clear_message(tmp_path, capsys):
    assert main(["embedded_rank", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no run records found under" in capsys.readouterr().err
    write_records(tmp_path / "stale", [make_record(version=0), make_record(seed=1, version=0)])
    with pytest.raises(UserError, match="have task version 0, but the current version is 1"):
        load_cells([tmp_path / "stale"], {"tweet_sentiment": 1}, tmp_path)
    assert main(["no_such_artifact", "--runs", str(tmp_path / "stale")]) == 2
    assert "unknown artifact 'no_such_artifact'" in capsys.readouterr().err


def test_paper_row_is_the_nearest_budget_and_standard_setup():
    table2 = paper.paper_table("glue", ROOT / "experiments/table2_roberta_large/paper.csv")
    small = paper.match_row(table2, {"model": "roberta-large", "method": "adapter_h"}, 835_968)
    large = paper.match_row(table2, {"model": "roberta-large", "method": "adapter_h"}, 5.5e6)
    assert (small["trainable_label"], small["rte"]) == ("0.8M", 72.9)
    assert (large["trainable_label"], large["rte"]) == ("6.0M", 83.4)
    lora = paper.match_row(table2, {"model": "roberta-large", "method": "lora"}, 786_432)
    assert (lora["setup"], lora["rte"]) == ("standard", 87.4)  # not the dagger row (85.2)
    assert paper.match_row(table2, {"model": "roberta-large", "method": "bitfit"}, 1e5) is None


def rank_records() -> list[dict]:
    out = []
    for targets, base in ((["q"], 0.60), (["q", "v"], 0.70)):
        for rank in (1, 2, 4, 8):
            for seed in range(3):
                acc = base + 0.01 * rank + 0.005 * seed
                out.append(
                    make_record(
                        rank=rank,
                        targets=targets,
                        seed=seed,
                        acc=acc,
                        trainable=100 * rank * len(targets),
                    )
                )
    return out


def test_rank_table_and_figures(tmp_path):
    write_records(tmp_path / "runs", rank_records())
    written = report_artifact("embedded_rank", [tmp_path / "runs"], tmp_path, root=ROOT)
    md = (tmp_path / "table.md").read_text()
    assert "| model | method | task | targets | r=1 | r=2 | r=4 | r=8 |" in md
    assert "| minilm | lora | tweet_sentiment | q,v | 71.5 [71.0, 72.0] (3) |" in md
    assert {p.name for p in written} >= {"rank_ablation.png", "weight_types.pdf"}
    cells, kept, _ = load_cells([tmp_path / "runs"], {"tweet_sentiment": 1}, ROOT / "conf")
    ax = plots.rank_ablation_figure(cells, kept).axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert len(ax.containers) == 2  # one errorbar line per target set
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["q", "q,v"]
    assert ax.get_xlabel() == "LoRA rank r (log2 scale)" and ax.get_ylabel() == "accuracy (%)"
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["1", "2", "4", "8"]
    caption = plots.rank_ablation_figure(cells, kept).get_supxlabel()
    for part in ("model: minilm", "task: tweet_sentiment", "seeds: 0, 1, 2", "device: cpu (test)"):
        assert part in caption.replace("\n", " ")
    # Fixed budget 800 = q r=8 (100·8·1) = q,v r=4 (100·4·2): the two bars of the weight-types plot
    bars = plots.weight_types_figure(cells, kept).axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["q r=8", "q,v r=4"]
    assert len(bars.patches) == 2


def test_methods_table_average_and_score_vs_params(tmp_path):
    records = []
    for method, rank, accs in (("full_ft", None, (0.8, 0.9)), ("lora", 8, (0.7, 0.95))):
        for task, acc in zip(("tweet_sentiment", "bbc_news"), accs, strict=True):
            records += [make_record(method, task, s, acc, rank=rank) for s in range(2)]
    write_records(tmp_path / "runs", records)
    report_artifact("embedded_methods", [tmp_path / "runs"], tmp_path, root=ROOT)
    md = (tmp_path / "table.md").read_text()
    assert "| model | method | r | targets | #trainable | tweet_sentiment | bbc_news | avg |" in md
    assert (
        "| minilm | full_ft | - | - | 100,000 | 80.0 [80.0, 80.0] (2) | 90.0 [90.0, 90.0] (2) "
        "| 85.0 |"
    ) in md
    cells, kept, _ = load_cells([tmp_path / "runs"], None, ROOT / "conf")
    ax = plots.score_vs_params_figure(cells, kept).axes[0]
    assert ax.get_xscale() == "log" and len(ax.containers) == 2
    assert ax.get_xlabel() == "trainable parameters, head excluded (log scale)"


def test_latency_table_and_overhead_figure(tmp_path):
    def rec(variant, rank, b, s, ms):
        entry = {"batch_size": b, "seq_len": s, "variant": variant, "ms_median": ms, "rank": rank}
        return make_record(method=variant, rank=None, latency=[entry], run_dir=variant)

    records = [
        rec("base", 0, 1, 128, 10.0),
        rec("adapter_h", 8, 1, 128, 13.0),
        rec("base", 0, 32, 512, 100.0),
        rec("adapter_h", 8, 32, 512, 103.0),
        rec("base", 0, 2, 128, 11.0),
        rec("adapter_h", 8, 2, 128, 13.2),
    ]
    write_records(tmp_path / "runs", records)
    (tmp_path / "table.md").write_text("the benchmark's table\n")
    report_artifact("table1_latency", [tmp_path / "runs"], tmp_path, root=ROOT)
    assert (tmp_path / "table.md").read_text() == "the benchmark's table\n"  # left alone
    csv = pd.read_csv(tmp_path / "report.csv")
    row = csv[(csv["variant"] == "adapter_h") & (csv["batch_size"] == 1)].iloc[0]
    assert row["overhead_pct"] == pytest.approx(30.0)
    assert (row["paper_ms"], row["paper_overhead_pct"]) == (25.8, 30.3)
    md = (tmp_path / "report.md").read_text()
    assert (
        "| minilm | adapter_h | eager | 8 | ours | 103.0 | 3.0 | 13.0 | 30.0 | 13.2 | 20.0 |" in md
    )
    frame = latency.latency_frame([tmp_path / "runs"])
    fig = latency.overhead_figure(frame)
    assert [ax.get_title() for ax in fig.axes] == ["sequence length 128", "sequence length 512"]
    assert len(fig.axes[0].get_lines()) == 2  # the adapter line and the zero line
    assert fig.axes[0].get_ylabel() == "latency overhead over the base model (%)"


class FakeRun:
    """The parts of a wandb public-API run that wandb_source reads."""

    def __init__(self, record: dict, state: str = "finished"):
        self.id, self.url, self.state = (
            record["run_dir"],
            f"https://wandb/{record['run_dir']}",
            state,
        )
        self.config = {k: {"value": v} for k, v in record["config"].items()}  # raw config form
        self.summary = {**record["test"], **record["params"], "_runtime": 5.0}
        self.metadata = {"gpu": "NVIDIA H200"}


class FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return self._runs


def test_wandb_records_have_the_local_schema(tmp_path):
    local = [make_record(seed=0, acc=0.5)]
    lost = make_record(seed=1, acc=0.7)
    lost["config"]["task"] |= {"version": 1}
    api = FakeApi([FakeRun(local[0]), FakeRun(lost), FakeRun(make_record(seed=2), "crashed")])
    local[0]["config_hash"] = wandb_source.config_hash(local[0]["config"])
    extra = wandb_source.missing_from_wandb("me/lora", "embedded_rank", local, api=api)
    assert api.calls[0][1] == {
        "$or": [{"group": "embedded_rank"}, {"tags": {"$in": ["embedded_rank"]}}]
    }
    assert sorted(r["status"] for r in extra) == ["failed", "success"]
    rebuilt = next(r for r in extra if r["seed"] == 1)
    assert rebuilt["test"] == {"test/acc": 0.7} and rebuilt["params"] == lost["params"]
    assert rebuilt["task"] == {"name": "tweet_sentiment", "version": 1}
    assert rebuilt["environment"] == {"device": "NVIDIA H200"}
    write_records(tmp_path / "runs", local)
    cells, _, notes = load_cells([tmp_path / "runs"], None, ROOT / "conf", extra)
    acc = cells[cells["metric"] == "acc"].iloc[0]
    assert (acc["median"], acc["n"]) == (pytest.approx(60.0), 2)
    assert notes == ["1 record(s) with status failed left out"]


def test_wandb_unreachable_falls_back_to_local(capsys):
    class Broken:
        def runs(self, path, filters=None):
            raise ConnectionError("no network")

    assert wandb_source.missing_from_wandb("me/lora", "x", [], api=Broken()) == []
    assert "cannot reach me/lora (ConnectionError: no network)" in capsys.readouterr().err


def test_readme_block_is_regenerated(tmp_path):
    results = tmp_path / "results"
    (results / "b_art").mkdir(parents=True)
    (results / "a_art").mkdir()
    (results / "b_art" / "table.md").write_text("### b\n")
    (results / "a_art" / "table.md").write_text("### a\n")
    (results / "a_art" / "rank_ablation.png").write_bytes(b"png")
    path = tmp_path / "README.md"
    path.write_text(f"# x\nintro\n{readme.BEGIN}\nstale, hand-edited\n{readme.END}\nfooter\n")
    readme.update_readme(path, results)
    expected = (
        f"# x\nintro\n{readme.BEGIN}\n### a\n\n![rank ablation](results/a_art/rank_ablation.png)"
        f"\n\n### b\n{readme.END}\nfooter\n"
    )
    assert path.read_text() == expected
    readme.update_readme(path, results)
    assert path.read_text() == expected  # idempotent
    (results / "claims.md").write_text("### claims\n")
    (results / "b_art" / "targets.md").write_text("### targets\n")
    readme.update_readme(path, results)
    block = path.read_text()
    assert block.index("### claims") < block.index("### a") < block.index("### b")
    assert block.index("### b") < block.index("### targets")
    path.write_text(expected)
    path.write_text("# no markers\n")
    with pytest.raises(UserError, match="exactly one"):
        readme.update_readme(path, results)


def test_e2e_and_rank_layouts_match_the_paper(tmp_path):
    e2e = {"bleu": 70.0, "nist": 8.8512, "meteor": 0.468, "rouge_l": 0.7215, "cider": 2.5301}
    records = []
    for seed in range(3):
        record = make_record(model="gpt2-medium", task="e2e", rank=4, seed=seed, trainable=393216)
        record["test"] = {f"test/{k}": v + 0.01 * seed for k, v in e2e.items()}
        records.append(record)
    write_records(tmp_path / "e2e", records)
    report_artifact("table3_gpt2_e2e", [tmp_path / "e2e"], tmp_path / "t3", root=ROOT)
    lines = (tmp_path / "t3" / "table.md").read_text().splitlines()
    assert lines[3] == (
        "| model | method | r | targets | task |  | #trainable | bleu | nist | meteor | rouge_l "
        "| cider |"
    )
    assert lines[5] == (
        "| gpt2-medium | lora | 4 | q,v | e2e | ours | 393,216 | 70.0 [70.0, 70.0] (3) "
        "| 8.86 [8.85, 8.87] (3) | 47.8 [46.8, 48.8] (3) | 73.2 [72.2, 74.2] (3) "
        "| 2.54 [2.53, 2.55] (3) |"
    )
    assert lines[6] == "|  |  |  |  |  | paper | 0.35M | 70.4 | 8.85 | 46.8 | 71.8 | 2.53 |"
    assert lines[7] == "|  |  |  |  |  | Δ |  | -0.4 | +0.01 | +1.0 | +1.4 | +0.01 |"
    records = [
        make_record(task="mnli", rank=r, targets=["q", "v"], seed=s, acc=0.9 + 0.002 * s)
        for r in (2, 8)
        for s in range(2)
    ]
    write_records(tmp_path / "rank", records)
    report_artifact("table6_rank", [tmp_path / "rank"], tmp_path / "t6", root=ROOT)
    md = (tmp_path / "t6" / "table.md").read_text()
    assert "|  |  |  |  | paper | 91.4 | 91.6 |" in md  # Table 6, MultiNLI, Wq,Wv, r = 2 and 8
    assert "|  |  |  |  | Δ | -1.3 | -1.5 |" in md


def test_all_and_readme_commands_from_a_checkout(tmp_path, monkeypatch, capsys):
    (tmp_path / "conf" / "task").mkdir(parents=True)
    (tmp_path / "conf" / "task" / "tweet_sentiment.yaml").write_text("version: 1\n")
    write_records(tmp_path / "results" / "embedded_rank" / "runs", rank_records())
    (tmp_path / "README.md").write_text(f"# lora_exp\n{readme.BEGIN}\n{readme.END}\n")
    monkeypatch.chdir(tmp_path)  # project_root() is the working directory when it has conf/task
    assert main(["all"]) == 0
    write_records(tmp_path / "results" / "other_study" / "runs", [make_record()])
    assert main(["all"]) == 0  # other_study has no table layout: skipped, and said so
    assert "not tables, skipped: other_study" in capsys.readouterr().err
    assert (tmp_path / "results" / "embedded_rank" / "table.md").exists()
    assert main(["readme"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "### embedded_rank: Score by LoRA rank r" in text
    assert "![rank ablation](results/embedded_rank/rank_ablation.png)" in text
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / "README.md")


def test_dagger_setup_gets_its_own_row_and_paper_row(tmp_path):
    records = []
    for setup, acc in (("standard", 0.874), ("restricted", 0.852)):
        for seed in range(2):
            record = make_record(
                model="roberta-large",
                task="rte",
                seed=seed,
                acc=acc,
                trainable=786_432,
                run_dir=f"{setup}{seed}",
            )
            record["config"]["setup"] = setup
            record["config_hash"] += setup
            record["test"]["test/acc_mm"] = acc  # a suffixed fraction is printed x100 too
            records.append(record)
    write_records(tmp_path / "runs", records)
    report_artifact("table2_roberta_large", [tmp_path / "runs"], tmp_path, root=ROOT)
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines[3] == "| model | method | setup | r | targets |  | #trainable | rte |"
    assert lines[5:11] == [
        "| roberta-large | lora | standard | 8 | q,v | ours | 786,432 | 87.4 [87.4, 87.4] (2) |",
        "|  |  |  |  |  | paper | 0.8M | 87.4 |",
        "|  |  |  |  |  | Δ |  | +0.0 |",
        "| roberta-large | lora | restricted | 8 | q,v | ours | 786,432 | 85.2 [85.2, 85.2] (2) |",
        "|  |  |  |  |  | paper | 0.8M | 85.2 |",
        "|  |  |  |  |  | Δ |  | +0.0 |",
    ]
    cells, _, _ = load_cells([tmp_path / "runs"], None, ROOT / "conf")
    assert set(cells.loc[cells["metric"] == "acc_mm", "median"].round(6)) == {87.4, 85.2}


def test_reused_copies_count_once(tmp_path):
    """A `reused_from` copy is a run of its own sweep, but one run when the original is loaded."""
    original = make_record(seed=0, acc=0.80, started_at="t0", run_dir="a/run0")
    copy = dict(original, reused_from="a/run0/record.json")
    other = make_record(seed=1, acc=0.90, started_at="t1", run_dir="b/run1")
    write_records(tmp_path / "a", [original])
    write_records(tmp_path / "b", [copy, other])
    cells, kept, notes = load_cells([tmp_path / "b"], {"tweet_sentiment": 1}, ROOT / "conf")
    assert len(kept) == 2 and "1 record(s) are copies of runs shared with another sweep" in (
        " ".join(notes)
    )
    cells, kept, notes = load_cells(
        [tmp_path / "a", tmp_path / "b"], {"tweet_sentiment": 1}, ROOT / "conf"
    )
    assert len(kept) == 2  # seed 0 once, not twice
    assert any("also loaded as the original, counted once" in n for n in notes)
    assert not any("repeated run" in n for n in notes)
    acc = cells[cells["metric"] == "acc"].iloc[0]
    assert (acc["n"], acc["median"]) == (2, pytest.approx(85.0))


def test_efficiency_log_lines_are_parsed(tmp_path):
    from lora_exp.report.targets import parse_log

    log = tmp_path / "run.log"
    log.write_text(
        "warnings.warn(\n"
        "roberta-large seq 128 lora      peft-compiled          36.13 ms/step      113,370 tok/s "
        "peak 5,770,838,016 B saved 7,366,640 B\n"
    )
    row = parse_log(log).iloc[0]
    assert (row["model"], row["seq_len"], row["method"], row["impl"]) == (
        "roberta-large",
        128,
        "lora",
        "peft-compiled",
    )
    assert (row["step_ms"], row["tokens_per_s"], row["peak"]) == (36.13, 113370, 5770838016)


def _efficiency_row(seq, method, impl, step_ms, peak, **extra):
    row = {"model": "roberta-large", "seq_len": seq, "batch_size": 32, "method": method}
    row |= {"impl": impl, "step_ms": step_ms, "step_ms_p10": step_ms, "step_ms_p90": step_ms}
    row |= {"tokens_per_s": 32 * seq / (step_ms / 1e3), "peak_mem_bytes": peak, "device": "H200"}
    row |= {"optimizer_state_bytes": 8, "trainable": 10, "saved_bytes": 40}
    return row | {"full_ft_flops_per_step": 6e12} | extra


def _efficiency_record(runs, stamp, modes, rows):
    config = {"models": ["roberta-large"], "seq_lens": [128], "methods": ["full_ft", "lora"]}
    config |= {"peft": True, "modes": modes, "steps": 20, "warmup": 5, "rounds": 1}
    config |= {"batch_size": 32, "autocast": True, "fused_adamw": True, "adapter_rank": 8}
    config |= {"lora": {"rank": 8, "alpha": 16, "targets": ["q", "v"]}, "compile_scope": "blocks"}
    record = {"config": config, "efficiency": rows, "matmul_tflops": 800.0, "overrides": []}
    (runs / stamp).mkdir(parents=True)
    (runs / stamp / "record.json").write_text(json.dumps(record))


def test_efficiency_report_combines_runs_and_judges_within_one(tmp_path):
    from lora_exp.measure.efficiency import COLUMNS
    from lora_exp.report.targets import write_efficiency

    results = tmp_path / "results"
    runs = results / "efficiency" / "runs"
    _efficiency_record(runs, "A", ["eager", "graphed"], [
        _efficiency_row(128, "full_ft", "lora_exp", 70.0, 10e9),
        _efficiency_row(128, "lora", "lora_exp", 75.0, 4e9),
        _efficiency_row(128, "lora", "peft", 80.0, 5e9),
        _efficiency_row(128, "full_ft", "lora_exp-graphed", 44.0, 12e9),
        _efficiency_row(128, "lora", "lora_exp-graphed", 33.0, 6e9, gpu_busy_ms=32.5),
        _efficiency_row(128, "lora", "peft-graphed", 36.0, 7e9, gpu_busy_ms=35.5),
    ])  # fmt: skip
    _efficiency_record(runs, "B", ["compiled"], [
        _efficiency_row(128, "full_ft", "lora_exp-compiled", 60.0, 9e9),
        _efficiency_row(128, "lora", "lora_exp-compiled", 30.0, 3e9),  # fastest LoRA, other run
        _efficiency_row(128, "lora", "peft-compiled", 36.0, 4e9),
    ])  # fmt: skip
    _efficiency_record(runs, "C", ["compiled-graphed"], [
        _efficiency_row(512, "full_ft", "lora_exp-compiled-graphed", 80.0, 20e9),
        _efficiency_row(512, "lora", "lora_exp-compiled-graphed", 64.0, 11e9),  # 1.25x, 0.55x
        _efficiency_row(512, "lora", "peft-compiled-graphed", 65.0, 12e9),
    ])  # fmt: skip
    (results / "efficiency" / "logs").mkdir()
    (results / "efficiency" / "logs" / "cut.log").write_text(
        "round 1/2 roberta-large seq 512 lora      peft                  90.00 ms/step "
        "182,044 tok/s peak 1,000 B saved 40 B\n"
        "pooled      roberta-large seq 512 lora      peft                  99.00 ms/step "
        "165,494 tok/s peak 1,000 B saved 40 B\n"
        "pooled      roberta-large seq 128 lora      lora_exp              10.00 ms/step "
        "409,600 tok/s peak 1,000 B saved 40 B\n"  # a record holds this one: ignored
    )
    latency = results / "table1_latency"
    latency.mkdir(parents=True)
    lat = ["batch_size,seq_len,variant,mode,ms_median,ms_p10,ms_p90,overhead_pct,device"]
    for b, s in ((32, 512), (16, 256), (1, 128)):
        h_pct = 30 if b == 1 else 20  # AdapterH's overhead largest at batch 1
        variants = [("base", 10, 0), ("lora_merged", 10.1, 1), ("adapter_l", 11, 10)]
        for mode in ("eager", "graph"):
            for variant, ms, pct in [*variants, ("adapter_h", 10 + h_pct / 10, h_pct)]:
                lat.append(f"{b},{s},{variant},{mode},{ms},{ms},{ms},{pct},H200")
    (latency / "table.csv").write_text("\n".join(lat) + "\n")

    written = write_efficiency(results)
    table = (results / "efficiency" / "table.csv").read_text().splitlines()
    assert table[0] == ",".join(COLUMNS) and len(table) == 1 + 9 + 3
    targets = (results / "efficiency" / "targets.md").read_text()
    # fastest modes: LoRA compiled (run B), full FT graphed (run A): not one run, not met
    assert "LoRA compiled 30.0 vs full FT graphed 44.0 ms/step" in targets
    assert "runs B / A: not one run" in targets
    # PEFT comparisons pair rows of one run: graphed 36/33, compiled 36/30, eager 80/75
    assert (
        "graphed 128: 1.09× (no target; 33.0 vs 36.0 ms/step; GPU busy 32.5 vs 35.5 ms; A)"
        in targets
    )
    assert "compiled 128: 1.20×" in targets and "eager 128: 1.07× (≥ 1.2" in targets
    # a compiled-graphed run: its own mode, judged within its run, its compile scope listed
    assert "512: 1.25× (LoRA compiled-graphed 64.0 vs full FT compiled-graphed 80.0" in targets
    assert "compiled-graphed 512: 1.02× (≥ 1.0" in targets
    assert "modes compiled-graphed (compile scope: blocks)" in targets
    assert "merged LoRA latency / base within 1.00 ± 0.02, eager | 32x512 1.010" in targets
    assert (
        "logs/cut.log` (cut at the GPU call's limit, no record): roberta-large 512 lora peft"
        in targets
    )
    assert len(written) == 3


def test_embedded_tables_keep_their_figure_links(tmp_path):
    """A table.md linking a figure beside it still links it from the README's folder."""
    from lora_exp.report.readme import rebase_links

    artifact = tmp_path / "results" / "section7"
    (artifact / "pair").mkdir(parents=True)
    (artifact / "pair" / "fig.png").write_bytes(b"png")
    text = "[fig](pair/fig.png) [web](https://example.org) [anchor](#x) [gone](nope.png)"
    rebased = rebase_links(text, artifact, tmp_path)
    assert rebased == (
        "[fig](results/section7/pair/fig.png) [web](https://example.org) [anchor](#x) "
        "[gone](nope.png)"
    )
