"""Frozen records: ``@frozen`` (and the keyword-only ``@record``) make a class that
behaves as a frozen dataclass — its constructor, equality, hashing and ``repr``, fields
with defaults, default factories, ``init``/``repr``/``compare``/``hash`` flags and
metadata (:func:`field`), ``__post_init__``, assignment refused — without the
dataclasses module.

A command's start imports some eighty of these classes.  The dataclasses module imports
inspect (and ast, dis, tokenize: some 10 ms a process here), and ``@dataclass(frozen=
True)`` compiles six methods a class (0.8 ms each class).  Here equality, hashing,
``repr`` and the frozen ``__setattr__`` are shared functions, and ``__init__`` is
compiled once the class has made a few instances (before, the fields are read at each
call).  :func:`fields_of`, :func:`replace_fields` and :func:`as_dict` are
``dataclasses.fields``, ``replace`` and ``asdict`` for records (and hand other
dataclasses to those).
"""

from __future__ import annotations

import errno
import sys
from _operator import attrgetter  # operator's, without the operator module

from nsbind.errors import MessageError

TYPE_CHECKING = False  # not typing's: see above
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_: object) -> Callable[[T], T]:
        return lambda f: f

__all__ = ["MISSING", "Field", "FrozenInstanceError", "as_dict", "field", "fields_of",
           "frozen", "is_record", "record", "replace_fields"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  #: no default (the sentinel, as dataclasses.MISSING)


class FrozenInstanceError(MessageError):
    """An assignment to a field of a record (as ``dataclasses.FrozenInstanceError``, but
    an :class:`~nsbind.errors.NsbindError`, errno EROFS: an OSError cannot also be an
    AttributeError)."""

    default_errno = errno.EROFS
    operation = "record"


class Field:
    """One field of a record: what :func:`field` declares, and its name."""

    __slots__ = ("compare", "default", "default_factory", "hash", "init", "kw_only",
                 "metadata", "name", "repr")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool,
                 hash: bool | None, compare: bool, metadata: Mapping[str, Any] | None,
                 kw_only: Any) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.hash = hash
        self.compare = compare
        self.metadata: Mapping[str, Any] = {} if metadata is None else metadata
        self.kw_only = kw_only

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True,
          repr: bool = True, hash: bool | None = None, compare: bool = True,
          metadata: Mapping[str, Any] | None = None, kw_only: Any = MISSING) -> Any:
    """A field's declaration, as ``dataclasses.field``: a default or a factory of one,
    whether ``__init__`` takes it, whether ``repr``, equality and the hash use it."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("a field cannot have both a default and a default_factory")
    return Field(default, default_factory, init, repr, hash, compare, metadata, kw_only)


def is_record(obj: object) -> bool:
    """Whether ``obj`` is a record class or one's instance."""
    return hasattr(obj, "__record_fields__")


def fields_of(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order (``dataclasses.fields``
    for any other dataclass)."""
    found: tuple[Field, ...] | None = getattr(obj, "__record_fields__", None)
    if found is None:
        import dataclasses

        return dataclasses.fields(obj)  # type: ignore[return-value]
    return found


def replace_fields(obj: T, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes`` (``dataclasses.replace``)."""
    own: tuple[Field, ...] | None = getattr(obj, "__record_fields__", None)
    if own is None:
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for f in own:
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is not set by __init__: it cannot be "
                                 "replaced")
        elif f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


