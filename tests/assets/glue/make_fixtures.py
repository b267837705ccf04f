"""Write the tiny GLUE fixtures in both local layouts (the committed files come from this script).

    .venv/bin/python tests/assets/glue/make_fixtures.py   # rewrites the three layouts

The sentences are made up; the file formats are the real ones, quirks included:

* glue_tsv/: the original GLUE distribution. Tab-separated, no quoting (texts carry unbalanced `"`),
  MNLI train with 12 columns and dev with 16 (five annotator labels), CoLA train/dev without a
  header (source, label, original mark, sentence), MRPC train/dev with a UTF-8 byte-order mark
  before "Quality", STS-B with its 10 columns, SST-2 sentences ending in a space, string labels for
  MNLI/QNLI/RTE and 0/1 for the others. QQP's train holds one row missing its label field: the hub's
  GLUE builder drops such rows, so the hub files below lack it.
* hub_parquet/<task>/<split>.parquet and hub_jsonl/<task>/<split>.jsonl: the same examples as the
  hub dataset `nyu-mll/glue` exports them: its column names, integer ClassLabel ids (float32 scores
  for STS-B) and `idx`.

Each example is written below once, with its hub label id by hand, so the tests can check that both
layouts read into these ids.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ["Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Gita", "Hugo", "Ines", "Jon", "Kemal"]
PLACES = ["the harbour", "a small bakery", "the old library", "the station", "a rooftop garden"]


def _pick(seq, i):
    return seq[i % len(seq)]


# --- the examples: (text fields..., hub label id) ----------------------------------------------


def mnli(split: str, n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        who, where = _pick(NAMES, i), _pick(PLACES, i + len(split))
        premise = f'{who} said "we met at {where} , twice" and then left.'
        if i % 4 == 3:
            premise = f'{who} waited at {where} for the "last train.'  # an unbalanced quote
        label = i % 3  # entailment, neutral, contradiction
        hypothesis = [
            f"{who} mentioned {where}.",
            f"{who} likes {where} a lot.",
            f"{who} has never been to {where}.",
        ][label]
        rows.append((premise, hypothesis, label))
    return rows


def sst2(split: str, n: int) -> list[tuple]:
    good = ["a warm , funny and wise film", "gorgeous to look at", "the cast is superb"]
    bad = ["a tedious mess", "the plot never arrives", "flat , dull and far too long"]
    return [
        (_pick(good if i % 2 else bad, i + len(split)) + f" {_pick(NAMES, i).lower()} ", i % 2)
        for i in range(n)
    ]


def mrpc(split: str, n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        who, where = _pick(NAMES, i), _pick(PLACES, i)
        first = f'{who} said the plan for {where} was " finished " on Monday .'
        if i % 3:
            rows.append((first, f'On Monday , {who} called the plan for {where} " finished " .', 1))
        else:
            rows.append((first, f"{who} will present a new plan for {where} next year .", 0))
    return rows


def cola(split: str, n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        who = _pick(NAMES, i + len(split))
        if i % 3:
            rows.append((f"{who} gave the book to {_pick(NAMES, i + 1)}.", 1))
        else:
            rows.append((f"{who} the book gave to {_pick(NAMES, i + 1)} to.", 0))
    return rows


def qnli(split: str, n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        who, where = _pick(NAMES, i), _pick(PLACES, i)
        question = f"Where did {who} open the shop?"
        if i % 2:
            rows.append((question, f'{who} opened the shop at {where} in the "good" year.', 1))
        else:
            rows.append((question, f"{who} opened the shop at {where}.", 0))
    return rows


def qqp(split: str, n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        where = _pick(PLACES, i + len(split))
        question = f"How do I get to {where} from the centre?"
        if i % 2:
            rows.append((question, f"What is the way from the centre to {where}?", 1))
        else:
            rows.append((question, f'Is {where} worth a visit in "winter"?', 0))
    return rows


def rte(split: str, n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        who, where = _pick(NAMES, i), _pick(PLACES, i + 1)
        text = f'{who}, who runs {where}, told reporters the "deal was done".'
        if i % 2:
            rows.append((text, f"{who} runs {where}.", 0))  # entailment
        else:
            rows.append((text, f"{who} sold {where}.", 1))  # not_entailment
    return rows


def stsb(split: str, n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        who, where = _pick(NAMES, i), _pick(PLACES, i)
        score = round((i * 0.7) % 5.0, 3)
        rows.append((f"{who} is walking to {where}.", f'A person walks to "{where}".', score))
    return rows


SIZES = {  # hub split -> number of examples; MNLI's two dev sets differ in size on purpose
    "mnli": {"train": 24, "validation_matched": 9, "validation_mismatched": 7},
    **{t: {"train": 24, "validation": 8} for t in ("sst2", "mrpc", "cola", "qnli", "qqp", "rte")},
    "stsb": {"train": 24, "validation": 8},
}
MAKERS = {
    "mnli": mnli,
    "sst2": sst2,
    "mrpc": mrpc,
    "cola": cola,
    "qnli": qnli,
    "qqp": qqp,
    "rte": rte,
    "stsb": stsb,
}
FIELDS = {
    "mnli": ["premise", "hypothesis"],
    "sst2": ["sentence"],
    "mrpc": ["sentence1", "sentence2"],
    "cola": ["sentence"],
    "qnli": ["question", "sentence"],
    "qqp": ["question1", "question2"],
    "rte": ["sentence1", "sentence2"],
    "stsb": ["sentence1", "sentence2"],
}
NLI = ["entailment", "neutral", "contradiction"]
BINARY_NLI = ["entailment", "not_entailment"]


def examples(task: str) -> dict[str, list[tuple]]:
    """Hub split -> examples (text fields..., hub label)."""
    return {split: MAKERS[task](split, n) for split, n in SIZES[task].items()}


# --- the GLUE distribution's files ---------------------------------------------------------------


def _parse(sentence: str) -> tuple[str, str]:
    words = sentence.split()
    binary = "( " + " ".join(f"( {w} )" for w in words) + " )"
    return binary, "(ROOT (S " + " ".join(f"(X {w})" for w in words) + "))"


def glue_lines(task: str, split: str, rows: list[tuple]) -> list[str]:
    """The lines of one GLUE distribution file, header included where GLUE has one."""
    if task == "mnli":
        dev = split != "train"
        head = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
        head += "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1"
        head += "\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label" if dev else "\tgold_label"
        lines = [head]
        for i, (p, h, y) in enumerate(rows):
            (pb, pp), (hb, hp) = _parse(p), _parse(h)
            votes = [NLI[y]] * (5 if dev else 1)
            genre = "fiction" if split != "validation_mismatched" else "letters"
            fields = [str(i), str(1000 + i), f"{1000 + i}e", genre, pb, hb, pp, hp, p, h, *votes]
            lines.append("\t".join([*fields, NLI[y]]))
        return lines
    if task == "sst2":
        return ["sentence\tlabel", *(f"{s}\t{y}" for s, y in rows)]
    if task == "mrpc":
        lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        lines += [
            f"{y}\t{7000 + 2 * i}\t{7001 + 2 * i}\t{a}\t{b}" for i, (a, b, y) in enumerate(rows)
        ]
        return lines
    if task == "cola":  # no header: source, label, original mark ("*" if unacceptable), sentence
        return [f"gj04\t{y}\t{'' if y else '*'}\t{s}" for s, y in rows]
    if task == "qnli":
        return ["index\tquestion\tsentence\tlabel"] + [
            f"{i}\t{q}\t{s}\t{BINARY_NLI[y]}" for i, (q, s, y) in enumerate(rows)
        ]
    if task == "qqp":
        lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
        lines += [
            f"{i}\t{2 * i + 1}\t{2 * i + 2}\t{a}\t{b}\t{y}" for i, (a, b, y) in enumerate(rows)
        ]
        if split == "train":  # a row missing its last field: the hub's builder drops it
            lines.insert(5, "999\t1999\t2000\tWhy is the sky blue?\tWhat makes the sky blue?")
        return lines
    if task == "rte":
        return ["index\tsentence1\tsentence2\tlabel"] + [
            f"{i}\t{a}\t{b}\t{BINARY_NLI[y]}" for i, (a, b, y) in enumerate(rows)
        ]
    if task == "stsb":
        head = (
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
        )
        return [head] + [
            f"{i}\tmain-captions\tMSRvid\t2012test\t{i + 1:04d}\tnone\tnone\t{a}\t{b}\t{y:.3f}"
            for i, (a, b, y) in enumerate(rows)
        ]
    raise ValueError(task)


GLUE_FOLDERS = {
    "mnli": "MNLI",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "cola": "CoLA",
    "qnli": "QNLI",
    "qqp": "QQP",
    "rte": "RTE",
    "stsb": "STS-B",
}


def glue_file(task: str, split: str) -> str:
    if task == "mnli" and split != "train":
        return "dev_matched.tsv" if split == "validation_matched" else "dev_mismatched.tsv"
    return "train.tsv" if split == "train" else "dev.tsv"


# --- writing -----------------------------------------------------------------------------------


def write_all(out: Path = HERE) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for task in MAKERS:
        for split, rows in examples(task).items():
            tsv = out / "glue_tsv" / GLUE_FOLDERS[task] / glue_file(task, split)
            tsv.parent.mkdir(parents=True, exist_ok=True)
            tsv.write_text("\n".join(glue_lines(task, split, rows)) + "\n", encoding="utf-8")

            columns = {f: [r[k] for r in rows] for k, f in enumerate(FIELDS[task])}
            label_type = pa.float32() if task == "stsb" else pa.int64()
            columns["label"] = [r[-1] for r in rows]
            columns["idx"] = list(range(len(rows)))
            if task == "qqp" and split == "train":  # the hub counts the dropped row in idx
                columns["idx"] = [i if i < 4 else i + 1 for i in columns["idx"]]
            table = pa.table(
                {
                    **{f: pa.array(columns[f], pa.string()) for f in FIELDS[task]},
                    "label": pa.array(columns["label"], label_type),
                    "idx": pa.array(columns["idx"], pa.int32()),
                }
            )
            parquet = out / "hub_parquet" / task / f"{split}.parquet"
            parquet.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, parquet)
            jsonl = out / "hub_jsonl" / task / f"{split}.jsonl"
            jsonl.parent.mkdir(parents=True, exist_ok=True)
            with jsonl.open("w", encoding="utf-8") as handle:
                for row in table.to_pylist():  # float32 scores come out as the hub writes them
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_all()
    print(f"wrote {HERE}/glue_tsv, hub_parquet, hub_jsonl")
