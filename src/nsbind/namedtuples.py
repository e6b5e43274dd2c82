"""``typing.NamedTuple``'s class form without the typing module.

Importing typing costs a command about 3 ms here, and the spawn path's requests and
compiled filters are named tuples. ``from nsbind.namedtuples import NamedTuple`` is
typing's for the type checker and this module's at run time. A class made with it is
what typing makes: a ``collections.namedtuple`` of the class's annotated fields, in
order, with their defaults, and the class body's methods, properties and docstring on
it."""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

__all__ = ["NamedTuple"]

#: what a class body may not define (as typing's)
_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                         "_field_defaults", "_make", "_replace", "_asdict", "_source"})
#: what the namedtuple keeps of its own
_SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})


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
        cls = collections.namedtuple(  # type: ignore[misc]  # the name is the class's
            typename, fields, defaults=values, module=namespace["__module__"])  # type: ignore[misc]
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
