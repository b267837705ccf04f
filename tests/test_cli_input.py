"""Input errors before the run starts: Hydra-level errors and an unusable output directory exit 2
with one `error: ...` line (README, "Failure behaviour")."""

from __future__ import annotations

import os

import pytest

from lora_exp import output_location
from tests.conftest import run_cli


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith("error: ")
    return lines[0]


# --- Hydra-level input errors: exit 2, one line, Hydra's suggestion kept ----------------------

HYDRA_CASES = [
    (["model=nope"], ["Could not find 'model/nope'", "Available options in 'model':", "tiny-bert"]),
    (["rnak=3"], ["Could not override 'rnak'", "To append to your config use +rnak=3"]),
    (["task.nmae=x"], ["Could not override 'task.nmae'", "Key 'nmae' is not in struct"]),
    (["rank=[1,"], ["cannot parse 'rank=[1,'", "override_grammar"]),
    (["rank=1,2"], ["Ambiguous value for argument 'rank=1,2'", "add --multirun"]),
]


@pytest.mark.parametrize(("args", "expected"), HYDRA_CASES, ids=lambda c: str(c))
def test_hydra_input_errors_exit_2_with_one_line(tmp_path, args, expected):
    result = run_cli([*args, f"hydra.run.dir={tmp_path / 'run'}", f"records_root={tmp_path}"])
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    for text in expected:
        assert text in line, line
    assert "Config search path" not in line
    assert not (tmp_path / "run").exists()  # nothing was created for a command that never ran


# --- the output directory, checked before Hydra creates it ------------------------------------


def test_output_dir_through_an_existing_file_exits_2(tmp_path):
    existing = tmp_path / "a_file"
    existing.write_text("not a directory")
    for target in (existing, existing / "run"):
        result = run_cli([f"hydra.run.dir={target}", f"records_root={tmp_path}"])
        assert result.returncode == 2
        line = _one_error_line(result.stderr)
        assert f"hydra.run.dir={target}" in line and "existing file" in line, line
    assert existing.read_text() == "not a directory"


def test_read_only_output_location_exits_2(tmp_path):
    # /proc refuses new directories even for root; a chmod 0555 directory only refuses others.
    result = run_cli(["hydra.run.dir=/proc/lora_exp_run", f"records_root={tmp_path}"])
    assert result.returncode == 2
    assert "/proc is read-only: cannot create /proc/lora_exp_run" in _one_error_line(result.stderr)


def test_sweep_dir_is_checked_for_a_multirun(tmp_path):
    existing = tmp_path / "a_file"
    existing.write_text("")
    result = run_cli(["-m", "rank=1,2", f"hydra.sweep.dir={existing}", "dry_run=true"])
    assert result.returncode == 2
    assert f"hydra.sweep.dir={existing}" in _one_error_line(result.stderr)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 directory")
def test_unwritable_directory_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    problem = output_location.check([f"hydra.run.dir={locked}/run"])
    assert problem is not None and f"{locked} is not writable" in problem


def test_interpolated_part_of_the_path_is_not_checked(tmp_path):
    argv = [f"hydra.run.dir={tmp_path}/runs/${{now:%H-%M}}_x", "rank=4"]
    assert output_location.requested_dir(argv) == ("hydra.run.dir", argv[0].split("=", 1)[1])
    assert output_location.literal_prefix(argv[0].split("=", 1)[1]) == tmp_path / "runs"
    assert output_location.check(argv) is None
    assert not (tmp_path / "runs").exists()  # a check, not a mkdir


def test_the_default_outputs_parent_is_checked(tmp_path):
    (tmp_path / "outputs").write_text("a file where the default output directory goes")
    result = run_cli(["rank=4"], cwd=tmp_path)
    assert result.returncode == 2
    assert "the default output directory outputs/" in _one_error_line(result.stderr)


def test_help_and_cfg_need_no_output_directory(tmp_path):
    (tmp_path / "outputs").write_text("a file where the default output directory goes")
    for flags in (["--help"], ["--cfg", "job"]):
        result = run_cli(flags, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert output_location.check(["--cfg", "job", "hydra.run.dir=/proc/x"]) is None
