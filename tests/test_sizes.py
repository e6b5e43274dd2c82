"""Units small enough to read at a glance: no source file over 600 lines and no function
over 80 lines (a Python function's docstring not counted), unless a reason is written
here next to its name."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "nsbind"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80

#: "path:function" -> why it is longer
EXCEPTIONS: dict[str, str] = {}


def _sources() -> list[pathlib.Path]:
    return sorted(p for p in SRC.rglob("*") if p.suffix in (".py", ".c", ".h"))


def _python_functions(path: pathlib.Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str) and len(body) > 1):
                body = body[1:]  # the docstring
            assert node.end_lineno is not None and body[-1].end_lineno is not None
            found.append((node.name, body[-1].end_lineno - body[0].lineno + 1))
    return found


_C_FUNCTION = re.compile(r"^[A-Za-z_][\w \*]*\b(\w+)\([^;]*\)\s*\{?\s*$")


def _c_functions(path: pathlib.Path) -> list[tuple[str, int]]:
    """Top-level C function bodies: from the line opening the body at column 0 (or the
    signature line ending in '{') to the closing '}' at column 0."""
    found = []
    name, start, opened = None, 0, False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = _C_FUNCTION.match(line)
        if name is None and match and not line.startswith(("static const", "struct ")):
            name, start, opened = match.group(1), number, line.rstrip().endswith("{")
        elif name is not None and line.startswith("{"):
            opened = True
        elif name is not None and opened and line.startswith("}"):
            found.append((name, number - start + 1))
            name = None
        elif name is not None and not opened and line.rstrip().endswith(";"):
            name = None  # a declaration over several lines, not a definition
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_source_files_and_functions_are_small(path: pathlib.Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= MAX_FILE_LINES or f"{path.name}:" in EXCEPTIONS, \
        f"{path.name} has {lines} lines"
    functions = _python_functions(path) if path.suffix == ".py" else _c_functions(path)
    long = [f"{name} ({n} lines)" for name, n in functions
            if n > MAX_FUNCTION_LINES and f"{path.name}:{name}" not in EXCEPTIONS]
    assert long == []


def test_the_c_scanner_finds_functions(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "x.c"
    source.write_text("static int small(int a)\n{\n    return a;\n}\n\n"
                      "int big(void) {\n" + "    x();\n" * 90 + "}\n")
    assert _c_functions(source) == [("small", 4), ("big", 92)]
