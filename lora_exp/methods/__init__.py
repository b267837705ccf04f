"""Fine-tuning methods, one module each, registered by name (see `base.Method`).

Every module of this package is imported here, so a class decorated with `@register` in a new
module is found by `build_method` without being listed anywhere (DESIGN.md: a new method is one
module, one YAML and one test row). Helper modules (layers, the PEFT export) register nothing;
importing them costs nothing beyond torch, which the methods import anyway.
"""

import importlib
import pkgutil
import sys

from lora_exp.methods.base import Method
from lora_exp.methods.registry import METHODS, build_method, register


def _module_run_by_python_m() -> str | None:
    """The module `python -m` is about to run, if any.

    runpy imports this package before it runs `lora_exp.methods.peft_export` as __main__; had the
    package imported that module already, runpy would warn that it "may result in unpredictable
    behaviour" (the module would exist twice).
    """
    argv = getattr(sys, "orig_argv", [])
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None


def _import_every_module() -> None:
    skip = _module_run_by_python_m()
    for info in pkgutil.iter_modules(__path__):
        name = f"{__name__}.{info.name}"
        if name != skip:
            importlib.import_module(name)


_import_every_module()

__all__ = ["METHODS", "Method", "build_method", "register"]
