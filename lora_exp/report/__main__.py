"""`python -m lora_exp.report`: every table and figure of an artifact from its run records.

    python -m lora_exp.report embedded_rank                      # results/embedded_rank/runs -> .
    python -m lora_exp.report table2_roberta_base --runs DIR --out DIR
    python -m lora_exp.report table6_rank --wandb ENTITY/PROJECT  # fill missing records from wandb
    python -m lora_exp.report section7                           # Sec. 7 of embedded_rank
    python -m lora_exp.report section7 --runs RUN_R8 RUN_R64      # Sec. 7 of two runs
    python -m lora_exp.report efficiency                          # issue 5: table + targets
    python -m lora_exp.report claims                              # results/claims.md (verdicts)
    python -m lora_exp.report collapse                            # results/collapse.md
    python -m lora_exp.report readme                              # claims + collapse, then the
                                                                  # README block from table.md files
    python -m lora_exp.report all                                 # every results/<artifact>/runs,
                                                                  # then claims, collapse, README

Writes `table.md`, `table.csv`, `table.tex` and the artifact's figures (PNG and PDF) into
`results/<artifact>/` (or --out); Table 1 (table1_latency) is the exception: its `table.*` belong
to the benchmark (`python -m lora_exp.measure.latency`, with p10/p90, |Θ| and the paper's figures),
so the report writes its layout (Δ to the paper) as `report.md`, `report.csv`, `report.tex`
beside them, with Figure 5 (`latency_overhead`). The same records give byte-identical files.
Bad input (no records, only stale task versions, a run without LoRA weights) ends with one
message, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_exp.errors import UserError

ARTIFACTS = {
    "table1_latency": "latency",
    "table2_roberta_base": "glue",
    "table2_roberta_large": "glue",
    "table2_deberta": "glue",
    "table3_gpt2_e2e": "e2e",
    "table5_weight_types": "weight_types",
    "table6_rank": "rank",
    "embedded_methods": "methods",
    "embedded_rank": "rank",
    "embedded_weight_types": "weight_types",
}
SCORES = {
    "test": "score: the test split at the best validation epoch (GLUE: the dev set, as the paper)",
    "val": "score: the validation split at the best epoch (the paper's statistic)",
}
PREFIXES = {"table1": "latency", "table2": "glue", "table3": "e2e"}
PREFIXES |= {"table5": "weight_types", "table6": "rank"}


def project_root() -> Path:
    """The checkout holding conf/ and experiments/: the working directory if it has conf/task."""
    cwd = Path.cwd()
    if (cwd / "conf" / "task").is_dir():
        return cwd
    return Path(__file__).resolve().parents[2]


def has_layout(artifact: str) -> bool:
    """Whether an artifact is a table (the registry or a `tableN` prefix); the other results
    folders (section7, efficiency, the LR searches, training_path) have their own commands."""
    return artifact in ARTIFACTS or any(artifact.startswith(p) for p in PREFIXES)


def layout_name(artifact: str, override: str | None) -> str:
    """The layout of an artifact: --layout, the registry, or the `tableN` prefix of its name."""
    if override:
        return override
    if artifact in ARTIFACTS:
        return ARTIFACTS[artifact]
    for prefix, name in PREFIXES.items():
        if artifact.startswith(prefix):
            return name
    known = ", ".join(sorted(ARTIFACTS))
    raise UserError(
        f"unknown artifact '{artifact}': known artifacts are {known}; for another name pass "
        "--layout glue|e2e|weight_types|rank|methods|latency"
    )


def report_artifact(
    artifact: str,
    runs: list[Path],
    out: Path,
    layout: str | None = None,
    root: Path | None = None,
    versions: dict | None = None,
    wandb_path: str | None = None,
    score: str = "test",
) -> list[Path]:
    """Tables and figures of one artifact; returns the files written (sorted)."""
    from lora_exp.report import paper, plots, render, tables
    from lora_exp.report.load import load_cells, read_records

    root = root or project_root()
    name = layout_name(artifact, layout)
    paper_csv = root / "experiments" / artifact / "paper.csv"
    extra = []
    if wandb_path:
        from lora_exp.report.wandb_source import missing_from_wandb

        extra = missing_from_wandb(wandb_path, artifact, read_records(runs))
    if name == "latency":
        from lora_exp.report import latency

        table, frame = latency.build(artifact, runs, paper.paper_table("latency", paper_csv))
        written = render.write_table(table, out, frame, stem=latency.REPORT_STEM)
        written += latency.plot_overhead(frame, out)
        return sorted(written)
    if name not in tables.LAYOUTS:
        raise UserError(f"unknown layout '{name}'; known: {', '.join(sorted(tables.LAYOUTS))}")
    spec = tables.LAYOUTS[name]
    cells, kept, notes = load_cells(runs, versions, root / "conf", extra, score)
    seeds = ",".join(str(s) for s in sorted(kept["seed"].dropna().unique()))
    devices = "; ".join(sorted(kept["device"].dropna().unique()))
    notes = [
        *notes,
        SCORES[score],
        f"runs: {len(kept)} successful records, seeds {seeds}; device: {devices}",
    ]
    table = tables.build_table(artifact, cells, spec, paper.paper_table(name, paper_csv), notes)
    written = render.write_table(table, out)
    for plot in spec.plots:
        written += plots.PLOTS[plot](cells, kept, out, artifact)
    return sorted(written)


def report_all(root: Path) -> tuple[list[Path], list[str], list[str]]:
    """Every `results/<artifact>/runs` with a table layout, then the summaries (claims, collapse,
    README) where their sources exist. Returns the files written, the artifacts that failed (not
    fatal to the rest) and the results folders skipped as not tables."""
    written, failed, skipped = [], [], []
    for runs in sorted((root / "results").glob("*/runs")):
        artifact = runs.parent.name
        if not has_layout(artifact):
            skipped.append(artifact)
            continue
        try:
            written += report_artifact(artifact, [runs], runs.parent, None, root)
            if (runs.parent / "val").is_dir():  # the --score val tables, kept beside
                out = runs.parent / "val"
                written += report_artifact(artifact, [runs], out, None, root, score="val")
        except UserError as err:
            failed.append(f"{artifact}: {err}")
    try:
        written += summaries(root)
    except UserError as err:
        failed.append(f"summaries: {err}")
    return written, failed, skipped


def claims_sources(root: Path) -> bool:
    """Whether every artifact a claim names has its runs folder (a checkout with the results)."""
    from lora_exp.report.claims_spec import CLAIMS

    needed = {c.a.artifact for claim in CLAIMS for c in claim.comparisons}
    return all((root / "results" / a / "runs").is_dir() for a in needed)


def summaries(root: Path, readme: Path | None = None) -> list[Path]:
    """claims.md (when the claimed artifacts have runs), collapse.md, then the README block."""
    from lora_exp.report.claims import write_claims
    from lora_exp.report.collapse_md import write_collapse
    from lora_exp.report.readme import update_readme

    written = write_claims(root) if claims_sources(root) else []
    written += write_collapse(root / "results", sorted(ARTIFACTS))
    readme = readme or root / "README.md"
    if readme.exists():
        written.append(update_readme(readme, root / "results"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lora_exp.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "artifact",
        help="an artifact (e.g. embedded_rank), section7, efficiency, claims, collapse, readme "
        "or all",
    )
    parser.add_argument(
        "--runs", nargs="+", type=Path, metavar="DIR", help="record directories (section7: 2 runs)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="output directory (default results/<artifact>)"
    )
    parser.add_argument("--layout", help="layout for an artifact name not in the registry")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="fill missing records from wandb")
    parser.add_argument(
        "--score", choices=sorted(SCORES), default="test", help="which split's score (test)"
    )
    parser.add_argument("--layers", nargs="*", type=int, help="section7: layers to draw")
    parser.add_argument("--readme", type=Path, help="readme: the file to update (README.md)")
    args = parser.parse_args(argv)
    root = project_root()
    try:
        if args.artifact == "section7":
            from lora_exp.report.section7 import report_section7

            if not args.runs:  # the embedded study: r=8 vs r=64, two seeds, Table 7
                from lora_exp.report.section7_study import report_study

                written = report_study(
                    [
                        root / "results" / "embedded_rank" / "runs",
                        root / "results" / "embedded_methods" / "runs",
                    ],
                    args.out or root / "results" / "section7",
                    (args.layers or [None])[0],
                )
            elif len(args.runs) != 2:
                raise UserError("section7 needs two run directories: --runs RUN_A RUN_B")
            else:
                a, b = (path.resolve().name for path in args.runs)
                out = args.out or root / "results" / "section7" / f"{a}_vs_{b}"
                written = report_section7(*args.runs, out, args.layers)
        elif args.artifact == "efficiency":
            from lora_exp.report.targets import write_efficiency

            written = write_efficiency(root / "results")
        elif args.artifact == "claims":
            from lora_exp.report.claims import write_claims

            written = write_claims(root)
        elif args.artifact == "collapse":
            from lora_exp.report.collapse_md import write_collapse

            written = write_collapse(root / "results", sorted(ARTIFACTS))
        elif args.artifact == "readme":
            readme = args.readme or root / "README.md"
            if not readme.exists():
                raise UserError(f"{readme} does not exist")
            written = summaries(root, readme)
        elif args.artifact == "all":
            written, failed, skipped = report_all(root)
            if skipped:  # section7, efficiency, ...: their own commands; another name: --layout
                print(f"not tables, skipped: {', '.join(skipped)}", file=sys.stderr)
            if failed:
                for path in written:
                    print(path)
                raise UserError("; ".join(failed))
        else:
            out = args.out or root / "results" / args.artifact
            runs = args.runs or [root / "results" / args.artifact / "runs"]
            written = report_artifact(
                args.artifact, runs, out, args.layout, root, None, args.wandb, args.score
            )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
