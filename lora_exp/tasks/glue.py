"""GLUE (Wang et al. 2019) as the paper runs it (Sec. 5.1, Table 2), from the hub or local files.

One loader serves the eight tasks; each `conf/task/<task>.yaml` describes its data:

    hub.path, hub.name    the canonical hub dataset (`nyu-mll/glue`) and its config
    splits                our split -> the hub's split (MNLI: validation = validation_matched)
    extra_eval_splits     hub split -> metric suffix, scored once at the best checkpoint
                          (MNLI: validation_mismatched -> test/acc_mm; see tasks/extra_eval.py)
    glue_files            the original GLUE distribution: folder, file per hub split, whether the
                          file has a header, our text field -> TSV column, the label column
    text_fields, label_names / label_range, problem

With `task.data_dir=DIR` the files come from either local layout, detected by which files exist:

1. The original GLUE distribution, unzipped: `DIR/MNLI/train.tsv`, `dev_matched.tsv`, ... (DIR
   may also be the task folder itself). Read as the hub's GLUE builder reads them: tab-separated,
   `csv.QUOTE_NONE` (GLUE text contains unbalanced quotes), UTF-8 with MRPC's byte-order mark
   ignored, CoLA's header-less train/dev by position; rows missing a used field, or with an empty
   label, are dropped (the builder's "corrupted rows" filter) and counted in the log. String labels
   map by `label_names` (the hub's ClassLabel order); numeric labels are already ids.
2. Per-split Parquet or JSON Lines files exported from the hub dataset (its column names, integer
   labels): `DIR/<split>.parquet|.jsonl|.json`, also under `DIR/<config>/`, and the hub's own shard
   names `<split>-00000-of-00001.parquet` (a `huggingface-cli download` snapshot).

Both layouts and the hub give identical `datasets.Dataset`s: the text fields as strings and `label`
as a ClassLabel named `label_names` (float32 for STS-B). GLUE test labels are hidden, so the paper
reports dev: `test` is the dev split again (`task.test_is_validation`).

Offline, a hub lookup can hang on network time-outs. `check_source` (called before anything heavy
is imported) decides in milliseconds and fails with one message naming the files for both layouts.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from lora_exp.checks.inputs import register_check
from lora_exp.errors import UserError
from lora_exp.tasks.registry import register_loader

log = logging.getLogger("lora_exp")
HUB_HOST = "huggingface.co"
HUB_EXTENSIONS = (".parquet", ".jsonl", ".json")


# --- where the data come from -------------------------------------------------------------------


@functools.cache
def _probe_hub(timeout_s: float) -> bool:
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout_s).close()
    except OSError:  # includes a failed DNS lookup
        return False
    return True


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """False if offline mode is set or the hub does not answer within `timeout_s` (probed once)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    return _probe_hub(timeout_s)


