"""Regenerate the README's results section from the generated `table.md` files.

The README holds a block between two marker lines; everything between them is rewritten from
`results/<artifact>/table.md` (artifacts in sorted order) and links to each artifact's PNG figures,
so the results section is never edited by hand. `results/claims.md` (the paper's claims beside our
measurements and verdicts, curated: its verdicts are judgements) comes first when it exists, and
an artifact's `targets.md` (issue 5's efficiency targets, `python -m lora_exp.report efficiency`)
follows its table:

    <!-- results:begin -->
    ... generated ...
    <!-- results:end -->

    python -m lora_exp.report readme [--readme README.md]

Rewriting is idempotent: the same tables give the same bytes, and the file is left untouched
when nothing changed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lora_exp.errors import UserError

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
EMPTY = "_No results yet: run a sweep, then `python -m lora_exp.report all`._"
CLAIMS = "claims.md"  # first, when present
EXTRA = ("targets.md",)  # after an artifact's table.md, when present


LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def rebase_links(text: str, source_dir: Path, relative_to: Path) -> str:
    """Markdown links relative to `source_dir` rewritten relative to `relative_to` (the README's
    folder), so a table that links its own figures still links them once embedded."""

    def rebase(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^([a-z]+:|/|#)", target) or not (source_dir / target).exists():
            return match.group(0)  # absolute, a URL, an anchor, or not a file next to the table
        link = Path(os.path.relpath((source_dir / target).resolve(), relative_to)).as_posix()
        return f"{match.group(1)}{link}{match.group(3)}"

    return LINK.sub(rebase, text)


def results_block(results_dir: Path, relative_to: Path) -> str:
    """The generated section: every artifact's table.md, then links to its figures."""
    results_dir = Path(results_dir)
    parts = []
    if (results_dir / CLAIMS).exists():
        parts.append((results_dir / CLAIMS).read_text().rstrip("\n"))
    for table in sorted(results_dir.glob("*/table.md")):
        text = rebase_links(table.read_text().rstrip("\n"), table.parent, relative_to)
        for name in EXTRA:
            if (table.parent / name).exists():
                text += "\n\n" + (table.parent / name).read_text().rstrip("\n")
        figures = sorted(table.parent.glob("*.png"))
        links = []
        for png in figures:
            link = Path(os.path.relpath(png.resolve(), relative_to)).as_posix()
            links.append(f"![{png.stem.replace('_', ' ')}]({link})")
        parts.append("\n\n".join([text, *([" ".join(links)] if links else [])]))
    return "\n\n".join(parts) if parts else EMPTY


def replace_block(text: str, block: str) -> str:
    """`text` with the lines between BEGIN and END replaced by `block`.

    Raises:
        UserError: if the markers are missing, repeated or out of order.
    """
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise UserError(
            f"the README needs exactly one '{BEGIN}' line and one '{END}' line around its "
            "results section"
        )
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    if end < start:
        raise UserError(f"'{END}' comes before '{BEGIN}' in the README")
    return text[:start] + "\n" + block.rstrip("\n") + "\n" + text[end:]


def update_readme(readme: Path, results_dir: Path) -> Path:
    """Rewrite the results block of `readme` from `results_dir`; returns the README's path."""
    readme = Path(readme)
    if not readme.exists():
        raise UserError(f"{readme} does not exist")
    text = readme.read_text()
    new = replace_block(text, results_block(results_dir, readme.resolve().parent))
    if new != text:
        readme.write_text(new)
    return readme
