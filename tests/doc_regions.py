"""The docs' Python is tested code: each block of 4+ lines is a marked region of an example DAG or a test.

In the spirit of Airflow's own ``exampleinclude``: a block in ``README.md`` or ``docs/*.md`` is preceded by
``<!-- code: <path>#<region> -->``, and ``<path>`` holds the region between ``# [START <region>]`` and
``# [END <region>]``. The block is the region, dedented. ``tests/test_docs.py`` checks they are the same;
``python tests/doc_regions.py --write`` copies every region into its block after the code changed.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
# A block this long is code a reader copies; a shorter one is a fragment of a sentence.
MIN_LINES = 4
MARKER = re.compile(r"<!-- code: (?P<path>[^#\s]+)#(?P<region>[\w-]+) -->")
BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)


@dataclass(frozen=True)
class DocBlock:
    doc: Path
    line: int
    indent: str
    start: int  # offsets of the block's body in the doc's text
    end: int
    text: str  # dedented
    source: str | None  # "<path>#<region>" from the marker just above, if any

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(doc: Path) -> list[DocBlock]:
    """Every Python block of ``MIN_LINES`` lines or more, with the marker on the line before it."""
    text = doc.read_text()
    found = []
    for match in BLOCK.finditer(text):
        body = match.group("body")
        if body.count("\n") < MIN_LINES:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        found.append(
            DocBlock(
                doc=doc,
                line=text.count("\n", 0, match.start()) + 1,
                indent=match.group("indent"),
                start=match.start("body"),
                end=match.end("body"),
                text=textwrap.dedent(body),
                source=f"{marker['path']}#{marker['region']}" if marker else None,
            )
        )
    return found


def region(source: str) -> str:
    """The dedented lines between ``# [START name]`` and ``# [END name]`` of ``path#name``."""
    path, name = source.split("#")
    lines = (ROOT / path).read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == f"# [START {name}]"]
    ends = [i for i, line in enumerate(lines) if line.strip() == f"# [END {name}]"]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise LookupError(f"{path} needs exactly one '# [START {name}]' ... '# [END {name}]' pair")
    # Blank lines around the region (ruff wants one after a nested def) are not part of it.
    return textwrap.dedent("".join(lines[starts[0] + 1 : ends[0]])).strip("\n") + "\n"


def write() -> list[str]:
    """Copy every marked region into its block; returns the blocks that changed."""
    changed = []
    for doc in doc_files():
        text = doc.read_text()
        # From the end, so earlier offsets stay right.
        for block in reversed(blocks(doc)):
            if block.source is None or block.text == region(block.source):
                continue
            body = textwrap.indent(region(block.source), block.indent, lambda line: bool(line.strip()))
            text = text[: block.start] + body + text[block.end :]
            changed.append(str(block))
        doc.write_text(text)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/doc_regions.py --write")
    print("\n".join(write()) or "every block is its region already")
