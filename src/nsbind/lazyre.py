"""Regular expressions compiled on their first use.

``re.compile`` runs the standard library's compiler, written in Python: 0.1 to 0.3 ms a
pattern here.  nsbind's validators hold some forty patterns; compiled when their modules
are imported, they cost every command that imports them about 10 ms, though a command
uses a few.  A :class:`LazyPattern` is compiled by the first call that needs it (and re
is imported then: a light runtime command imports neither re nor enum)."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see nsbind.lazyimport
if TYPE_CHECKING:
    import re

__all__ = ["IGNORECASE", "LazyPattern"]

#: re's flag, without importing re (its value is the regular expression engine's,
#: ``_sre``'s, and fixed)
IGNORECASE = 2  # re.IGNORECASE


class LazyPattern:
    """A ``re.Pattern[str]`` compiled on first use: ``fullmatch``, ``match`` and
    ``sub`` as the compiled pattern's."""

    __slots__ = ("_compiled", "flags", "pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None

    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern (compiled now, on the first call)."""
        compiled = self._compiled
        if compiled is None:
            import re

            compiled = self._compiled = re.compile(self.pattern, self.flags)
        return compiled

    def fullmatch(self, string: str) -> re.Match[str] | None:
        """``string`` matched whole, or None."""
        return self.compiled().fullmatch(string)

    def match(self, string: str) -> re.Match[str] | None:
        """A match at the start of ``string``, or None."""
        return self.compiled().match(string)

    def sub(self, repl: str, string: str) -> str:
        """``string`` with every match replaced by ``repl``."""
        return self.compiled().sub(repl, string)

    def __repr__(self) -> str:
        return f"LazyPattern({self.pattern!r})"
