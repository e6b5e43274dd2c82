"""nsbind.enumtypes against the standard enum module: the same class bodies made with
both, and every behaviour the module promises compared (Python 3.11's is the reference;
later versions changed some of IntFlag's names and ``~``)."""

from __future__ import annotations

import copy
import enum
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsbind import enumtypes, flags, mountstep, seccomp
from nsbind._sys.proc import Capability

pytestmark = pytest.mark.unprivileged

needs_311 = pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                               reason="the reference is Python 3.11's enum; this is "
                                      f"{sys.version_info[0]}.{sys.version_info[1]}")


def _bodies(kind: types.SimpleNamespace) -> dict[str, Any]:
    """Test enumerations, made with ``kind``'s Enum, IntEnum and IntFlag."""

    class Letters(kind.IntFlag):  # type: ignore[name-defined,misc]
        C = 4
        A = 1
        B = 2
        AB = 3  # a multi-bit member
        Z = 0x40
        ZERO = 0

    class Holes(kind.IntFlag):  # type: ignore[name-defined,misc]
        A = 1
        B = 2
        MASK = 0x70  # bit 0x40 is in no single-bit member
        N = 0x10
        S = 0x20
        BIG = 1 << 40

    class Kind(kind.Enum):  # type: ignore[name-defined,misc]
        X = "x"
        Y = "y"
        XX = "x"  # an alias

        @property
        def upper(self) -> str:
            return str(self.value).upper()

        @classmethod
        def make(cls, value: str) -> Any:
            return cls(value)

    class Number(kind.IntEnum):  # type: ignore[name-defined,misc]
        Q = 2
        P = 1
        PP = 1

    return {"Letters": Letters, "Holes": Holes, "Kind": Kind, "Number": Number}


STD = _bodies(types.SimpleNamespace(Enum=enum.Enum, IntEnum=enum.IntEnum,
                                    IntFlag=enum.IntFlag))
OURS = _bodies(types.SimpleNamespace(Enum=enumtypes.BaseEnum, IntEnum=enumtypes.BaseIntEnum,
                                     IntFlag=enumtypes.BaseIntFlag))


def _show(value: object) -> tuple[object, ...]:
    """What a value looks like from outside: its text forms, type and attributes."""
    out: list[object] = [repr(value), str(value), format(value), type(value).__name__]
    if isinstance(value, int):
        out += [int(value), f"{value:#x}", f"{value:>6}"]
    out += [getattr(value, "name", "-"), getattr(value, "value", "-")]
    return tuple(out)


def _outcome(call: Callable[..., object], classes: dict[str, Any], args: tuple[Any, ...]
             ) -> object:
    try:
        return call(classes, *args)
    except Exception as exc:  # the same exception type and message are part of the contract
        return ("raised", type(exc).__name__, str(exc))


def same(call: Callable[..., object], *args: Any) -> None:
    """``call(classes, *args)`` gives the same with these classes as with enum's."""
    assert _outcome(call, OURS, args) == _outcome(call, STD, args)


flag_values = st.one_of(st.integers(-300, 0x1FF), st.integers(-(1 << 45), 1 << 45))


@needs_311
def test_an_int_flag_names_inverts_and_iterates_every_small_value_as_enum_does() -> None:
    for a in range(-300, 0x200):
        for name in ("Letters", "Holes"):
            same(lambda c, name, a: (_show(c[name](a)), _show(~c[name](a)), len(c[name](a)),
                            bool(c[name](a))), name, a)
        # iterating a value: enum yields None for a bit only a multi-bit member has
        same(lambda c, a: [_show(m) for m in c["Letters"](a)], a)
        same(lambda c, a: [_show(m) for m in c["Holes"](a & ~0x40)], a)


@needs_311
@given(flag_values, flag_values)
def test_an_int_flag_combines_values_as_enum_does(a: int, b: int) -> None:
    for name in ("Letters", "Holes"):
        same(lambda c, name: [_show(c[name](a)), _show(~c[name](a)), len(c[name](a))], name)
        same(lambda c, name: [_show(c[name](a) | b), _show(b | c[name](a)),
                                   _show(c[name](a) & b), _show(c[name](a) ^ b),
                                   _show(c[name](a) + b)], name)
        same(lambda c, name: c[name](b & 0x3F) in c[name](a), name)


