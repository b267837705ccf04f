"""The method registry: `conf/method/<name>.yaml` -> the class registered under `name`."""

from __future__ import annotations

from omegaconf import DictConfig

from lora_exp.errors import UserError

METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: register a `Method` subclass under its lowercase `name`."""
    name = cls.name
    if name != name.lower() or name in METHODS:
        raise ValueError(f"method name '{name}' must be lowercase and unique")
    METHODS[name] = cls
    return cls


def build_method(method_cfg: DictConfig):
    """Instantiate the method named by `method_cfg.name`."""
    if method_cfg.name not in METHODS:
        raise UserError(
            f"unknown method '{method_cfg.name}'; registered methods: {', '.join(sorted(METHODS))}"
        )
    return METHODS[method_cfg.name](method_cfg)
