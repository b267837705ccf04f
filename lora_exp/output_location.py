"""Is the run's output directory usable? Checked by run.py before Hydra tries to create it.

Hydra creates `hydra.run.dir` (or `hydra.sweep.dir`) before any project code runs, so a path
through an existing file, or into a read-only location, used to end in a traceback from inside
Hydra. This module reads the directory from the command line (or the default in
conf/config.yaml: `outputs/...` under the current directory) and answers in microseconds, with
no imports beyond the standard library.

Only the literal part of the path is checked: `outputs/runs/${now:...}_x` is checked up to
`outputs/runs`, since the rest is only known once Hydra resolves it.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = "outputs"  # conf/config.yaml: hydra.run.dir and hydra.sweep.dir start with it
MULTIRUN_FLAGS = ("-m", "--multirun")
# Hydra flags that print and exit without creating an output directory.
NO_OUTPUT_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--shell-completion")


def requested_dir(argv: list[str]) -> tuple[str, str]:
    """(the setting, its literal value) that decides where this command writes.

    `hydra.sweep.dir` for a multirun, else `hydra.run.dir`; the default when neither is given.
    """
    key = "hydra.sweep.dir" if any(a in MULTIRUN_FLAGS for a in argv) else "hydra.run.dir"
    value = DEFAULT_DIR
    for arg in argv:
        name, sep, given = arg.lstrip("+").partition("=")
        if sep and name == key:
            value = given.strip("'\"")
    return key, value


def literal_prefix(value: str) -> Path:
    """The part of a path before its first `${...}` interpolation, as a directory."""
    literal = value.split("${", 1)[0]
    if "${" in value and not literal.endswith(("/", os.sep)):
        literal = os.path.dirname(literal)  # `runs/${now:...}_x` -> `runs`, a partial name dropped
    return Path(literal or ".").expanduser()


def problem_with(path: Path) -> str | None:
    """Why `path` cannot be (created as) a writable directory, or None if it can."""
    probe = path.absolute()
    while True:
        if probe.exists():
            if not probe.is_dir():
                if probe == path.absolute():
                    return f"{path} is an existing file, not a directory"
                return f"{path} passes through {probe}, an existing file, not a directory"
            if not os.access(probe, os.W_OK | os.X_OK):
                return f"{probe} is not writable by this user"
            if probe != path.absolute() and not _can_create_in(probe):
                return f"{probe} is read-only: cannot create {path}"
            return None
        probe = probe.parent


def _can_create_in(directory: Path) -> bool:
    """Whether a directory can be made in `directory` (os.access ignores read-only mounts)."""
    try:
        os.rmdir(_make_probe(directory))
    except OSError:
        return False
    return True


def _make_probe(directory: Path) -> Path:
    probe = directory / f".lora_exp_write_probe_{os.getpid()}"
    os.mkdir(probe)
    return probe


def check(argv: list[str]) -> str | None:
    """One line saying why the command's output directory is unusable, or None."""
    if any(a.split("=", 1)[0] in NO_OUTPUT_FLAGS for a in argv):
        return None  # `--help` works in a read-only checkout
    key, value = requested_dir(argv)
    problem = problem_with(literal_prefix(value))
    if problem is None:
        return None
    where = f"{key}={value}" if value != DEFAULT_DIR else f"the default output directory {value}/"
    return f"cannot write the run's output to {where}: {problem}; pass {key}=<a writable directory>"
