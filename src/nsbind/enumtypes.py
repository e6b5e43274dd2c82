"""Enumerations that cost little to define: the base of nsbind's flag sets, namespace
types, capabilities and mount-step codes.

Python 3.11's enum module makes a class member by member through descriptors and checks,
about 50 µs a member here; a command's start defines some 200 members (and imports the
module, 2 to 3 ms).  :class:`Enum`, :class:`IntEnum` and :class:`IntFlag` here behave
as the standard ones do for the enumerations nsbind defines, and the type checker is
shown the standard classes:

* the members are the class body's public names that are not descriptors (functions,
  properties, class methods), in the order written; a repeated value makes an alias; a
  member may not be named as an attribute of the class (``name``, ``value``);
* ``Cls(value)``, ``Cls[name]``, ``Cls.__members__``, iteration, ``len``, ``in``,
  ``.name``, ``.value``, ``repr``/``str``/``format``, ``hash``, copy and pickle as
  Python 3.11's;
* :class:`IntFlag` keeps unknown bits (``boundary=KEEP``): ``Cls(value)`` accepts any
  int and names a combination ``"A|B"`` (``"A|8"`` with an unknown bit, None for none
  known); iterating the class yields the single-bit members only; ``|``, ``&``, ``^``
  with an int give the class, ``~`` the complement within the members' bit width.

What they do not do: ``auto()``, ``_missing_``, ``_ignore_``, mixins other than int,
``enum.unique``/``verify``.  Members are not instances of ``enum.Enum``.
"""

from __future__ import annotations

from types import MappingProxyType

TYPE_CHECKING = False  # not typing's: this module is on every command's start
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["BaseEnum", "BaseIntEnum", "BaseIntFlag", "Enum", "EnumType", "IntEnum", "IntFlag"]


def _is_descriptor(value: object) -> bool:
    kind = type(value)
    if kind is int or kind is str:  # the members' values, without three lookups each
        return False
    return hasattr(kind, "__get__") or hasattr(kind, "__set__") or hasattr(kind, "__delete__")


_ATTRIBUTES: dict[tuple[type, ...], frozenset[str]] = {}


def _attributes(bases: tuple[type, ...], metaclass: type) -> frozenset[str]:
    """The attribute names a class with these bases has before its own (once a base)."""
    key = (*bases, metaclass)
    names = _ATTRIBUTES.get(key)
    if names is None:
        names = frozenset(name for base in (*bases, metaclass) for kind in base.__mro__
                          for name in vars(kind))
        _ATTRIBUTES[key] = names
    return names


class EnumType(type):
    """The metaclass: makes the members when the class is made, and looks them up."""

    _member_map_: dict[str, Any]
    _value2member_map_: dict[Any, Any]
    _member_names_: list[str]

    def __new__(mcls, name: str, bases: tuple[type, ...],
                namespace: dict[str, Any]) -> EnumType:
        values = {key: value for key, value in namespace.items()
                  if not key.startswith("_") and not _is_descriptor(value)}
        for base in bases:
            if getattr(base, "_member_names_", None):
                raise TypeError(f"{name}: cannot extend {base.__name__}, which has members")
        body = {key: value for key, value in namespace.items() if key not in values}
        cls = super().__new__(mcls, name, bases, body)
        taken = _attributes(bases, mcls)
        for key in values:
            if key in taken:
                raise TypeError(f"{name}: member {key!r} hides an attribute of the class")
        members: dict[str, Any] = {}
        by_value: dict[Any, Any] = {}
        names: list[str] = []
        make = cls._make_member_
        canonical = cls._canonical_
        for key, value in values.items():
            member = by_value.get(value)
            if member is None:
                member = make(value)
                member._name_ = key
                member._value_ = value
                by_value[value] = member
                if canonical(value):
                    names.append(key)
            members[key] = member
            type.__setattr__(cls, key, member)
        type.__setattr__(cls, "_member_map_", members)
        type.__setattr__(cls, "_value2member_map_", by_value)
        type.__setattr__(cls, "_member_names_", names)
        cls._init_class_()
        return cls

    # what the base classes below supply
    def _make_member_(cls, value: Any) -> Any:
        raise NotImplementedError

    def _canonical_(cls, value: Any) -> bool:
        return True

    def _init_class_(cls) -> None:
        pass

    def _missing_value_(cls, value: Any) -> Any:
        raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")

    def __call__(cls, value: Any) -> Any:
        try:
            return cls._value2member_map_[value]
        except KeyError:
            pass
        except TypeError:  # unhashable
            for member in cls._member_map_.values():
                if member._value_ == value:
                    return member
        return cls._missing_value_(value)

    def __getitem__(cls, name: str) -> Any:
        return cls._member_map_[name]

    def __iter__(cls) -> Iterator[Any]:
        members = cls._member_map_
        return (members[name] for name in cls._member_names_)

    def __reversed__(cls) -> Iterator[Any]:
        members = cls._member_map_
        return (members[name] for name in reversed(cls._member_names_))

    def __len__(cls) -> int:
        return len(cls._member_names_)

    def __contains__(cls, member: object) -> bool:
        if not isinstance(type(member), EnumType):
            raise TypeError(f"unsupported operand type(s) for 'in': {type(member).__qualname__!r}"
                            f" and {type(cls).__qualname__!r}")
        return isinstance(member, cls) and member._name_ in cls._member_map_

    def __bool__(cls) -> bool:
        return True

    @property
    def __members__(cls) -> MappingProxyType[str, Any]:
        return MappingProxyType(cls._member_map_)

    def __repr__(cls) -> str:
        return f"<{'flag' if issubclass(cls, BaseIntFlag) else 'enum'} {cls.__name__!r}>"

    def __setattr__(cls, name: str, value: Any) -> None:
        if name in cls.__dict__.get("_member_map_", ()):
            raise AttributeError(f"cannot reassign member {name!r}")
        super().__setattr__(name, value)

    def __delattr__(cls, name: str) -> None:
        if name in cls.__dict__.get("_member_map_", ()):
            raise AttributeError(f"{cls.__name__!r} cannot delete member {name!r}.")
        super().__delattr__(name)


