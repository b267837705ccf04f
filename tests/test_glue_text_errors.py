"""GLUE TSV files that are not what the distribution holds: each error names the file, the line and
what was expected, exits 2, and arrives before the heavy imports (under 5 s)."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from lora_exp.checks.inputs import preflight
from lora_exp.errors import UserError
from tests.conftest import ROOT, compose, run_cli

GLUE = ROOT / "tests" / "assets" / "glue" / "glue_tsv"


def _rte(tmp_path):
    shutil.copytree(GLUE / "RTE", tmp_path / "RTE")
    return tmp_path / "RTE"


def _preflight(data_dir):
    preflight(compose(["task=rte", f"task.data_dir={data_dir}"]))


def _append(path, raw: bytes) -> int:
    """Append one raw row; return its line number."""
    data = path.read_bytes()
    path.write_bytes(data + raw)
    return data.count(b"\n") + 1


def test_a_latin1_row_names_the_line_column_and_byte(tmp_path):
    train = _rte(tmp_path) / "train.tsv"
    line = _append(train, "99\tcaf\u00e9 au lait\tA drink.\tentailment\n".encode("latin-1"))
    with pytest.raises(UserError) as err:
        _preflight(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{train}, line {line}, column 7: byte 0xe9 is not UTF-8")
    assert "expected UTF-8 text" in message and "iconv -f LATIN1 -t UTF-8" in message


def test_a_utf16_file_is_named_as_utf16(tmp_path):
    dev = _rte(tmp_path) / "dev.tsv"
    dev.write_bytes(dev.read_text().encode("utf-16"))
    with pytest.raises(UserError) as err:
        _preflight(tmp_path)
    assert str(err.value).startswith(f"{dev}, line 1: the file is UTF-16")
    assert "iconv -f UTF-16 -t UTF-8" in str(err.value)


def test_a_row_the_csv_reader_rejects_names_its_line(tmp_path):
    train = _rte(tmp_path) / "train.tsv"
    huge = b"x" * 200_000  # over csv.field_size_limit(): e.g. a file that is not TSV at all
    line = _append(train, b"99\t" + huge + b"\tA drink.\tentailment\n")
    with pytest.raises(UserError, match=rf"train\.tsv, line {line}: field larger than field limit"):
        _preflight(tmp_path)


def test_a_bad_label_on_the_last_line_is_found_before_loading(tmp_path):
    train = _rte(tmp_path) / "train.tsv"
    line = _append(train, b"99\tA sentence.\tAnother.\tmaybe\n")
    with pytest.raises(UserError, match=rf"train\.tsv, line {line}: label 'maybe' is not in"):
        _preflight(tmp_path)


def test_mrpc_byte_order_mark_and_crlf_still_read(tmp_path):
    dev = _rte(tmp_path) / "dev.tsv"
    text = dev.read_text()
    dev.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    _preflight(tmp_path)  # no error: the hub's builder reads these too


@pytest.mark.parametrize(
    "damage",
    ["latin1", "utf16", "label"],
)
def test_cli_data_error_exits_2_in_under_five_seconds(tmp_path, damage):
    rte = _rte(tmp_path / "data")
    if damage == "latin1":
        _append(rte / "train.tsv", "99\tna\u00efve\tA.\tentailment\n".encode("latin-1"))
    elif damage == "utf16":
        (rte / "dev.tsv").write_bytes((rte / "dev.tsv").read_text().encode("utf-16"))
    else:
        _append(rte / "dev.tsv", b"99\tA.\tB.\tyes\n")
    run_dir = tmp_path / "run"
    start = time.time()
    result = run_cli(
        [
            "task=rte",
            "model=tiny-roberta",
            f"task.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={run_dir}",
            f"records_root={tmp_path}",
        ]
    )
    elapsed = time.time() - start
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {rte}/"), result.stderr[-2000:]
    assert ", line " in lines[0]
    assert elapsed < 5.0, elapsed
    record = run_dir / "record.json"
    assert not record.exists() or json.loads(record.read_text())["status"] == "failed"


def test_data_loading_turns_datasets_progress_bars_off():
    import datasets

    from lora_exp.tasks import load_splits

    datasets.enable_progress_bars()
    try:
        splits = load_splits(compose(["task=rte", f"task.data_dir={GLUE}"]).task)
        assert datasets.are_progress_bars_disabled()  # no bar per tokenising map in run.log
        assert set(splits) == {"train", "validation", "test"}
    finally:
        datasets.disable_progress_bars()