def _hub_cache_has(task_cfg: DictConfig) -> bool:
    """Whether the datasets cache seems to hold this config (offline loads can then succeed)."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    cache = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets"))
    return (cache / task_cfg.hub.path.replace("/", "___") / task_cfg.hub.name).is_dir()


def hub_splits(task_cfg: DictConfig) -> list[str]:
    """The hub split names a run needs: train, the validation split, then any extra eval splits."""
    return [
        task_cfg.splits.train,
        task_cfg.splits.validation,
        *(task_cfg.get("extra_eval_splits") or {}),
    ]


def how_to_supply(task_cfg: DictConfig, reason: str) -> str:
    """One paragraph: why the data are missing and which files to put where, in both layouts."""
    splits, spec = hub_splits(task_cfg), task_cfg.glue_files
    glue = ", ".join(f"DIR/{spec.folder}/{spec.files[s]}" for s in splits)
    exported = ", ".join(f"DIR/{s}.parquet" for s in splits)
    columns = ", ".join([*task_cfg.text_fields, "label"])
    path, name = task_cfg.hub.path, task_cfg.hub.name
    export = (
        f"python -c \"import datasets; ds = datasets.load_dataset('{path}', '{name}'); "
        f"[ds[s].to_parquet(f'DIR/{{s}}.parquet') for s in {splits}]\""
    )
    return (
        f"{reason}. Supply the {task_cfg.name.upper()} files and pass task.data_dir=DIR, in either "
        f"layout: (1) the original GLUE distribution, unzipped: {glue}; or (2) per-split files "
        f"exported from the hub dataset '{path}' (config '{name}') with its columns ({columns}) "
        f"and integer labels: {exported} (or .jsonl; DIR/{name}/... works too), made on a "
        f"machine with network by: {export}"
    )


@dataclass(frozen=True)
class LocalFiles:
    """Files found under `task.data_dir`: the layout and, per hub split, its file(s)."""

    layout: str  # "glue_tsv" or "hub_export"
    files: dict[str, list[Path]]


def _exported_split(base: Path, split: str) -> list[Path]:
    for suffix in HUB_EXTENSIONS:
        if (base / f"{split}{suffix}").is_file():
            return [base / f"{split}{suffix}"]
    return sorted(base.glob(f"{split}-*.parquet"))  # the hub's shard names


def find_local_files(task_cfg: DictConfig) -> LocalFiles:
    """Detect the layout under `task.data_dir` and return the file(s) of every needed split.

    Raises:
        UserError: the directory does not exist, holds neither layout, or only part of one.
    """
    root = Path(str(task_cfg.data_dir)).expanduser()
    splits, spec = hub_splits(task_cfg), task_cfg.glue_files
    if not root.is_dir():
        raise UserError(how_to_supply(task_cfg, f"task.data_dir={root} is not a directory"))
    for base in (root / spec.folder, root):
        paths = {s: base / spec.files[s] for s in splits}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if len(missing) < len(paths):
            if missing:
                raise UserError(
                    f"task.data_dir={root} holds the GLUE distribution's {spec.folder} files but "
                    f"lacks {', '.join(missing)}"
                    + _extra_hint(task_cfg, [s for s, p in paths.items() if str(p) in missing])
                )
            return LocalFiles("glue_tsv", {s: [p] for s, p in paths.items()})
    for base in (root, root / task_cfg.hub.name):
        found = {s: _exported_split(base, s) for s in splits}
        missing = [s for s, files in found.items() if not files]
        if len(missing) < len(found):
            if missing:
                raise UserError(
                    f"task.data_dir={root} holds files exported from the hub but lacks "
                    + ", ".join(f"{base / s}.parquet (or .jsonl)" for s in missing)
                    + _extra_hint(task_cfg, missing)
                )
            return LocalFiles("hub_export", found)
    raise UserError(how_to_supply(task_cfg, f"task.data_dir={root} holds no {task_cfg.name} files"))


def _extra_hint(task_cfg: DictConfig, missing_splits: list[str]) -> str:
    extras = [s for s in missing_splits if s in (task_cfg.get("extra_eval_splits") or {})]
    if not extras:
        return ""
    return f" ({', '.join(extras)} is only scored at the end; task.extra_eval_splits=null skips it)"


@register_check("glue")
def check_source(task_cfg: DictConfig) -> None:
    """Fail now, in milliseconds, if the run could not get its data (no heavy imports).

    Local files: the layout is complete and TSV headers have the expected columns. Hub: it answers,
    or the datasets cache seems to hold the config (offline loads from the cache still work).
    """
    if task_cfg.get("data_dir"):
        local = find_local_files(task_cfg)
        if local.layout == "glue_tsv":
            # Every row, decoded and labelled, before Lightning and torch are imported: a bad
            # byte or label on the last line of MNLI's train.tsv fails in about a second, not
            # after ten of imports. The loader reads the files again (plain Python, no cache).
            for files in local.files.values():
                columns = read_glue_tsv(files[0], task_cfg)
                _check_columns(columns, task_cfg, str(files[0]))
        return
    if not hub_reachable() and not _hub_cache_has(task_cfg):
        raise UserError(how_to_supply(task_cfg, _offline_reason(task_cfg)))


def _offline_reason(task_cfg: DictConfig) -> str:
    return (
        f"task={task_cfg.name} needs the GLUE data: task.data_dir is not set and the hub "
        f"({HUB_HOST}) is not reachable (offline mode is set, or there is no network)"
    )


# --- reading and checking -----------------------------------------------------------------------


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text of a GLUE file (MRPC's byte-order mark dropped), or a `UserError` naming the
    line, the byte and what was expected, instead of a `UnicodeDecodeError` traceback."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(_encoding_problem(data, err, path)) from None


def _encoding_problem(data: bytes, err: UnicodeDecodeError, path: Path) -> str:
    expected = "expected UTF-8 text, as in the GLUE distribution"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:200]:
        return (
            f"{path}, line 1: the file is UTF-16 (a byte-order mark or NUL bytes), {expected}; "
            f"convert it: iconv -f UTF-16 -t UTF-8 {path} > {path.stem}.utf8{path.suffix}"
        )
    line = data.count(b"\n", 0, err.start) + 1
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return (
        f"{path}, line {line}, column {column}: byte 0x{data[err.start]:02x} is not UTF-8, "
        f"{expected} (this byte is common in Latin-1 or Windows-1252 files); re-encode the "
        f"file: iconv -f LATIN1 -t UTF-8 {path} > {path.stem}.utf8{path.suffix}"
    )


def _tsv_rows(text: str, path: Path):
    """(line number, fields) of every row: universal newlines and QUOTE_NONE, exactly as the
    hub's GLUE builder reads these files; a row the csv module rejects names its line."""
    reader = csv.reader(io.StringIO(text, newline=None), delimiter="\t", quoting=csv.QUOTE_NONE)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise UserError(
                f"{path}, line {reader.line_num}: {err}; expected tab-separated text"
            ) from None
        yield reader.line_num, row


