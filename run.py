"""Entry point: `python run.py [group=option ...] [knob=value ...]` (see `python run.py --help`).

Hydra composes the config from conf/; lora_exp.run_cell.main runs it and writes record.json.
Exit status (README, "Failure behaviour"): 0 success; 2 bad input, with one `error: ...` line and
no traceback (an unknown group option, a misspelled knob, bad override syntax, an unusable output
directory, a bad value or missing data); 128 + N when stopped by signal N (lora_exp/cli.py);
1 for anything else, with its traceback.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

JOB_STARTED = False  # set when Hydra hands over: errors before that are the command line's


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def run(cfg: DictConfig) -> None:
    global JOB_STARTED
    JOB_STARTED = True
    from lora_exp.cli import run_main

    run_main(cfg)


def one_line(err: BaseException) -> str:
    """Hydra's message (and its cause's first line) as one line, its suggestions kept."""
    parts: list[str] = []
    override = getattr(err, "override", None)  # OverrideParseException: which argument
    if override:
        parts.append(f"cannot parse '{override}':")
    for raw in str(err).splitlines():
        line = raw.strip()
        if line.startswith("Config search path"):
            break  # Hydra's internals, not the user's input
        if not line:
            continue
        if raw.startswith("\t") and parts:  # the "Available options in 'model':" list
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
        else:
            parts.append(line)
    cause = str(err.__cause__ or "").strip().splitlines()
    if cause and cause[0] not in parts:
        parts.append(f"({cause[0]})")
    return " ".join(parts)


def main() -> int:
    from lora_exp import output_location

    # Hydra creates the output directory before any project code runs: check it first.
    problem = output_location.check(sys.argv[1:])
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return 2
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from lora_exp.errors import UserError

    # Hydra prints its own errors and calls sys.exit(1) for all of them alike, a typo and a crash.
    # HYDRA_FULL_ERROR is Hydra's documented switch to re-raise instead; the exception types are
    # its public API (hydra.errors), so this needs no private function or patch of Hydra's.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run()
    except (HydraException, OmegaConfBaseException) as err:
        if JOB_STARTED:
            raise  # inside the run: a bug, keep the traceback
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except UserError as err:  # a sweep's failed cell, already printed by lora_exp.cli
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
