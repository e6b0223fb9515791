"""``scripts/check_function_length.py`` (run by ``make lint``): a function over 80 lines needs a comment on or
just above its ``def`` saying why; everything else passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.check_function_length import long_functions, main


def _function(lines: int, header: str = "def f() -> None:", above: str = "", indent: str = "") -> str:
    """A function of exactly ``lines`` lines (its def included), with ``above`` written just before it."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
    return f"{above}{indent}{header}\n{body}"


def _long(tmp_path: Path, source: str) -> list[tuple[str, int]]:
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    return [(f.name, f.lines) for f in long_functions(path)]


def test_eighty_lines_pass_and_eighty_one_without_a_reason_fail(tmp_path: Path) -> None:
    assert _long(tmp_path, _function(80)) == []
    assert _long(tmp_path, _function(81)) == [("f", 81)]


@pytest.mark.parametrize(
    "above",
    [
        "# Long on purpose: one table of every flag, read top to bottom.\n",
        "# Why long: the steps share twelve locals;\n# splitting them means a record type per step.\n",
        "# Long: see below.\n@staticmethod\n",
        "@staticmethod  # long: every branch is one HTTP status\n",
    ],
    ids=["comment-above", "comment-block-above", "above-decorators", "on-a-decorator"],
)
def test_a_comment_on_or_just_above_the_def_explains_a_long_function(tmp_path: Path, above: str) -> None:
    assert _long(tmp_path, _function(120, above=above)) == []


def test_a_comment_on_a_wrapped_signature_counts(tmp_path: Path) -> None:
    header = "def f(\n    a: int,  # long: one branch per task type\n) -> None:"
    assert _long(tmp_path, _function(120, header=header)) == []


@pytest.mark.parametrize(
    "above",
    [
        "# noqa: C901\n",
        "# type: ignore\n",
        "# pragma: no cover\n",
        "# fmt: skip\n",
        "# A comment about something else.\n\n",  # a blank line: it belongs to the code above
        "x = 1  # an end-of-line comment on the statement above\n",
    ],
    ids=["noqa", "type", "pragma", "fmt", "blank-line-between", "trailing-comment-of-the-line-above"],
)
def test_tool_directives_and_detached_comments_do_not_explain(tmp_path: Path, above: str) -> None:
    assert _long(tmp_path, _function(81, above=above)) == [("f", 81)]


def test_methods_nested_and_async_functions_are_measured(tmp_path: Path) -> None:
    source = "class C:\n" + _function(90, header="async def method(self) -> None:", indent="    ")
    # outer: 4 lines of its own and the 85 of inner, which it holds
    source += _function(5, header="def outer() -> None:") + _function(
        85, header="def inner() -> None:", indent="    "
    )
    assert sorted(_long(tmp_path, source)) == [("inner", 85), ("method", 90), ("outer", 90)]


def test_main_lists_each_function_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(_function(81), encoding="utf-8")
    (tmp_path / "pkg" / "b.py").write_text(_function(10), encoding="utf-8")
    assert main([str(tmp_path / "pkg")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{tmp_path / 'pkg' / 'a.py'}:1: f is 81 lines")
    assert main([str(tmp_path / "pkg" / "b.py")]) == 0
    assert main([str(tmp_path / "pkg"), "--max-lines", "100"]) == 0
