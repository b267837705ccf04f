"""Write a sweep as a manifest for slurm/array.sbatch: one line of run.py overrides per run.

    python slurm/make_manifest.py sweep=table6_rank > outputs/table6.txt
    python slurm/make_manifest.py model=tiny-bert rank=1,2 seed=0,1 > outputs/small.txt

The cells are exactly those `python run.py -m <same arguments>` would launch: the sweep file's
`hydra.sweeper.params` first, then the command line (which wins for the same key), expanded as a
Cartesian product by Hydra's own basic sweeper. Each line is shell-quoted (shlex.join).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf"


def manifest_lines(arguments: list[str], conf_dir: Path = CONF) -> list[str]:
    """One shell-quoted override line per sweep cell, in Hydra's job order."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(arguments)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    # Composing checks every group choice and key now, before anything is submitted.
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name="config", overrides=plain, return_hydra_config=True)
        params = cfg.hydra.sweeper.get("params") or {}
        from_file = [f"{key}={value}" for key, value in params.items()]
        cells = BasicSweeper.split_arguments(parser.parse_overrides(from_file + arguments), None)
        for cell in cells[0]:  # a swept choice that does not exist fails here, not in a job
            compose(config_name="config", overrides=[*cell, "hydra.mode=RUN"])
    return [shlex.join(cell) for cell in cells[0]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="run.py overrides, sweeps as key=a,b,c")
    args = ap.parse_args(argv)
    try:
        lines = manifest_lines(args.overrides)
    except Exception as err:  # Hydra's composition errors are the user's to fix: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    print(
        f"{len(lines)} runs: sbatch --array=1-{len(lines)} slurm/array.sbatch MANIFEST",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
