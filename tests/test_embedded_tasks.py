"""The embedded tasks read real data from PyPI packages into fixed, stratified splits."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from lora_exp.tasks import load_splits
from lora_exp.tasks.datamodule import fingerprint
from lora_exp.tasks.metrics import build_metrics
from tests.conftest import compose


@pytest.fixture(scope="module")
def tweets():
    cfg = compose(["task=tweet_sentiment"])
    return cfg.task, load_splits(cfg.task)


def test_tweets_are_deduplicated_and_split_80_10_10(tweets):
    _, splits = tweets
    sizes = {name: len(splits[name]) for name in ("train", "validation", "test")}
    assert sum(sizes.values()) == 37_243  # 38,158 rows, 915 repeated texts dropped
    assert sizes == {"train": 29_793, "validation": 3_725, "test": 3_725}
    texts = [set(splits[name]["text"]) for name in ("train", "validation", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_tweet_split_is_stratified(tweets):
    _, splits = tweets
    overall = Counter(y for name in ("train", "validation", "test") for y in splits[name]["label"])
    total = sum(overall.values())
    for name in ("train", "validation", "test"):
        counts, n = Counter(splits[name]["label"]), len(splits[name])
        for label, count in overall.items():
            assert abs(counts[label] / n - count / total) < 0.005, (name, label)


def test_split_never_changes(tweets):
    task, splits = tweets
    again = load_splits(task)
    assert fingerprint(splits, ["text"]) == fingerprint(again, ["text"])
    # Pinned: if this changes, the data or the split changed; bump task.version.
    assert fingerprint(splits, ["text"]) == "4ae24aa0d792b350"


def test_bbc_news_reads_five_sorted_topics():
    task = compose(["task=bbc_news"]).task
    splits = load_splits(task)
    assert sum(len(splits[n]) for n in ("train", "validation", "test")) == 2_225
    names = splits["train"].features["label"].names
    assert names == ["business", "entertainment", "politics", "sports", "tech"]
    counts = Counter(y for n in ("train", "validation", "test") for y in splits[n]["label"])
    assert [counts[i] for i in range(5)] == [510, 386, 417, 511, 401]


def test_metrics_on_hand_made_predictions():
    metrics = build_metrics(["acc", "f1_macro"], num_labels=3)
    preds = torch.tensor([0, 0, 1, 1, 2, 0])
    target = torch.tensor([0, 1, 1, 1, 2, 2])
    values = {k: v.item() for k, v in metrics(preds, target).items()}
    assert values["acc"] == pytest.approx(4 / 6)
    # per-class F1: class 0: p=1/3 r=1 -> 0.5; class 1: p=1 r=2/3 -> 0.8; class 2: p=1 r=1/2 -> 2/3
    assert values["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_splits_are_those_of_datasets_train_test_split_and_tokens_those_of_map(tweets):
    """The fast paths (labels read as one column, one tokenizer call per split) give the splits
    and token ids that `Dataset.train_test_split(stratify_by_column=...)` and `Dataset.map` give."""
    from lora_exp.models import load_tokenizer
    from lora_exp.tasks.datamodule import TaskDataModule
    from lora_exp.tasks.embedded import _stratified_halves

    _, splits = tweets
    whole = splits["validation"]  # any labelled Dataset: re-split it both ways

    ours = _stratified_halves(whole, 0.25, 7)
    theirs = whole.train_test_split(test_size=0.25, stratify_by_column="label", seed=7)
    assert ours[0]["text"][:] == theirs["train"]["text"][:]
    assert ours[1]["text"][:] == theirs["test"]["text"][:]

    cfg = compose(["task=tweet_sentiment"])
    tokenizer = load_tokenizer(cfg.model)
    data = TaskDataModule(cfg.task, cfg.budget, tokenizer, 32, 128)
    sample = whole.select(range(200))
    fast = data._tokenize({"x": sample.to_dict()}, ["text"])["x"]

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=int(cfg.task.max_seq_len))

    slow = sample.map(tokenize, batched=True, remove_columns=["text"])
    assert fast == slow.rename_column("label", "labels").to_list()