class BaseEnum(metaclass=EnumType):
    """A set of named values (``enum.Enum``): members compare by identity."""

    _name_: Any
    _value_: Any

    @classmethod
    def _make_member_(cls, value: Any) -> Any:
        return object.__new__(cls)

    @property
    def name(self) -> Any:
        """The member's name (None for an IntFlag value no member names)."""
        return self._name_

    @property
    def value(self) -> Any:
        """The member's value."""
        return self._value_

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._name_}: {self._value_!r}>"

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self._name_}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __hash__(self) -> int:
        return hash(self._name_)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return type(self), (self._value_,)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


class BaseIntEnum(int, BaseEnum):
    """Named ints (``enum.IntEnum``): ``str`` and ``format`` are the int's."""

    @classmethod
    def _make_member_(cls, value: Any) -> Any:
        return int.__new__(cls, value)

    __repr__ = BaseEnum.__repr__
    __str__ = int.__repr__

    def __format__(self, spec: str) -> str:
        return int.__format__(self, spec)


class BaseIntFlag(int, BaseEnum):
    """Bit flags (``enum.IntFlag``, whose boundary is KEEP): any int is a value."""

    _flag_mask_: int
    _singles_mask_: int
    _all_bits_: int

    @classmethod
    def _make_member_(cls, value: Any) -> Any:
        return int.__new__(cls, value)

    @classmethod
    def _canonical_(cls, value: Any) -> bool:
        return bool(value) and value & (value - 1) == 0

    @classmethod
    def _init_class_(cls) -> None:
        flags = singles = 0
        for member in cls._value2member_map_.values():
            flags |= member._value_
        for member in cls:
            singles |= member._value_
        cls._flag_mask_ = flags
        cls._singles_mask_ = singles
        cls._all_bits_ = (1 << flags.bit_length()) - 1

    @classmethod
    def _missing_value_(cls, value: Any) -> Any:
        """A value no member has: a pseudo-member, named as Python 3.11 names it (the
        single-bit members in the order written, then multi-bit members inside an
        unknown part, then what is left, in decimal)."""
        if not isinstance(value, int):
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")
        value = int(value)
        all_bits = cls._all_bits_
        negative = None
        if value < 0 and (value < ~all_bits or value & (all_bits ^ cls._flag_mask_)):
            value += max(all_bits + 1, 1 << value.bit_length())
        if value < 0:
            negative = value
            value += all_bits + 1
        member = int.__new__(cls, value)
        member._value_ = value
        singles = value & cls._singles_mask_
        members = [m for m in cls if singles & m._value_]
        if value & ~cls._singles_mask_:
            for other in cls._member_map_.values():
                bits = other._value_
                if bits and bits & value == bits and other not in members:
                    members.append(other)
        known = 0
        for known_member in members:
            known |= known_member._value_
        name = "|".join([m._name_ for m in members]) if known else None
        if name and value ^ known:
            name += f"|{value ^ known}"
        member._name_ = name
        member = cls._value2member_map_.setdefault(value, member)
        if negative is not None:
            cls._value2member_map_[negative] = member
        return member

    def __repr__(self) -> str:
        name = self._name_
        cls = type(self).__name__
        return f"<{cls}.{name}: {self._value_}>" if name else f"<{cls}: {self._value_}>"

    __str__ = int.__repr__

    def __format__(self, spec: str) -> str:
        return int.__format__(self, spec)

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, int):
            return NotImplemented
        return type(self)(int.__or__(self, other))

    def __and__(self, other: Any) -> Any:
        if not isinstance(other, int):
            return NotImplemented
        return type(self)(int.__and__(self, other))

    def __xor__(self, other: Any) -> Any:
        if not isinstance(other, int):
            return NotImplemented
        return type(self)(int.__xor__(self, other))

    __ror__ = __or__
    __rand__ = __and__
    __rxor__ = __xor__

    def __invert__(self) -> Any:
        return type(self)(~self._value_)

    def __contains__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            raise TypeError(f"unsupported operand type(s) for 'in': {type(other).__qualname__!r}"
                            f" and {type(self).__qualname__!r}")
        return int(other) & int(self) == int(other)

    def __iter__(self) -> Iterator[Any]:
        value = self._value_
        return iter([m for m in type(self) if value & m._value_])

    def __len__(self) -> int:
        return int(self._value_).bit_count()


# The names nsbind's enumerations derive from: these classes when run, the standard ones
# for the type checker (which then checks members, exhaustiveness and values as enums).
if TYPE_CHECKING:
    from enum import Enum, IntEnum, IntFlag
else:
    Enum, IntEnum, IntFlag = BaseEnum, BaseIntEnum, BaseIntFlag
