"""A layer's bytes as one stream: decompressed (gzip, zstd, none; no external program),
hashed on both sides (the blob digest and the diff_id) and capped in size, in one pass.

With ``threaded=True`` a helper thread reads, hashes and decompresses ahead (zlib,
zstd and sha256 release the GIL), so that work overlaps with the caller's
parsing and writing; at most ``_AHEAD`` chunks wait in between.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import IO, Protocol

from nsbind.image.model import MAX_LAYER_BYTES, ImageError, Layer

__all__ = ["LayerStream", "Readable", "decompressed", "verify_layer"]

_CHUNK = 1 << 20
_AHEAD = 8


class Readable(Protocol):
    """Anything with ``read(n)`` returning bytes (a file, a hashing wrapper)."""

    def read(self, n: int = -1, /) -> bytes: ...


def decompressed(stream: Readable, compression: str | None) -> Iterator[bytes]:
    """The uncompressed bytes of a layer stream, in chunks; no external program."""
    if compression is None:
        while data := stream.read(_CHUNK):
            yield data
    elif compression == "gzip":
        yield from _gunzip(stream)
    elif compression == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            raise ImageError("a zstd layer needs the 'zstandard' package") from exc
        reader = zstandard.ZstdDecompressor().stream_reader(stream)  # type: ignore[arg-type]
        while data := reader.read(_CHUNK):
            yield data
    else:
        raise ImageError(f"unknown layer compression {compression!r}")


def _gunzip(stream: Readable) -> Iterator[bytes]:
    """gzip (also concatenated members) in chunks of at most _CHUNK bytes: a small
    input that expands a thousandfold never sits in memory at once."""
    import zlib

    d = zlib.decompressobj(wbits=47)  # gzip or zlib header
    pending = b""
    while True:
        if not pending:
            pending = stream.read(_CHUNK)
            if not pending:
                break
        out = d.decompress(pending, _CHUNK)
        pending = d.unconsumed_tail
        if out:
            yield out
        if d.eof:  # the next member, if any
            pending = d.unused_data + pending
            d = zlib.decompressobj(wbits=47)
    yield d.flush()


class _RawSide:
    """What ``decompressed`` reads from: the stored bytes, hashed as they pass."""

    def __init__(self, stream: LayerStream) -> None:
        self._stream = stream

    def read(self, n: int = -1, /) -> bytes:
        return self._stream.read_raw(n)


_END = object()


class LayerStream:
    """A read()-able view of decompressed chunks that hashes both sides and caps the size.

    Use it as a context manager (or call :meth:`close`) so a helper thread ends."""

    def __init__(self, raw: IO[bytes], compression: str | None, max_bytes: int,
                 on_bytes: Callable[[int], None] | None, label: str, *,
                 threaded: bool = False) -> None:
        self.outer = hashlib.sha256()
        self.inner = hashlib.sha256()
        self.outer_size = 0
        self.size = 0
        self._raw = raw
        self._on_bytes = on_bytes
        self._max = max_bytes
        self._label = label
        self._chunks: Iterator[bytes] = decompressed(_RawSide(self), compression)
        self._buf = b""
        self._pos = 0
        self._queue: queue.Queue[object] | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=_AHEAD)
            self._thread = threading.Thread(target=self._produce, name=f"nsbind {label}",
                                            daemon=True)
            self._thread.start()

    def read_raw(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.outer.update(data)
        self.outer_size += len(data)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data

    def _next(self) -> bytes | None:
        """The next decompressed chunk (hashed, size-checked), or None at the end."""
        for chunk in self._chunks:
            if not chunk:
                continue
            self.inner.update(chunk)
            self.size += len(chunk)
            if self.size > self._max:
                raise ImageError(f"{self._label}: uncompressed layer passes {self._max} "
                                 "bytes (a decompression bomb?): refused")
            return chunk
        return None

    def _produce(self) -> None:
        assert self._queue is not None
        item: object
        try:
            while not self._stop:
                item = self._next()
                if item is None:
                    break
                self._queue.put(item)
            item = _END
        except BaseException as exc:  # handed to the reader
            item = exc
        self._queue.put(item)

    def _take(self) -> bytes | None:
        if self._queue is None:
            return self._next()
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)  # later reads see the end too
            return None
        if isinstance(item, BaseException):
            self._queue.put(_END)
            raise item
        assert isinstance(item, bytes)
        return item

    def read(self, n: int = -1) -> bytes:
        out = []
        want = n if n >= 0 else 1 << 62
        while want > 0:
            if self._pos >= len(self._buf):
                chunk = self._take()
                if chunk is None:
                    break
                self._buf, self._pos = chunk, 0
                continue
            piece = self._buf[self._pos:self._pos + want]
            self._pos += len(piece)
            want -= len(piece)
            out.append(piece)
        return b"".join(out)

    def drain(self) -> None:
        """Read to the end (the tar's trailing padding counts in the digests)."""
        while self.read(_CHUNK):
            pass

    def close(self) -> None:
        """Stop and join the helper thread, if any."""
        if self._thread is not None and self._queue is not None:
            self._stop = True
            while self._thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.05)  # unblock a full queue
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, layer: Layer) -> None:
        """ImageError unless what streamed by matches the layer's digest, size, diff_id."""
        got = f"sha256:{self.outer.hexdigest()}"
        if layer.digest is not None and got != layer.digest:
            raise ImageError(f"{self._label}: blob digest mismatch: expected {layer.digest}, "
                             f"got {got}")
        if layer.size is not None and self.outer_size != layer.size:
            raise ImageError(f"{self._label}: blob size mismatch: expected {layer.size}, "
                             f"got {self.outer_size}")
        diff = f"sha256:{self.inner.hexdigest()}"
        if diff != layer.diff_id:
            raise ImageError(f"{self._label}: diff_id mismatch: expected {layer.diff_id}, "
                             f"got {diff}")


def verify_layer(layer: Layer, label: str, max_bytes: int = MAX_LAYER_BYTES) -> None:
    """Check a layer's blob digest/size and its uncompressed diff_id (one streaming pass)."""
    with layer.open() as raw, LayerStream(raw, layer.compression, max_bytes, None, label) as s:
        s.drain()
    s.check(layer)
