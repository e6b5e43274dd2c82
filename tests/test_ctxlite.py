"""nsbind.ctxlite and nsbind.fnlite against contextlib and functools: every way a
``with`` block and its generator can end, run under both, with the same outcome
(what is raised, the very object, its chain; what is swallowed; what ran), and the
caches made as functools makes them."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nsbind import ctxlite, fnlite

pytestmark = pytest.mark.unprivileged

LIBS = {"contextlib": contextlib, "ctxlite": ctxlite}


class Boom(Exception):
    pass


class SubBoom(Boom):
    pass


# the generators: each logs what it did and behaves one way at its yield


def plain(log: list[str]) -> Iterator[int]:
    log.append("enter")
    yield 1
    log.append("exit")


def cleanup(log: list[str]) -> Iterator[int]:
    try:
        yield 2
    finally:
        log.append("finally")


def swallows(log: list[str]) -> Iterator[int]:
    try:
        yield 3
    except Boom as e:
        log.append(f"swallowed {e}")


def reraises(log: list[str]) -> Iterator[int]:
    try:
        yield 4
    except Boom:
        log.append("reraise")
        raise


def replaces(log: list[str]) -> Iterator[int]:
    try:
        yield 5
    except Exception as e:
        raise KeyError("replaced") from e


def never_yields(log: list[str]) -> Iterator[int]:
    log.append("no yield")
    return
    yield 0  # a generator all the same


def yields_twice(log: list[str]) -> Iterator[int]:
    yield 6
    log.append("second")
    yield 7


def yields_after_throw(log: list[str]) -> Iterator[int]:
    try:
        yield 8
    except BaseException:
        log.append("caught")
    yield 9


def stops(log: list[str]) -> Iterator[int]:
    yield 10
    raise StopIteration("from the generator")  # PEP 479: a RuntimeError


def runtime_error(log: list[str]) -> Iterator[int]:
    try:
        yield 11
    except BaseException as e:
        raise RuntimeError("wrapped") from e


GENERATORS = [plain, cleanup, swallows, reraises, replaces, never_yields, yields_twice,
              yields_after_throw, stops, runtime_error]

BLOCKS: list[BaseException | None] = [
    None, Boom("b"), SubBoom("s"), KeyError("k"), StopIteration("block"),
    RuntimeError("block"), KeyboardInterrupt(), SystemExit(3), GeneratorExit()]


def outcome(lib: Any, gen: Callable[[list[str]], Iterator[int]],
            block: BaseException | None) -> tuple[Any, ...]:
    """Run ``with lib.contextmanager(gen)(log) as v: raise block``: what came of it."""
    log: list[str] = []
    got: list[int] = []
    try:
        with lib.contextmanager(gen)(log) as value:
            got.append(value)
            if block is not None:
                raise block
    except BaseException as e:
        chain = (type(e.__cause__).__name__, type(e.__context__).__name__)
        return ("raised", type(e).__name__, str(e), e is block, chain, got, log)
    return ("returned", got, log)


@pytest.mark.parametrize(("gen", "block"), itertools.product(GENERATORS, BLOCKS),
                         ids=lambda x: getattr(x, "__name__", type(x).__name__))
def test_contextmanager_ends_a_block_as_contextlib_does(
        gen: Callable[[list[str]], Iterator[int]], block: BaseException | None) -> None:
    theirs = outcome(contextlib, gen, block)
    assert outcome(ctxlite, gen, block) == theirs


def test_contextmanager_looks_like_its_function() -> None:
    def managed(log: list[str]) -> Iterator[int]:
        """Its doc."""
        yield 1

    managed.extra = "kept"  # type: ignore[attr-defined]
    for lib in LIBS.values():
        made = lib.contextmanager(managed)
        assert made.__name__ == "managed" and made.__doc__ == "Its doc."
        assert made.__wrapped__ is managed and made.extra == "kept"
        assert made.__qualname__ == managed.__qualname__
        assert made([]).__doc__ == "Its doc."
        with made([]) as v:
            assert v == 1


@pytest.mark.parametrize("block", BLOCKS, ids=lambda x: type(x).__name__)
@pytest.mark.parametrize("types", [(Boom,), (KeyError, Boom), (), (BaseException,),
                                   (StopIteration, RuntimeError)], ids=str)
def test_suppress_swallows_what_contextlib_swallows(
        types: tuple[type[BaseException], ...], block: BaseException | None) -> None:
    def run(lib: Any) -> tuple[str, bool]:
        try:
            with lib.suppress(*types):
                if block is not None:
                    raise block
        except BaseException as e:
            return ("raised", e is block)
        return ("returned", True)

    assert run(ctxlite) == run(contextlib)


def test_nullcontext_and_closing() -> None:
    marker = object()
    for lib in LIBS.values():
        with lib.nullcontext(marker) as got:
            assert got is marker
        with lib.nullcontext() as got:
            assert got is None
        with pytest.raises(Boom), lib.nullcontext():
            raise Boom

        class Closable:
            closed = 0

            def close(self) -> None:
                self.closed += 1

        thing = Closable()
        with lib.closing(thing) as got:
            assert got is thing and thing.closed == 0
        assert thing.closed == 1
        with pytest.raises(Boom), lib.closing(thing):
            raise Boom
        assert thing.closed == 2


def _square(calls: list[int]) -> Callable[[int], int]:
    def square(n: int) -> int:
        """Square."""
        calls.append(n)
        return n * n

    return square


@pytest.mark.parametrize("maxsize", [None, 0, 1, 2, 128, -5])
def test_lru_cache_is_functools_own(maxsize: int | None) -> None:
    made = {}
    for name, lib in (("functools", functools), ("fnlite", fnlite)):
        calls: list[int] = []
        square = _square(calls)
        cached = lib.lru_cache(maxsize=maxsize)(square)
        results = [cached(n) for n in (1, 2, 1, 3, 1, 2, 2)]
        made[name] = (results, calls, tuple(cached.cache_info()),
                      type(cached.cache_info()).__name__, cached.cache_parameters(),
                      cached.__name__, cached.__doc__, cached.__wrapped__ is square,
                      type(cached).__name__)
        cached.cache_clear()
        assert tuple(cached.cache_info())[:2] == (0, 0) and cached.cache_info().currsize == 0
    assert made["fnlite"] == made["functools"]


def test_cache_forms_and_methods() -> None:
    libs: list[Any] = [functools, fnlite]
    for lib in libs:
        one = lib.cache(list)
        assert one() is one() and one.cache_info().hits == 1
        assert one.cache_parameters() == {"maxsize": None, "typed": False}
        bare = lib.lru_cache(abs)  # the decorator's bare form
        assert bare(-1) == 1 and bare.cache_parameters()["maxsize"] == 128

        class Holder:
            def pair(self, n: int) -> tuple[Holder, int]:
                return self, n

            method = lib.lru_cache(maxsize=4)(pair)

        h = Holder()
        assert h.method(2) == (h, 2) and Holder.method.cache_info().misses == 1
        with pytest.raises(TypeError):
            lib.lru_cache("big")
    assert fnlite.partial is functools.partial
    assert fnlite.partial(int, base=16)("ff") == 255
