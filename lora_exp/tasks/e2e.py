"""E2E NLG Challenge (Novikova et al. 2017) as the paper runs it (Sec. 5.4, Table 3).

Restaurant meaning representations (MRs) -> text: `name[The Eagle], eatType[coffee shop],
near[Burger King]` -> "The Eagle is a coffee shop near Burger King." Each MR has several human
references (train 42,061 rows / 4,862 MRs, dev 4,672 / 547, test 4,693 / 630); generation is scored
against all references of an MR at once (`e2e_metrics.py`).

Sources, chosen by `task.data_dir`:

* unset: the hub dataset `task.hub.path` (columns meaning_representation, human_reference; splits
  train, validation, test);
* `task.data_dir=DIR`: the challenge's own distribution (e2e-dataset), CSV files with a header
  `mr,ref` and one (MR, reference) pair a row, quoted as the challenge ships them:
  `DIR/trainset.csv`, `DIR/devset.csv`, `DIR/testset_w_refs.csv` (the test file with references).

Every split becomes a `datasets.Dataset` with columns `mr` (as given), `context` (the MR as the
model reads it, `task.mr_format`) and `ref` (one reference). Rows of one MR stay in file order, so
`e2e_metrics.group_references` recovers the multi-reference groups.

`task.mr_format`:
  lora   the form of the data in microsoft/LoRA `examples/NLG/data/e2e` (from Li & Liang 2021):
         `name : The Eagle | Type : coffee shop | near : Burger King`, i.e. `key[value]` -> `key :
         value`, joined by ` | `, with eatType -> Type and priceRange -> price (the renames visible
         in those files; other keys kept as they are).
  raw    the MR string unchanged.
The official files also hold references re-tokenised with spaces around punctuation; we train on
the references as the challenge ships them (the metrics tokenise both the same way).
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from omegaconf import DictConfig

from lora_exp.checks.inputs import register_check
from lora_exp.errors import UserError
from lora_exp.tasks.glue import HUB_HOST, hub_reachable
from lora_exp.tasks.registry import register_loader

log = logging.getLogger("lora_exp")
SPLITS = ("train", "validation", "test")
MR_COLUMNS = ("mr", "meaning_representation")  # the challenge's CSV header, then the hub's name
REF_COLUMNS = ("ref", "human_reference")
KEY_RENAMES = {"eatType": "Type", "priceRange": "price"}
_SLOT = re.compile(r"\s*([^\[,]+?)\s*\[(.*?)\]\s*,?")


def format_mr(mr: str, style: str = "lora") -> str:
    """An MR as the model reads it (see the module docstring for the styles)."""
    if style == "raw":
        return mr
    if style != "lora":
        raise UserError(f"task.mr_format must be lora or raw, got {style!r}")
    slots = _SLOT.findall(mr)
    if not slots:
        raise UserError(
            f"cannot parse the meaning representation {mr!r} (expected key[value], ...)"
        )
    return " | ".join(f"{KEY_RENAMES.get(k, k)} : {v.strip()}" for k, v in slots)


def local_paths(task_cfg: DictConfig) -> dict[str, Path]:
    root = Path(str(task_cfg.data_dir)).expanduser()
    return {split: root / name for split, name in task_cfg.files.items()}


def how_to_supply(task_cfg: DictConfig, reason: str) -> str:
    """One paragraph: why the data are missing and which files go where."""
    files = ", ".join(f"DIR/{name} ({split})" for split, name in task_cfg.files.items())
    return (
        f"{reason}. Supply the E2E NLG Challenge files and pass task.data_dir=DIR: {files}, CSV "
        f"with the header `mr,ref` and one (meaning representation, reference) pair a row, as the "
        f"challenge's distribution (github.com/tuetschek/e2e-dataset, e2e-dataset.zip) ships them; "
        f"or run where the hub dataset '{task_cfg.hub.path}' can be downloaded (or is cached)"
    )


def _csv_columns(path: Path) -> tuple[int, int]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise UserError(f"{path} is empty (expected a header `mr,ref` and E2E rows)")
    names = [h.strip().lower() for h in header]
    found = [
        next((names.index(c) for c in wanted if c in names), None)
        for wanted in (MR_COLUMNS, REF_COLUMNS)
    ]
    if None in found:
        raise UserError(
            f"{path}: its header ({', '.join(header)}) lacks the column mr or ref; the E2E "
            f"challenge's CSV files start with `mr,ref`"
        )
    return found[0], found[1]


@register_check("e2e")
def check_source(task_cfg: DictConfig) -> None:
    """Fail in milliseconds when the data (or Java, for METEOR) cannot be had; no heavy imports."""
    if task_cfg.get("data_dir"):
        paths = local_paths(task_cfg)
        root = Path(str(task_cfg.data_dir)).expanduser()
        if not root.is_dir():
            raise UserError(how_to_supply(task_cfg, f"task.data_dir={root} is not a directory"))
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise UserError(
                how_to_supply(task_cfg, f"task.data_dir={root} lacks {', '.join(missing)}")
            )
        for path in paths.values():
            _csv_columns(path)
    elif not hub_reachable() and not _hub_cache_has(task_cfg):
        raise UserError(
            how_to_supply(
                task_cfg,
                f"task={task_cfg.name} needs the E2E data: task.data_dir is not set and the hub "
                f"({HUB_HOST}) is not reachable (offline mode is set, or there is no network)",
            )
        )
    if not task_cfg.generation.skip_meteor:
        from lora_exp.tasks.e2e_metrics import require_java

        require_java(f"task={task_cfg.name}'s test metrics")


def _hub_cache_has(task_cfg: DictConfig) -> bool:
    import os

    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    cache = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets"))
    return (cache / str(task_cfg.hub.path).replace("/", "___")).is_dir()


def read_e2e_csv(path: Path) -> tuple[list[str], list[str]]:
    """(MRs, references) of one challenge CSV file, rows in file order."""
    mr_col, ref_col = _csv_columns(path)
    mrs, refs = [], []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            if not row:
                continue
            if len(row) <= max(mr_col, ref_col) or not row[mr_col].strip():
                raise UserError(f"{path}, line {reader.line_num}: expected an MR and a reference")
            mrs.append(row[mr_col].strip())
            refs.append(row[ref_col].strip())
    if not mrs:
        raise UserError(f"{path} holds no E2E rows")
    return mrs, refs


def _from_hub(task_cfg: DictConfig, split: str) -> tuple[list[str], list[str]]:
    import datasets

    try:
        data = datasets.load_dataset(task_cfg.hub.path, split=task_cfg.hub.splits[split])
    except (ConnectionError, FileNotFoundError) as exc:
        raise UserError(
            how_to_supply(task_cfg, f"cannot load '{task_cfg.hub.path}': {exc}")
        ) from exc
    return list(data["meaning_representation"]), list(data["human_reference"])


@register_loader("e2e")
def load_e2e(task_cfg: DictConfig):
    """train, validation and test with columns mr, context, ref (one reference a row)."""
    import datasets

    check_source(task_cfg)
    out = {}
    for split in SPLITS:
        if task_cfg.get("data_dir"):
            mrs, refs = read_e2e_csv(local_paths(task_cfg)[split])
        else:
            mrs, refs = _from_hub(task_cfg, split)
        contexts = [format_mr(mr, task_cfg.mr_format) for mr in mrs]
        out[split] = datasets.Dataset.from_dict({"mr": mrs, "context": contexts, "ref": refs})
    log.info(
        "e2e from %s: %s",
        task_cfg.get("data_dir") or task_cfg.hub.path,
        ", ".join(f"{s}={len(d):,} rows/{len(set(d['mr'])):,} MRs" for s, d in out.items()),
    )
    return datasets.DatasetDict(out)
