"""What keeps a command's start and end cheap, checked against what it stands in for:
``nsbind.jsonlite`` (json), ``nsbind.namedtuples`` (typing.NamedTuple), ``nsbind.lazyre``
(re.compile), ``nsbind.lazyimport.import_module`` (importlib's), and
``nsbind.fastexit.exit_now`` (sys.exit, without the interpreter's shutdown when nothing
waits for it), and ``nsbind.gcpause`` (the garbage collector paused by the launchers
until the command waits, or at once off the start path)."""

from __future__ import annotations

import copy
import importlib
import json
import math
import os
import pathlib
import pickle
import re
import subprocess
import sys
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsbind import jsonlite, lazyre
from nsbind.lazyimport import import_module
from nsbind.lazyre import LazyPattern
from nsbind.namedtuples import NamedTuple

pytestmark = pytest.mark.unprivileged

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.tuples(inner, inner)
    | st.dictionaries(st.text(), inner), max_leaves=25)
#: keys json converts: one type a dict, so that sort_keys can compare them
KEYS = st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans())
LAYOUTS = st.fixed_dictionaries({}, optional={
    "indent": st.none() | st.integers(0, 4) | st.sampled_from(["\t", "  ", ""]),
    "separators": st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]),
    "sort_keys": st.booleans()})


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_jsonlite_writes_what_json_writes_and_reads_it_back(value: object) -> None:
    assert jsonlite.dumps(value) == json.dumps(value)
    assert jsonlite.dumps(value, indent=2) == json.dumps(value, indent=2)
    text = json.dumps(value)
    assert json.dumps(jsonlite.loads(f" \n{text}\t ")) == text  # NaN != NaN: compare text