def as_dict(obj: Any) -> Any:
    """A record as a dict, records inside it too, lists, tuples and dicts copied
    (``dataclasses.asdict``)."""
    if is_record(obj) and not isinstance(obj, type):
        return {f.name: as_dict(getattr(obj, f.name)) for f in fields_of(obj)}
    if isinstance(obj, (list, tuple)):
        items = [as_dict(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((as_dict(k), as_dict(v)) for k, v in obj.items())
    if hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type):
        import dataclasses

        return dataclasses.asdict(obj)
    return obj


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of ``names`` of an object, as a tuple (attrgetter's, when 2 or more)."""
    if len(names) >= 2:
        return attrgetter(*names)
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
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _compile_init(cls: type) -> Callable[..., None]:
    """``cls.__init__`` as dataclasses writes it for a frozen class: parameters in field
    order (keyword-only fields after ``*``), defaults and default factories, fields with
    ``init=False`` set from theirs, then ``__post_init__`` when the class has one."""
    namespace: dict[str, Any] = {"__set": object.__setattr__, "__missing": MISSING}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in fields_of(cls):
        name = f.name
        if f.default is not MISSING:
            namespace[f"__d_{name}"] = f.default
            default = f"__d_{name}"
        elif f.default_factory is not MISSING:
            namespace[f"__f_{name}"] = f.default_factory
            default = "__missing"
        else:
            default = ""
        if not f.init:
            value = f"__f_{name}()" if default == "__missing" else default
            if value:  # else left to __post_init__, as dataclasses leaves it
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


def _bind(cls: type, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """What the compiled ``__init__`` does, read from the fields at each call: the
    arguments bound as Python binds them (the same TypeErrors), then each field set."""
    fields = fields_of(cls)
    positional = [f.name for f in fields if f.init and not f.kw_only]
    where = f"{cls.__qualname__}.__init__()"
    if len(args) > len(positional):
        raise TypeError(f"{where} takes {len(positional) + 1} positional arguments but "
                        f"{len(args) + 1} were given")
    given = dict(zip(positional, args, strict=False))  # (fewer args than names)
    for name, value in kwargs.items():
        if name in given:
            raise TypeError(f"{where} got multiple values for argument {name!r}")
        given[name] = value
    taken = {f.name for f in fields if f.init}
    for name in kwargs:
        if name not in taken:
            raise TypeError(f"{where} got an unexpected keyword argument {name!r}")
    missing = [f.name for f in fields if f.init and f.name not in given
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise TypeError(f"{where} missing required arguments: {', '.join(missing)}")
    for f in fields:
        if f.init and f.name in given:
            value = given[f.name]
        elif f.default is not MISSING:
            value = f.default
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        else:
            continue  # init=False without a default: left to __post_init__
        object.__setattr__(self, f.name, value)
    if hasattr(cls, "__post_init__"):
        self.__post_init__()


#: instances a class makes through :func:`_bind` before its ``__init__`` is compiled
#: (0.13 ms a class): a command makes a few of most classes, a long-lived program many
COMPILE_AFTER = 16


def _first_init(cls: type) -> Callable[..., None]:
    made = [0]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        made[0] += 1
        if made[0] <= COMPILE_AFTER:
            _bind(cls, self, args, kwargs)
            return
        init = _compile_init(cls)
        type.__setattr__(cls, "__init__", init)
        init(self, *args, **kwargs)
    return __init__


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    typing = sys.modules.get("typing")
    return typing is not None and getattr(annotation, "__origin__", None) is typing.ClassVar


def _collect(cls: type, kw_only: bool) -> list[Field]:
    """The record's fields: its bases' (records), then its own annotations in order; a
    class attribute holding a default becomes the default (and stays, as a default)."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            found[f.name] = f
    # the class's own annotations (inspect.get_annotations would import inspect)
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else field(default=value)
        f.name = name
        if f.kw_only is MISSING:
            f.kw_only = kw_only
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"{cls.__name__}.{name}: a mutable default "
                             f"({type(f.default).__name__}): use default_factory")
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        found[name] = f
    return list(found.values())


def _make(cls: type[T], kw_only: bool) -> type[T]:
    own = cls.__dict__
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    made: Any = cls
    fields = _collect(cls, kw_only)
    made.__record_fields__ = tuple(fields)
    type.__setattr__(made, "__match_args__",
                     tuple(f.name for f in fields if f.init and not f.kw_only))
    made.__frozen_compared__ = staticmethod(_getter([f.name for f in fields if f.compare]))
    made.__frozen_hashed__ = staticmethod(_getter(
        [f.name for f in fields if (f.compare if f.hash is None else f.hash)]))
    made.__frozen_shown__ = tuple(f.name for f in fields if f.repr)
    if cls.__doc__ is None:
        made.__doc__ = f"{cls.__name__}: a frozen record."
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


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def frozen(cls: type[T]) -> type[T]:
    """A frozen record class, as ``@dataclasses.dataclass(frozen=True)`` makes one."""
    return _make(cls, kw_only=False)


@dataclass_transform(frozen_default=True, kw_only_default=True,
                     field_specifiers=(field, Field))
def record(cls: type[T]) -> type[T]:
    """A frozen record class whose fields are all keyword-only."""
    return _make(cls, kw_only=True)
