"""functools' ``cache``, ``lru_cache``, ``partial`` and ``update_wrapper`` without
functools.

functools imports collections, reprlib and types (about 2 ms of a command's start
here, on every ``nsbind run`` and every call podman and containerd make of
``nsbind-oci``).  Its cache and partial are C, in ``_functools``, and functools only
wraps them: these are the same objects, made as functools makes them (the cache's
``cache_info()``, ``cache_clear()``, ``cache_parameters()`` and ``__wrapped__``
included).  The type checker is shown functools' own."""

from __future__ import annotations

from nsbind.namedtuples import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from functools import cache, lru_cache, partial, update_wrapper
    from typing import Any

    #: ``_functools._lru_cache_wrapper`` (no stub): the C cache functools wraps
    _lru_cache_wrapper: Callable[..., Any]
else:
    from _functools import _lru_cache_wrapper, partial

__all__ = ["cache", "lru_cache", "partial", "update_wrapper"]

#: what update_wrapper copies from the wrapped function (as functools.WRAPPER_ASSIGNMENTS)
_ASSIGNED = ("__module__", "__name__", "__qualname__", "__doc__", "__annotations__")


class _CacheInfo(NamedTuple):
    """A cache's counts (``functools._CacheInfo``'s fields, under its name)."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int


_CacheInfo.__name__ = _CacheInfo.__qualname__ = "CacheInfo"


def _update_wrapper(wrapper: Any, wrapped: Any) -> Any:
    """``wrapper`` looking like ``wrapped``: its name, doc, module and annotations, its
    ``__dict__`` merged in, and ``__wrapped__`` set to it."""
    for name in _ASSIGNED:
        try:
            value = getattr(wrapped, name)
        except AttributeError:
            continue
        setattr(wrapper, name, value)
    wrapper.__dict__.update(getattr(wrapped, "__dict__", {}))
    wrapper.__wrapped__ = wrapped
    return wrapper


def _lru_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize a function of hashable arguments, keeping the ``maxsize`` last used
    results (None: all of them)."""
    if callable(maxsize) and isinstance(typed, bool):  # @lru_cache without arguments
        return _lru_cache(128, typed)(maxsize)
    if isinstance(maxsize, int):
        maxsize = max(maxsize, 0)
    elif maxsize is not None:
        raise TypeError("Expected first argument to be an integer, a callable, or None")

    def decorating_function(user_function: Callable[..., Any]) -> Any:
        wrapper = _lru_cache_wrapper(user_function, maxsize, typed, _CacheInfo)
        wrapper.cache_parameters = lambda: {"maxsize": maxsize, "typed": typed}
        return _update_wrapper(wrapper, user_function)

    return decorating_function


def _cache(user_function: Callable[..., Any]) -> Any:
    """Memoize a function of hashable arguments, every result kept."""
    return _lru_cache(maxsize=None)(user_function)


if not TYPE_CHECKING:
    cache = _cache
    lru_cache = _lru_cache
    update_wrapper = _update_wrapper
