"""nsbind.frozen: records behave as frozen dataclasses do, compared side by side with
``@dataclasses.dataclass(frozen=True)`` classes of the same fields, and importing it
does not import the dataclasses module."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys

import pytest

from nsbind.errors import NsbindError
from nsbind.frozen import (
    FrozenInstanceError,
    as_dict,
    field,
    fields_of,
    frozen,
    is_record,
    record,
    replace_fields,
)


@frozen
class Point:
    """A record with defaults, a factory and a field left out of comparison."""

    x: int
    y: int = 2
    tags: tuple[str, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class RefPoint:
    x: int
    y: int = 2
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)
    note: str = dataclasses.field(default="", compare=False, repr=False)


@frozen
class Derived:
    base: int
    doubled: int = field(init=False, default=0)
    cache: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "doubled", self.base * 2)


@record
class Named:
    name: str
    size: int = 0


@frozen
class OwnEq:
    a: int
    b: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OwnEq) and other.a == self.a

    def __hash__(self) -> int:
        return hash(self.a)


@frozen
class Empty:
    pass


def test_a_record_constructs_compares_hashes_and_prints_as_a_frozen_dataclass() -> None:
    for args, kwargs in [((1,), {}), ((1, 3), {}), ((), {"x": 1, "tags": ("a",)}),
                         ((1,), {"note": "n", "y": 5})]:
        mine, ref = Point(*args, **kwargs), RefPoint(*args, **kwargs)  # type: ignore[arg-type]
        assert tuple(as_dict(mine).values()) == dataclasses.astuple(ref)
        assert repr(mine) == repr(ref).replace("RefPoint", "Point")
        assert hash(mine) == hash(ref)
        assert mine == Point(*args, **kwargs)  # type: ignore[arg-type]
    assert Point(1, note="a") == Point(1, note="b")  # compare=False
    assert Point(1) != Point(2)
    other: object = RefPoint(1)
    assert Point(1) != other  # another class: never equal
    assert Derived(1).cache is not Derived(1).cache  # a fresh dict each time
    assert [f.name for f in fields_of(Point)] == [f.name for f in dataclasses.fields(RefPoint)]
    assert Point.__match_args__ == ("x", "y", "tags", "note")


def test_a_record_is_frozen_and_works_with_replace_asdict_copy_and_pickle() -> None:
    p = Point(1, tags=("t",))
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x'"):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del p.y
    q = replace_fields(p, y=9)
    assert (q.x, q.y, q.tags) == (1, 9, ("t",)) and p.y == 2
    assert as_dict(p) == {"x": 1, "y": 2, "tags": ("t",), "note": ""}
    assert copy.deepcopy(p) == p
    assert pickle.loads(pickle.dumps(p)) == p


def test_init_false_fields_post_init_and_keyword_only_records() -> None:
    d = Derived(4)
    assert (d.base, d.doubled, d.cache) == (4, 8, {})
    assert replace_fields(d, base=5).doubled == 10
    n = Named(name="a")
    assert (n.name, n.size) == ("a", 0)
    with pytest.raises(TypeError):
        Named("a")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=3)  # type: ignore[call-arg]
    assert Empty() == Empty() and hash(Empty()) == hash(Empty())


def test_methods_the_class_defines_are_kept() -> None:
    assert OwnEq(1, 2) == OwnEq(1, 3)
    assert hash(OwnEq(1, 2)) == hash(1)
    assert Point.__doc__ is not None and Point.__doc__.startswith("A record")
    assert "frozen record" in (Empty.__doc__ or "")


def test_other_dataclasses_go_to_the_dataclasses_module_and_import_costs_nothing() -> None:
    ref = RefPoint(1)
    assert replace_fields(ref, y=7) == RefPoint(1, 7)
    assert as_dict({"p": ref, "q": [Point(1)]}) == {"p": dataclasses.asdict(ref),
                                                     "q": [{"x": 1, "y": 2, "tags": (),
                                                            "note": ""}]}
    assert [f.name for f in fields_of(ref)] == ["x", "y", "tags", "note"]
    assert is_record(Point) and is_record(Point(1)) and not is_record(ref)
    assert issubclass(FrozenInstanceError, NsbindError)
    with pytest.raises(ValueError, match="mutable default"):
        frozen(type("Bad", (), {"__annotations__": {"x": "list[int]"}, "x": []}))
    code = ("import sys, nsbind.frozen, nsbind.oci.spec; "
            "print(sorted({'dataclasses', 'inspect'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": os.pathsep.join(sys.path)}).stdout
    assert out.strip() == "[]"


def _fresh() -> type:
    @frozen
    class Mixed:
        a: int
        b: str = "b"
        c: tuple[int, ...] = field(default_factory=tuple)
        d: int = field(default=0, kw_only=True)
        e: dict[str, int] = field(init=False, default_factory=dict)
        f: int = field(init=False, default=5)

        def __post_init__(self) -> None:
            object.__setattr__(self, "f", self.a + 1)
    return Mixed


CALLS: list[tuple[tuple[object, ...], dict[str, object]]] = [
    ((1,), {}), ((1, "x", (2,)), {"d": 4}), ((), {"a": 1, "c": (3,)}),
    ((), {}), ((1, 2, 3, 4), {}), ((1,), {"a": 2}), ((1,), {"z": 1}), ((1,), {"e": {}}),
    ((1,), {"f": 1}), ((), {"b": "x"}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_the_first_instances_and_the_compiled_init_agree(
        args: tuple[object, ...], kwargs: dict[str, object],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A class's first instances are made by reading its fields (nsbind.frozen._bind),
    later ones by a compiled __init__: the same values, the same TypeErrors."""
    import nsbind.frozen

    outcomes = []
    for compile_after in (1000, 0):
        monkeypatch.setattr(nsbind.frozen, "COMPILE_AFTER", compile_after)
        cls = _fresh()
        try:
            outcomes.append(as_dict(cls(*args, **kwargs)))
        except TypeError:
            outcomes.append("TypeError")
    assert outcomes[0] == outcomes[1]
    if outcomes[0] != "TypeError":
        assert outcomes[0]["f"] == outcomes[0]["a"] + 1 and outcomes[0]["e"] == {}