def _tsv_positions(path: Path, task_cfg: DictConfig) -> dict[str, int]:
    """Column index of every text field and of the label in one GLUE TSV file."""
    spec = task_cfg.glue_files
    wanted = {**dict(spec.columns), "label": spec.label}
    if not spec.header:  # CoLA train/dev: positions given in the task config
        return {field: int(col) for field, col in wanted.items()}
    with open(path, "rb") as handle:
        first_line = handle.readline()
    _, header = next(_tsv_rows(_decode(first_line, path), path), (1, None))
    if not header:
        raise UserError(f"{path} is empty (expected a header line and {task_cfg.name} rows)")
    absent = [str(col) for col in wanted.values() if col not in header]
    if absent:
        raise UserError(
            f"{path}: no column {', '.join(repr(c) for c in absent)} in its header "
            f"({', '.join(header)}); the GLUE distribution's {spec.folder} files have "
            f"{', '.join(repr(str(c)) for c in wanted.values())}"
        )
    return {field: header.index(col) for field, col in wanted.items()}


def read_glue_tsv(path: Path, task_cfg: DictConfig) -> dict[str, list]:
    """Text fields and raw labels of one GLUE distribution file, rows filtered as the hub does."""
    positions = _tsv_positions(path, task_cfg)
    needed = max(positions.values()) + 1
    columns: dict[str, list] = {field: [] for field in positions}
    lines, dropped = [], 0
    reader = _tsv_rows(_decode(path.read_bytes(), path), path)
    if task_cfg.glue_files.header:
        next(reader, None)
    for line_num, row in reader:
        if len(row) < needed or row[positions["label"]] == "":
            dropped += 1  # the builder's "corrupted rows" filter
            continue
        for field, index in positions.items():
            columns[field].append(row[index])
        lines.append(line_num)
    if dropped:
        log.warning(
            "%s: dropped %d incomplete row(s), as the hub's GLUE builder does", path, dropped
        )
    columns["_where"] = [f"{path}, line {n}" for n in lines]
    return columns


def read_hub_export(paths: list[Path], task_cfg: DictConfig) -> dict[str, list]:
    """Text fields and labels of one split exported from the hub (Parquet or JSON Lines)."""
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    wanted = [*task_cfg.text_fields, "label"]
    columns: dict[str, list] = {field: [] for field in [*wanted, "_where"]}
    for path in paths:
        try:
            table = pq.read_table(path) if path.suffix == ".parquet" else pa_json.read_json(path)
        except Exception as exc:  # pyarrow raises several types for unreadable files
            kind = "Parquet" if path.suffix == ".parquet" else "JSON Lines (one object a line)"
            raise UserError(f"{path} is not readable as {kind}: {exc}") from exc
        absent = [c for c in wanted if c not in table.column_names]
        if absent:
            raise UserError(
                f"{path}: no column {', '.join(repr(c) for c in absent)} (it has "
                f"{', '.join(table.column_names)}); files exported from the hub dataset "
                f"'{task_cfg.hub.path}' config '{task_cfg.hub.name}' have {', '.join(wanted)}, idx"
            )
        for field in wanted:
            columns[field].extend(table.column(field).to_pylist())
        columns["_where"].extend(f"{path}, row {i}" for i in range(table.num_rows))
    return columns


