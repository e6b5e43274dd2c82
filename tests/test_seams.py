"""The layers meet at public names only (DESIGN.md): no nsbind module imports or reaches
into another module's private (underscore) names, and the tests use the public API too.

A private name is one with a single leading underscore.  Inside one module, its own
private names are fair game; across modules they are not: a module offers what it
lists in ``__all__`` (or documents as a method of a public class).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "nsbind"
TESTS = pathlib.Path(__file__).resolve().parent

#: private attributes of the standard library and cffi that nsbind uses on purpose
STDLIB_PRIVATE = {
    "_exit": "os._exit, the way out of a forked child",
    "_data": "os.environ._data: the environment as bytes, without decoding (spawn's cache key)",
    "_forkserver": "multiprocessing.forkserver's singleton: whether the zygote runs",
    "_forkserver_pid": "multiprocessing.forkserver's singleton: whether the zygote runs",
    "_replace": "namedtuple._replace is public API despite its underscore",
    "_asdict": "namedtuple._asdict is public API despite its underscore",
    "_make": "namedtuple._make is public API despite its underscore",
    "_fields": "namedtuple._fields is public API despite its underscore",
    "_value_": "enum's documented member value attribute",
    "_missing_": "enum's documented hook",
    "_name_": "enum's documented member name attribute",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_names(tree: ast.AST) -> set[str]:
    """Every name a module defines itself: functions, classes, assigned names and
    attributes (``self._x = ...``), parameters."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
    return names


def _violations(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nsbind":
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{path.name}:{node.lineno}: imports {alias.name} from "
                                 f"{node.module}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr in own or node.attr in STDLIB_PRIVATE:
                continue
            found.append(f"{path.name}:{node.lineno}: reaches into .{node.attr}")
    return found


def _modules(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*.py") if p.name != "build.py")


@pytest.mark.parametrize("path", _modules(SRC), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_uses_another_modules_private_names(path: pathlib.Path) -> None:
    assert _violations(path) == []


@pytest.mark.parametrize("path", _modules(TESTS), ids=lambda p: p.name)
def test_tests_use_the_public_api(path: pathlib.Path) -> None:
    imports = [v for v in _violations(path) if " imports " in v]
    assert imports == []


def test_the_check_sees_a_reach_in(tmp_path: pathlib.Path) -> None:
    """The checker itself: a private import and a reach-in are found, own names are not."""
    bad = tmp_path / "bad.py"
    bad.write_text("from nsbind.namespaces import _JoinTarget\n"
                   "import nsbind\n"
                   "class Mine:\n"
                   "    def __init__(self) -> None:\n"
                   "        self._own = 1\n"
                   "    def f(self, ns: object) -> object:\n"
                   "        return (self._own, ns._join)\n")
    assert _violations(bad) == ["bad.py:1: imports _JoinTarget from nsbind.namespaces",
                                "bad.py:7: reaches into ._join"]
