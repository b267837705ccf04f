"""Methods on the command line, as a user types them: the acceptance dry run and bad input.

Bad input: one message, exit 2, no traceback, no success record, for a method that cannot apply
to the family (checked before the model is built) and a rank the matrices cannot hold (checked
when the method is applied, where adapter_d's drop_layers is checked too). Settings checked when
the method is built (prefix lengths <= 0, ...) fail earlier still; test_methods.py covers every
message in-process. The commands run as concurrent subprocesses: each spends seconds importing
torch.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import run_cli

CASES = {
    "rank above the matrix": (
        ["model=tiny-bert", "rank=64"],
        "rank=64 is larger than the adapted matrix allows: "
        "bert.encoder.layer.0.attention.self.query is 32 x 32, so rank must be <= 32",
    ),
    "prefix on an encoder": (
        ["model=tiny-roberta", "method=prefix_layer"],
        "method prefix_layer applies to the GPT-2 family only",
    ),
}


ACCEPTANCE = ["model=roberta-base", "method=lora", "rank=8"]  # issue 3's "done when" command


def test_dry_run_and_bad_input_on_the_command_line(tmp_path):
    def run(key, args):
        run_dir = tmp_path / key.replace(" ", "_")
        extra = ["dry_run=true", f"hydra.run.dir={run_dir}", f"records_root={tmp_path}"]
        return key, run_dir, run_cli([*args, *extra])

    jobs = {"acceptance": ACCEPTANCE} | {key: args for key, (args, _) in CASES.items()}
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, jobs, jobs.values()))

    _, run_dir, accepted = results[0]
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert re.search(r"params/trainable\s+294,912", accepted.stdout)
    assert "paper (Table 2): 0.3M, consistent with the exact count 294,912" in accepted.stdout
    assert re.search(r"params/percent_of_base\s+0.2377%", accepted.stdout)
    assert json.loads((run_dir / "record.json").read_text())["status"] == "dry_run"

    for key, run_dir, result in results[1:]:
        message = CASES[key][1]
        assert result.returncode == 2, (key, result.stderr[-2000:])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (key, lines)
        assert message in lines[0], (key, lines)
        assert "Traceback" not in result.stdout + result.stderr
        record = run_dir / "record.json"
        assert not record.exists() or json.loads(record.read_text())["status"] != "success"