def _label_ids(raw: list, where: list[str], task_cfg: DictConfig) -> list:
    """Raw labels -> class ids (names or ids accepted), or floats in `label_range` (regression)."""
    if task_cfg.problem == "regression":
        low, high = task_cfg.label_range
        out = []
        for value, at in zip(raw, where, strict=True):
            try:
                score = float(value)
            except (TypeError, ValueError):
                score = math.nan
            if not low <= score <= high:  # also rejects NaN
                raise UserError(
                    f"{at}: label {value!r} is not a similarity score in [{low}, {high}]"
                )
            out.append(score)
        return out
    names = list(task_cfg.label_names)
    ids = {name: i for i, name in enumerate(names)} | {str(i): i for i in range(len(names))}
    out = []
    for value, at in zip(raw, where, strict=True):
        key = str(value) if not isinstance(value, bool) else None
        if key not in ids:
            hint = " (-1 marks the hub's unlabelled test splits)" if key == "-1" else ""
            raise UserError(
                f"{at}: label {value!r} is not in {task_cfg.name}'s label set "
                f"{names} (or their ids 0..{len(names) - 1}){hint}"
            )
        out.append(ids[key])
    return out


def _check_columns(columns: dict[str, list], task_cfg: DictConfig, source: str) -> list:
    """Raise `UserError` naming the first bad example; return the label ids."""
    where = columns["_where"]
    if not where:
        raise UserError(f"{source}: the split is empty (no {task_cfg.name} examples)")
    for field in task_cfg.text_fields:
        for value, at in zip(columns[field], where, strict=True):
            if not isinstance(value, str):
                raise UserError(f"{at}: text field '{field}' is {value!r}, not a string")
    return _label_ids(columns["label"], where, task_cfg)


def _to_dataset(columns: dict[str, list], task_cfg: DictConfig, source: str):
    """Check and convert read columns into the common Dataset (same features in every layout)."""
    from datasets import ClassLabel, Dataset, Features, Value

    labels = _check_columns(columns, task_cfg, source)
    columns.pop("_where")
    if task_cfg.problem == "regression":
        label_feature = Value("float32")
    else:
        label_feature = ClassLabel(names=list(task_cfg.label_names))
    features = Features(
        {**{f: Value("string") for f in task_cfg.text_fields}, "label": label_feature}
    )
    data = {f: columns[f] for f in task_cfg.text_fields} | {"label": labels}
    return Dataset.from_dict(data, features=features)


def _from_hub(task_cfg: DictConfig, split: str):
    import datasets

    try:
        dataset = datasets.load_dataset(task_cfg.hub.path, task_cfg.hub.name, split=split)
    except (ConnectionError, FileNotFoundError) as exc:  # offline without a cached copy
        raise UserError(how_to_supply(task_cfg, _offline_reason(task_cfg))) from exc
    label = dataset.features["label"]
    if task_cfg.problem != "regression" and list(label.names) != list(task_cfg.label_names):
        raise UserError(
            f"hub {task_cfg.hub.path}/{task_cfg.hub.name}: labels {label.names} differ from "
            f"task.label_names {list(task_cfg.label_names)}"
        )
    columns = {f: dataset[f] for f in [*task_cfg.text_fields, "label"]}
    columns["_where"] = [f"hub {task_cfg.hub.name}/{split}, row {i}" for i in range(len(dataset))]
    return _to_dataset(columns, task_cfg, f"hub {task_cfg.hub.name}/{split}")


@register_loader("glue")
def load_glue(task_cfg: DictConfig):
    """train, validation, test (= validation) and any extra eval splits (by their hub names)."""
    import datasets

    loaded = {}
    if task_cfg.get("data_dir"):
        local = find_local_files(task_cfg)
        for split, paths in local.files.items():
            if local.layout == "glue_tsv":
                columns = read_glue_tsv(paths[0], task_cfg)
            else:
                columns = read_hub_export(paths, task_cfg)
            loaded[split] = _to_dataset(columns, task_cfg, ", ".join(map(str, paths)))
        log.info(
            "%s from %s (%s): %s",
            task_cfg.name,
            task_cfg.data_dir,
            local.layout,
            ", ".join(f"{s}={len(d):,}" for s, d in loaded.items()),
        )
    else:
        check_source(task_cfg)
        loaded = {split: _from_hub(task_cfg, split) for split in hub_splits(task_cfg)}
    splits = task_cfg.splits
    result = {"train": loaded[splits.train], "validation": loaded[splits.validation]}
    result["test"] = result["validation"]  # GLUE test labels are hidden: the paper reports dev
    for extra in task_cfg.get("extra_eval_splits") or {}:
        result[extra] = loaded[extra]
    return datasets.DatasetDict(result)
