"""Task metrics, computed with torchmetrics exactly as the benchmarks define them.

Metric keys used in `task.metrics` and in logged names (`val/<key>`, `test/<key>`):

    acc        accuracy (fraction correct; tables print x100)
    f1_macro   unweighted mean of per-class F1 (imbalanced multi-class tasks)
    f1         binary F1 of the positive class 1 (GLUE MRPC, QQP)
    mcc        Matthews correlation (GLUE CoLA)
    pearson    Pearson correlation (GLUE STS-B, the paper's column)
    spearman   Spearman rank correlation (GLUE STS-B)

Classification metrics take predicted class ids; regression metrics take the scalar prediction.
"""

from __future__ import annotations

from collections.abc import Callable

from lora_exp.errors import UserError


def _factories(num_labels: int) -> dict[str, Callable]:
    import torchmetrics.classification as C
    import torchmetrics.regression as R

    return {
        "acc": lambda: C.MulticlassAccuracy(num_classes=num_labels, average="micro"),
        "f1_macro": lambda: C.MulticlassF1Score(num_classes=num_labels, average="macro"),
        "f1": lambda: C.BinaryF1Score(),
        "mcc": lambda: C.MulticlassMatthewsCorrCoef(num_classes=max(num_labels, 2)),
        "pearson": lambda: R.PearsonCorrCoef(),
        "spearman": lambda: R.SpearmanCorrCoef(),
    }


METRIC_KEYS = ("acc", "f1_macro", "f1", "mcc", "pearson", "spearman")


def build_metrics(keys: list[str], num_labels: int):
    """A torchmetrics MetricCollection with one entry per key."""
    from torchmetrics import MetricCollection

    factories = _factories(num_labels)
    unknown = [k for k in keys if k not in factories]
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; known: {', '.join(METRIC_KEYS)}")
    return MetricCollection({key: factories[key]() for key in keys})
