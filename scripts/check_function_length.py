"""Fail when a source function is longer than the limit and no comment says why.

``python scripts/check_function_length.py [PATH ...]`` (``make lint`` runs it on services/*/src and
trainer/src): every function or method longer than ``--max-lines`` (80) lines, from its ``def`` to its last
line, needs a comment on its ``def`` line(s) or directly above it (above its decorators) saying why it is
long. A ``noqa``, ``type:``, ``pragma`` or ``fmt:`` comment does not count. Exit status 1 lists each one as
``path:line: name is N lines``.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 80
DEFAULT_ROOTS = ("services/*/src", "trainer/src")
TOOL_COMMENTS = ("noqa", "type:", "pragma", "fmt:", "pylint:", "ruff:")


@dataclass(frozen=True)
class LongFunction:
    path: Path
    line: int
    name: str
    lines: int

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: {self.name} is {self.lines} lines; split it, or say why it is long "
            "in a comment on or just above its def"
        )


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line (tool directives left out)."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if text and not text.lower().startswith(TOOL_COMMENTS):
                found[token.start[0]] = text
    return found


def _explained(
    node: ast.FunctionDef | ast.AsyncFunctionDef, comments: dict[int, str], lines: list[str]
) -> bool:
    top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    header = range(top, node.body[0].lineno)  # decorators and the (possibly wrapped) signature
    if any(line in comments for line in header):
        return True
    above = top - 1  # the comment block directly above, without a blank line between
    return above >= 1 and above in comments and lines[above - 1].lstrip().startswith("#")


def long_functions(path: Path, max_lines: int = MAX_LINES) -> Iterator[LongFunction]:
    """The functions of one file over ``max_lines`` without a comment saying why."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    comments, lines = _comments(source), source.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > max_lines and not _explained(node, comments, lines):
                yield LongFunction(path, node.lineno, node.name, length)


def _files(roots: Sequence[str]) -> list[Path]:
    files: set[Path] = set()
    for root in roots:
        for directory in sorted(Path().glob(root)) if any(c in root for c in "*?[") else [Path(root)]:
            files.update(directory.rglob("*.py") if directory.is_dir() else [directory])
    return sorted(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_ROOTS), help="files, folders or globs")
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    found = [f for path in _files(args.paths) for f in long_functions(path, args.max_lines)]
    for item in found:
        print(item, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
