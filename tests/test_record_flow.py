"""The run record is written in one place: `run_cell.py` turns the results of the layers below
into it.

Issue 18: "no record mutation across layers". Building, fitting and testing return result objects
(`fit_result.py`, `built_run.py`, `dry_run.DryRun`); a function below `run_cell.py` that received
the record to fill in would bring back the reach-up this replaced. The check reads the source with
`ast`: outside `run_cell.py`, no function of `lora_exp` takes a parameter named `record` and assigns
into it, deletes from it or calls one of its mutating methods (reading a record, as the reports
and `fit_summary.print_summary` do, is fine).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWNER = ROOT / "lora_exp" / "run_cell.py"
MUTATING = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_record(node: ast.AST, name: str) -> bool:
    """`record`, or something inside it (`record["task"]`, `record.get("timing")`)."""
    while isinstance(node, ast.Subscript | ast.Attribute | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id == name


def mutations(function: ast.FunctionDef, name: str = "record") -> list[int]:
    """Line numbers where `function` changes its parameter `name` (or what it holds)."""
    lines = []
    for node in ast.walk(function):
        if isinstance(node, ast.Assign | ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATING and _is_record(node.func.value, name):
                lines.append(node.lineno)
            continue
        else:
            continue
        # `record = ...` rebinds a name; `record[...] = ...` changes the caller's record.
        lines += [
            node.lineno for t in targets if not isinstance(t, ast.Name) and _is_record(t, name)
        ]
    return lines


def record_mutations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted((root / "lora_exp").rglob("*.py")):
        if path == OWNER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                params = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if "record" in params:
                    found += [
                        f"{path.relative_to(root)}:{n} ({node.name})" for n in mutations(node)
                    ]
    return found


def test_only_train_py_writes_into_the_run_record():
    found = record_mutations()
    assert not found, "the run record is changed below run_cell.py:\n" + "\n".join(found)


def test_the_check_sees_assignments_updates_and_nested_writes():
    source = (
        "def a(record):\n    record['x'] = 1\n"
        "def b(record):\n    record['task'].update({})\n"
        "def c(record):\n    record.setdefault('t', {})['k'] = 2\n"
        "def d(record):\n    return record['best'] or {}\n"
    )
    functions = {f.name: f for f in ast.parse(source).body}
    assert mutations(functions["a"]) == [2]
    assert mutations(functions["b"]) == [4]
    assert mutations(functions["c"]) == [6, 6]
    assert mutations(functions["d"]) == []
