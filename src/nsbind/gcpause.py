"""The cyclic garbage collector, held off while a command starts.

CPython runs a collection every 700 net allocations.  A command's start (some 140
modules imported: their classes, functions and tables; a spec parsed; a plan built)
runs about thirty, some 4 % of an ``nsbind run --rm IMG true`` here, and they find next
to nothing: the start path makes few reference cycles, and reference counting frees the
rest.  The launchers pause the collector (``gc.disable()``, before their first import:
nsbind is not importable yet); a command resumes
it (:func:`resume`) as soon as it settles into something long (waiting for a container,
monitoring one), and at once when it is not on a start path
(each command line names its start commands).  A process that exits
collects nothing anyway (:mod:`nsbind.fastexit`).

When a launcher paused it (it says so: :func:`launcher_paused`), what the start made is
frozen as the collector resumes (``gc.freeze``: moved to the permanent generation, which
no collection traverses).  Else the first collection after the pause walks every object
the start left in the youngest generation: some 11,000 in an ``nsbind run``, 2.5 to
3 ms, while its container runs.  The start's few cycles (seven objects in a run) are
never collected then; a process that lives on (a monitor) collects them first
(``resume(collect=True)``).  A program that paused the collector itself gets it back
as it was, nothing frozen.
"""

from __future__ import annotations

import gc

__all__ = ["launcher_paused", "resume", "resume_unless"]

_launcher_paused = False


def launcher_paused() -> None:
    """Note that a launcher paused the collector (called by the launchers only, once
    nsbind is importable)."""
    global _launcher_paused
    _launcher_paused = not gc.isenabled()


def resume(*, collect: bool = False) -> None:
    """Run automatic collections again (idempotent).  When a launcher paused them, what
    exists now is frozen first, after one full collection with ``collect``."""
    global _launcher_paused
    if _launcher_paused:
        _launcher_paused = False
        if collect:
            gc.collect()
        gc.freeze()
    gc.enable()


def resume_unless(command: str | None, start_commands: tuple[str, ...]) -> None:
    """:func:`resume` unless ``command`` is one of the start path's (those resume once
    they wait)."""
    if command not in start_commands:
        resume()
