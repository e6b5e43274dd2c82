"""contextlib's ``suppress``, ``nullcontext``, ``closing`` and ``contextmanager`` without
contextlib.

contextlib imports functools, collections and types; with them a command's start
paid about 3 ms here, on every ``nsbind run`` and every call podman and containerd
make of ``nsbind-oci``.  The type checker is shown contextlib's (as
:mod:`nsbind.namedtuples` shows typing's NamedTuple); at run time these behave as
Python 3.11's for ``with`` blocks (``tests/test_ctxlite.py`` holds them to it): what a
block raises, what is suppressed, and the RuntimeErrors of a generator that does not
yield once.  Not kept: using one as a decorator, and the async forms."""

from __future__ import annotations

from nsbind.fnlite import update_wrapper

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import closing, contextmanager, nullcontext, suppress
    from types import TracebackType
    from typing import Any

__all__ = ["closing", "contextmanager", "nullcontext", "suppress"]


class _Suppress:
    """``with suppress(E1, E2): ...``: the block's exception is swallowed when it is an
    instance of one of the types."""

    __slots__ = ("_exceptions",)

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self._exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        return typ is not None and issubclass(typ, self._exceptions)


class _NullContext:
    """``with nullcontext(x) as y``: y is x; nothing else happens."""

    __slots__ = ("enter_result",)

    def __init__(self, enter_result: Any = None) -> None:
        self.enter_result = enter_result

    def __enter__(self) -> Any:
        return self.enter_result

    def __exit__(self, *excinfo: object) -> None:
        return None


class _Closing:
    """``with closing(thing) as t``: t is thing; ``thing.close()`` when the block ends."""

    __slots__ = ("thing",)

    def __init__(self, thing: Any) -> None:
        self.thing = thing

    def __enter__(self) -> Any:
        return self.thing

    def __exit__(self, *excinfo: object) -> None:
        self.thing.close()


class _GeneratorContextManager:
    """One ``with`` of a :func:`contextmanager` function: its generator runs to the
    ``yield`` on entering and on from there on leaving, given the block's exception."""

    def __init__(self, gen: Any, doc: str | None) -> None:
        self.gen = gen
        self.__doc__ = doc

    def __enter__(self) -> Any:
        try:
            return next(self.gen)
        except StopIteration:
            raise RuntimeError("generator didn't yield") from None

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        if typ is None:
            try:
                next(self.gen)
            except StopIteration:
                return False
            try:
                raise RuntimeError("generator didn't stop")
            finally:
                self.gen.close()
        if value is None:  # an exception type alone: made, to know it when it comes back
            value = typ()
        try:
            self.gen.throw(typ, value, traceback)
        except StopIteration as exc:
            # swallowed unless it is the block's own StopIteration coming back
            return exc is not value
        except RuntimeError as exc:
            if exc is value:
                exc.__traceback__ = traceback
                return False
            # the block's StopIteration, turned into a RuntimeError by the generator
            if isinstance(value, StopIteration) and exc.__cause__ is value:
                value.__traceback__ = traceback
                return False
            raise
        except BaseException as exc:
            if exc is not value:  # the generator raised something else: that goes on
                raise
            exc.__traceback__ = traceback
            return False
        try:
            raise RuntimeError("generator didn't stop after throw()")
        finally:
            self.gen.close()


def _contextmanager(func: Any) -> Any:
    """The generator function ``func`` as a context manager factory: the code before its
    single ``yield`` runs on entering (the yielded value is the ``as`` target), the code
    after on leaving; the block's exception is raised at the ``yield``."""

    doc = getattr(func, "__doc__", None)

    def helper(*args: Any, **kwds: Any) -> _GeneratorContextManager:
        return _GeneratorContextManager(func(*args, **kwds), doc)

    return update_wrapper(helper, func)


if not TYPE_CHECKING:
    suppress = _Suppress
    nullcontext = _NullContext
    closing = _Closing
    contextmanager = _contextmanager
