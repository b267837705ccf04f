"""Fine-tuning methods, one module each, registered by name (see `base.Method`)."""

from lora_exp.methods import full_ft, lora  # noqa: F401  (importing registers them)
from lora_exp.methods.base import Method
from lora_exp.methods.registry import METHODS, build_method, register

__all__ = ["METHODS", "Method", "build_method", "register"]
