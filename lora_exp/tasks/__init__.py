"""Tasks: data loaders registered by name, metrics, and the Lightning data module.

A task is data: `conf/task/<name>.yaml` names a registered loader, the text fields, the labels and
the metrics; the loader returns a `datasets.DatasetDict` with `train`, `validation` and `test`
splits holding the text fields and an integer (or float, for regression) `label` column.
"""

from lora_exp.tasks import e2e, embedded, glue  # noqa: F401  (importing registers the loaders)
from lora_exp.tasks.registry import LOADERS, load_splits, register_loader

__all__ = ["LOADERS", "load_splits", "register_loader"]