@needs_311
@pytest.mark.filterwarnings("ignore:in 3.12 __contains__:DeprecationWarning")  # enum's own
def test_the_classes_list_look_up_and_refuse_as_enum_does() -> None:
    for name in STD:
        same(lambda c, name: [_show(m) for m in c[name]], name)
        same(lambda c, name: [_show(m) for m in reversed(c[name])], name)
        same(lambda c, name: (len(c[name]), repr(c[name]), bool(c[name])), name)
        same(lambda c, name: {k: _show(v) for k, v in c[name].__members__.items()}, name)
        same(lambda c, name: [c[name][k] is v for k, v in c[name].__members__.items()], name)
        same(lambda c, name: c[name]["nope"], name)
        same(lambda c, name: setattr(c[name], next(iter(c[name].__members__)), 3), name)
        same(lambda c, name: delattr(c[name], next(iter(c[name].__members__))), name)
        same(lambda c, name: [copy.copy(m) is m and copy.deepcopy(m) is m for m in c[name]], name)
        same(lambda c, name: 1 in c[name], name)
        same(lambda c, name: [m in c[name] for m in c[name]], name)
    same(lambda c: [_show(c["Kind"]("x")), c["Kind"].XX is c["Kind"].X, c["Kind"].X.upper,
                    _show(c["Kind"].make("y")), hash(c["Kind"].X) == hash("X"),
                    c["Kind"].X != c["Kind"].Y, c["Kind"].X in c["Kind"]])
    same(lambda c: c["Kind"]("z"))
    same(lambda c: c["Kind"](["unhashable"]))
    same(lambda c: c["Number"](7))
    same(lambda c: c["Letters"]("x"))
    same(lambda c: [_show(c["Number"].P), c["Number"].P + 1, c["Number"].P < c["Number"].Q,
                    {1: "one"}[c["Number"].P], hash(c["Number"].PP) == hash(1)])
    same(lambda c: 1 in c["Letters"].A)
    same(lambda c: c["Kind"].X in c["Letters"])


def test_a_class_with_members_cannot_be_extended_nor_a_member_hide_an_attribute() -> None:
    ours: Any = OURS["Number"]
    std: Any = STD["Number"]
    with pytest.raises(TypeError, match="cannot extend"):
        class More(ours):  # type: ignore[misc]
            R = 3
    with pytest.raises(TypeError, match="hides an attribute"):
        class Bad(enumtypes.BaseEnum):
            name = "n"
    with pytest.raises(TypeError, match="cannot extend"):
        class MoreStd(std):  # type: ignore[misc]
            R = 3


NSBIND_ENUMS = [flags.CloneFlags, flags.Namespace, flags.MountFlags, flags.UmountFlags,
                flags.MountAttr, flags.Propagation, flags.FsconfigCmd, flags.OpenTreeFlags,
                flags.MoveMountFlags, flags.ResolveFlags, flags.AtFlags, flags.CloseRangeFlags,
                flags.WaitFlags, Capability, mountstep.MountKind, mountstep.MountOpt,
                mountstep.MountPhase, seccomp.Op]


@needs_311
@pytest.mark.parametrize("ours", NSBIND_ENUMS, ids=lambda c: c.__name__)
def test_nsbinds_enumerations_are_what_enum_makes_of_their_members(ours: Any) -> None:
    """Each of nsbind's enumerations made again with enum, from its members: the same
    members, values, names and texts; for flags, every combination of two members."""
    base: Any = next(std for mine, std in ((enumtypes.BaseIntFlag, enum.IntFlag),
                                      (enumtypes.BaseIntEnum, enum.IntEnum),
                                      (enumtypes.BaseEnum, enum.Enum)) if issubclass(ours, mine))
    std: Any = base(ours.__name__, [(k, v.value) for k, v in ours.__members__.items()])
    assert [_show(m) for m in ours] == [_show(m) for m in std]
    assert {k: _show(v) for k, v in ours.__members__.items()} == \
        {k: _show(v) for k, v in std.__members__.items()}
    assert not isinstance(next(iter(ours)), enum.Enum)  # as the module says
    assert all(pickle.loads(pickle.dumps(m)) is m for m in ours)
    if base is enum.IntFlag:
        values = [m.value for m in ours.__members__.values()]
        for a in values:
            for b in values:
                assert _show(ours(a | b)) == _show(std(a | b))
                assert _show(~ours(a)) == _show(~std(a))
