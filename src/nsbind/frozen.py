"""Frozen records: ``@frozen`` (and the keyword-only ``@record``) make a frozen dataclass
— ``dataclasses.fields``, ``replace`` and ``asdict`` work on it, its instances compare,
hash and print as a frozen dataclass's do — without the code generation of
``@dataclass(frozen=True)`` at import.

Python 3.11 compiles six methods for each such class (0.8 ms a class), and a command's
start imports some fifty of them: a runtime process paid tens of milliseconds for
classes it mostly never instantiates.  Here equality, hashing, ``repr`` and the frozen
``__setattr__`` are shared functions; ``__init__`` is compiled once, at the class's first
instantiation, the only method whose speed matters per object.  Methods the class body
defines are kept, as dataclasses keeps them.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["frozen", "record"]

T = TypeVar("T")

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: object) -> Callable[[T], T]:
        return lambda f: f

_MISSING = dataclasses.MISSING


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of ``names`` of an object, as a tuple (attrgetter's, when 2 or more)."""
    if len(names) >= 2:
        return operator.attrgetter(*names)
    if names:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return lambda obj: ()


def _eq(self: Any, other: object) -> bool:
    compared: Callable[[Any], tuple[Any, ...]] = self.__frozen_compared__
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]
    return bool(compared(self) == compared(other))


def _hash(self: Any) -> int:
    return hash(self.__frozen_hashed__(self))


def _repr(self: Any) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__frozen_shown__)
    return f"{type(self).__qualname__}({inner})"


def _setattr(self: Any, name: str, *_: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _compile_init(cls: type) -> Callable[..., None]:
    """``cls.__init__`` as dataclasses writes it for a frozen class: parameters in field
    order (keyword-only fields after ``*``), defaults and default factories, fields with
    ``init=False`` set from theirs, then ``__post_init__`` when the class has one."""
    namespace: dict[str, Any] = {"__set": object.__setattr__, "__missing": _MISSING}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        name = f.name
        if f.default is not _MISSING:
            namespace[f"__d_{name}"] = f.default
            default = f"__d_{name}"
        elif f.default_factory is not _MISSING:
            namespace[f"__f_{name}"] = f.default_factory
            default = "__missing"
        else:
            default = ""
        if not f.init:
            value = f"__f_{name}()" if default == "__missing" else default
            if not value:
                continue  # no default: set by __post_init__, as dataclasses leaves it
            body.append(f"    __set(__self, {name!r}, {value})")
            continue
        (keyword if f.kw_only else positional).append(f"{name}={default}" if default
                                                      else name)
        if default == "__missing":
            body.append(f"    if {name} is __missing: {name} = __f_{name}()")
        body.append(f"    __set(__self, {name!r}, {name})")
    if hasattr(cls, "__post_init__"):
        body.append("    __self.__post_init__()")
    params = ", ".join(["__self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}) -> None:\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # our own text, made of the class's field names
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _first_init(cls: type) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init = _compile_init(cls)
        type.__setattr__(cls, "__init__", init)
        init(self, *args, **kwargs)
    return __init__


def _make(cls: type[T], kw_only: bool) -> type[T]:
    own = cls.__dict__
    if cls.__doc__ is None:  # else dataclasses renders one through inspect.signature
        cls.__doc__ = f"{cls.__name__}: a frozen record."
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    made: Any = dataclasses.dataclass(init=False, repr=False, eq=False,
                                      kw_only=kw_only)(cls)
    fields = dataclasses.fields(made)
    made.__frozen_compared__ = staticmethod(_getter([f.name for f in fields if f.compare]))
    made.__frozen_hashed__ = staticmethod(_getter(
        [f.name for f in fields if (f.compare if f.hash is None else f.hash)]))
    made.__frozen_shown__ = tuple(f.name for f in fields if f.repr)
    made.__init__ = _first_init(made)
    if "__repr__" not in own:
        made.__repr__ = _repr
    if "__eq__" not in own:
        made.__eq__ = _eq
    if not explicit_hash:
        made.__hash__ = _hash
    made.__setattr__ = _setattr
    made.__delattr__ = _setattr
    return made  # type: ignore[no-any-return]


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[T]) -> type[T]:
    """A frozen dataclass, as ``@dataclasses.dataclass(frozen=True)`` makes one."""
    return _make(cls, kw_only=False)


@dataclass_transform(frozen_default=True, kw_only_default=True,
                     field_specifiers=(dataclasses.field,))
def record(cls: type[T]) -> type[T]:
    """A frozen dataclass whose fields are all keyword-only."""
    return _make(cls, kw_only=True)
