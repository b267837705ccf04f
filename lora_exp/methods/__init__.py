"""Fine-tuning methods, one module each, registered by name (see `base.Method`)."""

from lora_exp.methods import (  # noqa: F401  (importing registers them)
    adapter,
    bitfit,
    ft_top2,
    full_ft,
    lora,
    prefix,
)
from lora_exp.methods.base import Method
from lora_exp.methods.registry import METHODS, build_method, register

__all__ = ["METHODS", "Method", "build_method", "register"]
