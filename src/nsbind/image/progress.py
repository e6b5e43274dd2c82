"""Progress bars for long image work: bytes and layers on a terminal, silent otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from nsbind.ctxlite import contextmanager

__all__ = ["Bars", "progress"]


class Bars:
    """Two bars (stored bytes read, layers done) on ``out``, or nothing when it is None."""

    def __init__(self, total_bytes: int | None, total_layers: int, out: Any) -> None:
        self._bytes: Any = None
        self._layers: Any = None
        if out is not None:
            from tqdm import tqdm  # only when a bar is shown

            # no monitor thread: a threaded process could not clone3 or enter a
            # user namespace afterwards
            tqdm.monitor_interval = 0
            self._layers = tqdm(total=total_layers, unit="layer", desc="layers", position=1,
                                leave=False, file=out)
            self._bytes = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                               desc="bytes", position=0, leave=False, file=out)

    def on_bytes(self, n: int) -> None:
        if self._bytes is not None:
            self._bytes.update(n)

    def on_layer(self, *_: object) -> None:
        if self._layers is not None:
            self._layers.update(1)

    def close(self) -> None:
        for bar in (self._bytes, self._layers):
            if bar is not None:
                bar.close()


@contextmanager
def progress(total_bytes: int | None, total_layers: int, *, quiet: bool = False,
             stream: Any = None) -> Iterator[Bars]:
    """Bars on ``stream`` (stderr) when it is a terminal and not ``quiet``."""
    out = stream if stream is not None else sys.stderr
    enabled = not quiet and bool(getattr(out, "isatty", lambda: False)())
    bars = Bars(total_bytes, total_layers, out if enabled else None)
    try:
        yield bars
    finally:
        bars.close()

