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
