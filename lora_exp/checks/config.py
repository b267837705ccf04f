"""Validation of the composed config, before anything heavy is imported or loaded.

Every check raises `UserError` with one message that names the bad value and the valid ones, so
bad input exits within a second or two (importing Lightning alone takes five).
"""

from __future__ import annotations

from numbers import Real

from omegaconf import DictConfig, ListConfig

from lora_exp.errors import UserError
from lora_exp.models import TARGET_NAMES  # light: models imports torch only inside functions


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if not _is_int(value) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")


def _positive_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise UserError(f"{name} must be a number > 0, got {value!r}")


def validate_targets(targets) -> list[str]:
    """The LoRA target list: non-empty, known names, no repeats."""
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list | tuple | ListConfig) or not targets:
        raise UserError(f"targets must be a non-empty list such as [q,v], got {targets!r}")
    names = [str(t) for t in targets]
    unknown = [t for t in names if t not in TARGET_NAMES]
    if unknown:
        raise UserError(
            f"unknown target(s) {', '.join(unknown)}; valid targets: {', '.join(TARGET_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise UserError(f"targets must not repeat, got {names}")
    return names


def validate(cfg: DictConfig) -> None:
    """Check the top-level knobs and the budget; methods check their own extra settings."""
    _positive_int("rank", cfg.rank)
    _positive_number("alpha", cfg.alpha)
    validate_targets(cfg.targets)
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    _positive_number("lr", cfg.lr)
    if (
        isinstance(cfg.weight_decay, bool)
        or not isinstance(cfg.weight_decay, Real)
        or cfg.weight_decay < 0
    ):
        raise UserError(f"weight_decay must be a number >= 0, got {cfg.weight_decay!r}")
    if (
        isinstance(cfg.warmup_ratio, bool)
        or not isinstance(cfg.warmup_ratio, Real)
        or not 0 <= cfg.warmup_ratio < 1
    ):
        raise UserError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio!r}")
    _positive_int("batch_size", cfg.batch_size)
    _positive_int("eval_batch_size", cfg.eval_batch_size)
    _positive_int("epochs", cfg.epochs)
    _positive_int("budget.max_train_examples", cfg.budget.max_train_examples, allow_none=True)
    _positive_int("budget.max_eval_examples", cfg.budget.max_eval_examples, allow_none=True)
    if not isinstance(cfg.dry_run, bool):
        raise UserError(f"dry_run must be true or false, got {cfg.dry_run!r}")
    method = cfg.method
    if method.get("init") is not None and method.init not in ("kaiming", "gaussian"):
        raise UserError(f"method.init must be kaiming or gaussian, got {method.init!r}")
    if method.get("dropout") is not None and not (
        isinstance(method.dropout, Real) and 0 <= method.dropout < 1
    ):
        raise UserError(f"method.dropout must be in [0, 1), got {method.dropout!r}")
