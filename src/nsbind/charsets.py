"""Words of a few character sets, checked without the regular expression engine.

Most names nsbind checks on a start path are one shape: a first character from one set,
then characters from another, perhaps a last one from a third, within a length
(``[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}``).  Compiling such a pattern runs re's compiler,
written in Python (0.1 to 0.3 ms a pattern here), and importing re costs a command a few
milliseconds more; a :class:`Word` checks the same thing with set lookups.  Sets are
ASCII: a ``[0-9]`` here is not re's ``\\d``, which takes every Unicode digit.
"""

from __future__ import annotations

__all__ = ["ALNUM", "DIGITS", "HEX", "LOWER", "UPPER", "Word"]

DIGITS = "0123456789"
LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = LOWER.upper()
ALNUM = DIGITS + LOWER + UPPER
HEX = DIGITS + "abcdef"  #: lowercase hex digits


class Word:
    """``first`` then ``rest`` characters, ``last`` last (when given), ``min_len`` to
    ``max_len`` long in all (``max_len`` None: unbounded), after a literal ``prefix``:
    the regular expression ``prefix[first][rest]*[last]`` with its length bound."""

    __slots__ = ("first", "last", "max_len", "min_len", "prefix", "rest")

    def __init__(self, first: str, rest: str = "", *, last: str | None = None,
                 min_len: int = 1, max_len: int | None = None, prefix: str = "") -> None:
        self.first = frozenset(first)
        self.rest = frozenset(rest)
        self.last = frozenset(last) if last is not None else None
        self.min_len = max(min_len, 1)
        self.max_len = max_len
        self.prefix = prefix

    def matches(self, text: str) -> bool:
        """Whether ``text`` is such a word, whole."""
        if not text.startswith(self.prefix):
            return False
        word = text[len(self.prefix):]
        if len(word) < self.min_len or (self.max_len is not None and len(word) > self.max_len):
            return False
        if word[0] not in self.first:
            return False
        if self.last is not None and len(word) > 1:
            if word[-1] not in self.last:
                return False
            word = word[:-1]
        return self.rest.issuperset(word[1:])

