"""``typing.NamedTuple``'s class form without the typing module.

Importing typing costs a command about 3 ms here, and the spawn path's requests and
compiled filters are named tuples. ``from nsbind.namedtuples import NamedTuple`` is
typing's for the type checker and this module's at run time. A class made with it is
what typing makes: a ``collections.namedtuple`` of the class's annotated fields, in
order, with their defaults, and the class body's methods, properties and docstring on
it.  That namedtuple is made here as ``collections.namedtuple`` makes it (the
collections package costs a command's start about 3 ms): the same ``__new__``, the
same C field getters, the same methods (``tests/test_startcost.py`` compares)."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NamedTuple

    #: ``_collections._tuplegetter`` (no stub): the C descriptor of a field, by index
    _tuplegetter: Callable[[int, str], Any]
else:
    from _collections import _tuplegetter

__all__ = ["NamedTuple"]

#: what a class body may not define (as typing's)
_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                         "_field_defaults", "_make", "_replace", "_asdict", "_source"})
#: what the namedtuple keeps of its own
_SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})


def _namedtuple(typename: str, field_names: tuple[str, ...], defaults: tuple[Any, ...],
                module: str) -> Any:
    """``collections.namedtuple(typename, field_names, defaults=defaults, module=module)``
    for names that are identifiers (a class's and its annotations')."""
    for name in field_names:
        if name.startswith("_"):
            raise ValueError(f"Field names cannot start with an underscore: {name!r}")
    typename = sys.intern(typename)
    field_names = tuple(map(sys.intern, field_names))
    num_fields = len(field_names)
    arg_list = ", ".join(field_names) + ("," if num_fields == 1 else "")
    repr_fmt = "(" + ", ".join(f"{name}=%r" for name in field_names) + ")"
    tuple_new = tuple.__new__
    namespace = {"_tuple_new": tuple_new, "__builtins__": {},
                 "__name__": f"namedtuple_{typename}"}
    # the names are identifiers: the code is the class's own constructor and nothing else
    __new__ = eval(f"lambda _cls, {arg_list}: _tuple_new(_cls, ({arg_list}))", namespace)
    __new__.__name__ = "__new__"
    __new__.__doc__ = f"Create new instance of {typename}({arg_list})"
    __new__.__defaults__ = defaults

    def _make(cls: type, iterable: Any) -> Any:
        result: tuple[Any, ...] = tuple_new(cls, iterable)
        if len(result) != num_fields:
            raise TypeError(f"Expected {num_fields} arguments, got {len(result)}")
        return result

    make: Any = classmethod(_make)  # its own __doc__ copied now, as collections' (None)
    _make.__doc__ = f"Make a new {typename} object from a sequence or iterable"

    def _replace(self: Any, /, **kwds: Any) -> Any:
        result = self._make(map(kwds.pop, field_names, self))
        if kwds:
            raise ValueError(f"Got unexpected field names: {list(kwds)!r}")
        return result

    _replace.__doc__ = f"Return a new {typename} object replacing specified fields with new values"

    def __repr__(self: Any) -> str:
        "Return a nicely formatted representation string"
        return str(self.__class__.__name__ + repr_fmt % self)

    def _asdict(self: Any) -> dict[str, Any]:
        "Return a new dict which maps field names to their values."
        return dict(zip(self._fields, self, strict=True))

    def __getnewargs__(self: Any) -> tuple[Any, ...]:
        "Return self as a plain tuple.  Used by copy and pickle."
        return tuple(self)

    for method in (__new__, _make, _replace, __repr__, _asdict, __getnewargs__):
        method.__qualname__ = f"{typename}.{method.__name__}"
    class_namespace: dict[str, Any] = {
        "__doc__": f"{typename}({arg_list})", "__slots__": (), "_fields": field_names,
        "_field_defaults": dict(zip(field_names[num_fields - len(defaults):], defaults,
                                    strict=True)),
        "__new__": __new__, "_make": make, "_replace": _replace,
        "__repr__": __repr__, "_asdict": _asdict, "__getnewargs__": __getnewargs__,
        "__match_args__": field_names}
    for index, name in enumerate(field_names):
        class_namespace[name] = _tuplegetter(index, sys.intern(f"Alias for field number {index}"))
    result = type(typename, (tuple,), class_namespace)
    result.__module__ = module
    return result


class _NamedTupleMeta(type):
    def __new__(mcs, typename: str, bases: tuple[type, ...],
                namespace: dict[str, Any]) -> Any:
        if bases != (NamedTuple,):
            raise TypeError(f"{typename}: a NamedTuple class has NamedTuple as its only base")
        fields: dict[str, Any] = namespace.get("__annotations__", {})
        defaults = [name for name in fields if name in namespace]
        if defaults and list(fields)[-len(defaults):] != defaults:
            raise TypeError(f"{typename}: a field without a default follows one with a default")
        values = [namespace[name] for name in defaults]
        cls = _namedtuple(typename, tuple(fields), tuple(values), namespace["__module__"])
        cls.__annotations__ = dict(fields)
        for key, value in namespace.items():
            if key in _PROHIBITED:
                raise AttributeError(f"{typename}: cannot overwrite NamedTuple attribute {key}")
            if key not in _SPECIAL and key not in fields:
                setattr(cls, key, value)
        return cls


if not TYPE_CHECKING:
    #: the base of a named tuple class (``class Point(NamedTuple): x: int; y: int = 0``)
    NamedTuple = type.__new__(_NamedTupleMeta, "NamedTuple", (), {"__module__": __name__})