@settings(max_examples=400, deadline=None)
@given(st.recursive(KEYS.flatmap(lambda k: st.dictionaries(st.just(k) | KEYS.filter(
    lambda other: type(other) is type(k)), JSON, max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10), LAYOUTS)
def test_jsonlite_writes_every_layout_json_writes(value: object, layout: dict[str, Any]
                                                  ) -> None:
    """indent (a number or a string), separators and sort_keys, and keys json converts
    (numbers, booleans), as json.dumps writes them."""
    assert jsonlite.dumps(value, **layout) == json.dumps(value, **layout)


def _pairs(pairs: list[tuple[str, object]]) -> list[object]:
    return ["pairs", *pairs]


def _constant(name: str) -> str:
    return f"constant {name}"


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_jsonlite_reads_with_json_hooks(value: object) -> None:
    """object_pairs_hook and parse_constant reach the scanner as json.loads's do."""
    text = json.dumps(value)
    hooks: dict[str, Any] = {"object_pairs_hook": _pairs, "parse_constant": _constant}
    assert jsonlite.loads(text, **hooks) == json.loads(text, **hooks)
    assert json.dumps(jsonlite.loads(text)) == text  # the default scanner is untouched


@settings(max_examples=400, deadline=None)
@given(st.text() | st.sampled_from(["", " ", "{", "[1,]", '{"a":1} x', "nan", "NaN", "01",
                                    '"\\ud800"', "1e400", '{"a":1,"a":2}', "\x00",
                                    "\ufeff{}"]))
def test_jsonlite_reads_any_text_as_json_does(text: str) -> None:
    try:
        want = json.loads(text)
    except json.JSONDecodeError as exc:
        with pytest.raises(json.JSONDecodeError) as got:
            jsonlite.loads(text)
        assert (got.value.msg, got.value.pos) == (exc.msg, exc.pos)
        return
    got_value = jsonlite.loads(text)
    assert json.dumps(got_value) == json.dumps(want)
    if isinstance(want, float) and math.isnan(want):
        assert math.isnan(got_value)


#: malformed documents, each refused by a different check of json's scanner
MALFORMED = ["{not json", "[1,", '{"a" 1}', "[1 2]", '"\\x"', '{"a": 1,}', "tru", '"\x01"',
             "[", "{", '{"a":', "-", "1.", "[1]]", "\ufeff[]"]


def test_jsonlite_refuses_malformed_json_as_json_does_without_json_imported() -> None:
    """json's scanner names most errors with json.decoder's exception, which it finds in
    sys.modules only: in a process that has not imported json, the message and
    position are still json's."""
    program = ("import sys\nfrom nsbind import jsonlite\nassert 'json' not in sys.modules\n"
               f"for text in {MALFORMED!r}:\n"
               "    try:\n        jsonlite.loads(text)\n"
               "    except ValueError as exc:\n"
               "        print(type(exc).__name__, exc.msg, exc.pos)\n")
    proc = _run_program(program)
    assert proc.returncode == 0, proc.stderr
    want = []
    for text in MALFORMED:
        with pytest.raises(json.JSONDecodeError) as exc:
            json.loads(text)
        want.append(f"JSONDecodeError {exc.value.msg} {exc.value.pos}")
    assert proc.stdout.decode().splitlines() == want


def test_jsonlite_refuses_what_json_has_no_form_for() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonlite.dumps({"a": {1, 2}})
    layouts: list[dict[str, Any]] = [{}, {"indent": 1}]
    for layout in layouts:
        with pytest.raises(TypeError, match="keys must be str"):
            jsonlite.dumps({(1,): "a"}, **layout)
        with pytest.raises(TypeError, match="keys must be str"):
            json.dumps({(1,): "a"}, **layout)
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        jsonlite.dumps(loop)


class Point(NamedTuple):
    """A point."""

    x: int
    y: int = 0

    def norm(self) -> int:
        return abs(self.x) + abs(self.y)


class TypingPoint(typing.NamedTuple):
    """A point."""

    x: int
    y: int = 0

    def norm(self) -> int:
        return abs(self.x) + abs(self.y)


def test_namedtuples_make_the_class_typing_makes() -> None:
    for cls in (Point, TypingPoint):
        p = cls(3, -4)
        assert isinstance(p, tuple) and tuple(p) == (3, -4) and p.norm() == 7
        assert cls._fields == ("x", "y") and cls._field_defaults == {"y": 0}
        assert cls(1) == (1, 0) and p._replace(y=1) == (3, 1) and p._asdict() == {"x": 3, "y": -4}
        assert cls.__doc__ == "A point." and cls.__module__ == __name__
        assert list(cls.__annotations__) == ["x", "y"]
        assert hash(p) == hash((3, -4)) and repr(p) == f"{cls.__name__}(x=3, y=-4)"
        assert pickle.loads(pickle.dumps(p)) == p and type(pickle.loads(pickle.dumps(p))) is cls
    assert Point.__name__ == "Point"


def _class_facts(cls: Any) -> dict[str, Any]:
    """What a named tuple class is, beyond its name: its attributes' docs, names and
    types, and what its methods do, for comparing two makers'."""
    p = cls(3, -4)
    attrs = {name: (type(v).__name__, getattr(v, "__doc__", None),
                    getattr(getattr(v, "__func__", v), "__qualname__", None))
             for name, v in vars(cls).items() if name not in ("__module__", "__annotations__")}
    errors = []
    for call in (lambda: cls(), lambda: cls(1, 2, 3), lambda: cls._make([1]),
                 lambda: p._replace(z=1), lambda: cls(1, x=2), lambda: setattr(p, "x", 1)):
        try:
            call()
        except Exception as e:  # the error itself is compared
            errors.append((type(e).__name__, str(e)))
    return {"attrs": attrs, "errors": errors, "mro": [c.__name__ for c in cls.__mro__],
            "new_defaults": cls.__new__.__defaults__, "repr": repr(p),
            "make": cls._make(iter([5, 6])), "replace": p._replace(x=0),
            "asdict": p._asdict(), "newargs": p.__getnewargs__(), "copy": copy.deepcopy(p),
            "slots": "__dict__" in dir(p),
            "match": cls.__match_args__, "index": (p[0], p[-1], p[:1])}


def test_namedtuples_make_what_collections_namedtuple_makes() -> None:
    import collections

    for fields, defaults in (([], ()), (["x"], ()), (["x", "y"], ()), (["x", "y"], (0,)),
                             (["x", "y"], (1, 2))):
        theirs = collections.namedtuple("T", fields, defaults=defaults,  # type: ignore[misc]
                                        module=__name__)
        annotations = {name: "int" for name in fields}
        body = {"__module__": __name__, "__qualname__": "T", "__annotations__": annotations,
                **dict(zip(fields[len(fields) - len(defaults):], defaults, strict=True))}
        meta: Any = type(NamedTuple)
        ours = meta("T", (NamedTuple,), body)  # what a class statement calls
        if len(fields) < 2:
            assert ours._fields == theirs._fields and ours.__doc__ == theirs.__doc__
            continue
        assert _class_facts(ours) == _class_facts(theirs)


def test_namedtuples_refuse_what_typing_refuses() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        class Bad(NamedTuple):
            a: int = 1
            b: int  # type: ignore[misc]
    with pytest.raises(AttributeError, match="_replace"):
        class Bad2(NamedTuple):
            a: int

            def _replace(self) -> None: ...  # type: ignore[misc]


def test_a_lazy_pattern_compiles_on_first_use_and_matches_as_re() -> None:
    assert lazyre.IGNORECASE == re.IGNORECASE  # the stand-in for re's flag
    pattern = LazyPattern(r"([a-z]+)-(\d+)", lazyre.IGNORECASE)
    assert pattern._compiled is None  # what laziness means
    compiled = pattern.compiled()
    assert compiled is pattern.compiled() and compiled.flags & re.IGNORECASE
    real = re.compile(r"([a-z]+)-(\d+)", re.IGNORECASE)
    for text in ("abc-12", "ABC-12x", "x", "", "a-1 b-2"):
        for method in ("fullmatch", "match"):
            got, want = getattr(pattern, method)(text), getattr(real, method)(text)
            assert (got and got.groups()) == (want and want.groups())
        assert pattern.sub("#", text) == real.sub("#", text)


@pytest.mark.parametrize(("name", "package"), [
    ("nsbind.oci.state", None), (".oci", "nsbind"), ("..errors", "nsbind.oci"),
    (".", "nsbind.oci"), ("..", "nsbind.oci"), ("json.decoder", None)])
def test_import_module_finds_what_importlib_finds(name: str, package: str | None) -> None:
    assert import_module(name, package) is importlib.import_module(name, package)


@pytest.mark.parametrize(("name", "package", "error"), [
    (".oci", None, TypeError), ("...x", "nsbind", ImportError),
    ("nsbind.no_such_module", None, ImportError)])
def test_import_module_refuses_what_importlib_refuses(name: str, package: str | None,
                                                       error: type[Exception]) -> None:
    with pytest.raises(error):
        importlib.import_module(name, package)
    with pytest.raises(error):
        import_module(name, package)


def _exit_now_program(body: str) -> str:
    """A program that runs ``body``, then ends with exit_now(3); an object it holds says
    on stderr when the interpreter's finalization reaches it."""
    return ("import os, sys\n"
            "from nsbind.fastexit import exit_now\n"
            "class Witness:\n"
            "    def __del__(self):\n"
            "        os.write(2, b'finalized\\n')\n"
            "witness = Witness()\n"
            f"{body}\n"
            "exit_now(3)\n")


def _run_program(source: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-S", "-c", source], capture_output=True,
                          timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_exit_now_skips_the_shutdown_and_keeps_the_output() -> None:
    proc = _run_program(_exit_now_program("sys.stdout.write('x' * 1_000_000)\n"
                                          "sys.stderr.write('last words')"))
    assert proc.returncode == 3
    assert proc.stdout == b"x" * 1_000_000 and proc.stderr == b"last words"  # no witness


@pytest.mark.parametrize("body", [
    # a non-daemon thread: the interpreter joins it, its file is written
    "import threading, time\n"
    "def late():\n"
    "    time.sleep(0.2)\n"
    "    open(sys.argv[1], 'w').write('done')\n"
    "threading.Thread(target=late).start()",
    # an atexit callback: it runs
    "import atexit\n"
    "atexit.register(lambda: open(sys.argv[1], 'w').write('done'))",
], ids=["thread", "atexit"])
def test_exit_now_shuts_down_when_something_waits(body: str, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "marker"
    source = _exit_now_program(body)
    proc = subprocess.run([sys.executable, "-S", "-c", source, str(marker)],
                          capture_output=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 3
    assert marker.read_text() == "done"
    assert b"finalized" in proc.stderr  # the normal shutdown ran


def test_exit_now_on_a_closed_pipe_exits_as_python_does() -> None:
    """stdout's reader is gone: the flush fails, and the interpreter's own shutdown
    reports it and exits with status 120, as it does without exit_now."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    results = []
    for ending in ("exit_now(3)", "sys.exit(3)"):
        source = _exit_now_program("sys.stdout.write('x' * 100)").replace("exit_now(3)",
                                                                          ending)
        read, write = os.pipe()
        os.close(read)
        try:
            proc = subprocess.run([sys.executable, "-S", "-c", source], stdout=write,
                                  stderr=subprocess.PIPE, timeout=60, check=False, env=env)
        finally:
            os.close(write)
        results.append((proc.returncode, b"BrokenPipeError" in proc.stderr))
    assert results == [(120, True), (120, True)]


def _collector_after(body: str) -> str:
    """What gc.isenabled() says after ``body`` ran with the collector paused, as the
    launchers pause it."""
    proc = _run_program("import gc, sys\ngc.disable()\n"
                        "from nsbind.gcpause import launcher_paused\nlauncher_paused()\n" + body +
                        "\nsys.stdout.write(str(gc.isenabled()))")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().split()[-1]


def test_commands_off_the_start_path_resume_the_collector(tmp_path: pathlib.Path) -> None:
    oci = f"from nsbind.oci.cli import main\nmain(['--root', {str(tmp_path)!r}, '{{}}'])"
    assert _collector_after(oci.format("list")) == "True"
    assert _collector_after(oci.format("features")) == "True"
    # the light commands podman calls for every container keep it paused (they exit)
    state = f"from nsbind.oci.cli import main\nmain(['--root', {str(tmp_path)!r}, " \
        "'state', 'nothing-here'])"
    assert _collector_after(state) == "False"
    engine = "from nsbind.cli import main\nmain(['--root', {0!r}, '--runroot', {0!r}, " \
        "'{1}'])"
    assert _collector_after(engine.format(str(tmp_path), "ps")) == "True"


def test_resuming_freezes_what_the_start_made_and_collects_what_comes_after() -> None:
    """The objects made while paused go to the permanent generation (no collection walks
    them); a cycle made after the resume is collected; a second resume freezes
    nothing more."""
    body = """
from nsbind.gcpause import resume
start = [[i] for i in range(50000)]
assert gc.get_freeze_count() == 0 and gc.get_count()[0] > 50000
resume()
frozen = gc.get_freeze_count()
assert frozen > 50000 and gc.get_count()[0] < 700, (frozen, gc.get_count())
class Node: pass
for _ in range(10):
    a, b = Node(), Node(); a.b, b.a = b, a
del a, b
assert gc.collect() >= 20
resume()
assert gc.get_freeze_count() == frozen
"""
    assert _collector_after(body) == "True"
    # a program that paused the collector itself (no launcher) gets it back, unfrozen;
    # a monitor (collect=True) collects the start's cycles before freezing the rest
    own = """
import gc
gc.disable()
from nsbind.gcpause import resume
start = [[i] for i in range(1000)]
resume()
assert gc.isenabled() and gc.get_freeze_count() == 0
print("ok")
"""
    proc = _run_program(own)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == b"ok", proc.stderr
    monitor = """
class Node: pass
a, b = Node(), Node(); a.b, b.a = b, a
del a, b
from nsbind.gcpause import resume
resume(collect=True)
assert not any(type(o).__name__ == "Node" for o in gc.get_objects())
assert gc.get_freeze_count() > 0
"""
    assert _collector_after(monitor) == "True"


def test_waiting_for_a_process_resumes_the_collector() -> None:
    """``run`` and ``exec`` keep it paused until they wait for their process: the wait
    (and a monitor's life) can be long."""
    body = ("import os\nfrom nsbind.oci.waiting import wait_foreground\n"
            "pid = os.fork()\nif pid == 0:\n    os._exit(7)\n"
            "assert not gc.isenabled()\nassert wait_foreground(pid) == 7")
    assert _collector_after(body) == "True"
