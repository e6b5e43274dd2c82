"""A layer's bytes as one stream: decompressed (gzip, zstd, none; no external program),
hashed on both sides (the blob digest and the diff_id) and capped in size, in one pass
(:mod:`nsbind.image.tarreader` reads the tar entries in it).

With ``threaded=True`` a helper thread reads, hashes and decompresses ahead (zlib,
zstd and sha256 release the GIL), so that work overlaps with the caller's
parsing and writing; at most ``_AHEAD`` chunks wait in between.

Compressed data must end where its last gzip member or zstd frame ends: more
members or frames may follow (concatenated gzip, zstd's skippable frames), and
zero bytes (padding), but anything else after them is refused, and so is data
that stops inside a member or a frame (a truncated blob).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Protocol

from nsbind.ctxlite import suppress
from nsbind.image.model import MAX_LAYER_BYTES, ImageError, Layer

__all__ = ["LayerStream", "Readable", "decompressed", "verify_layer"]

_CHUNK = 1 << 20
_AHEAD = 8


class Readable(Protocol):
    """Anything with ``read(n)`` returning bytes (a file, a hashing wrapper)."""

    def read(self, n: int = -1, /) -> bytes: ...


def decompressed(stream: Readable, compression: str | None,
                 label: str = "layer") -> Iterator[bytes]:
    """The uncompressed bytes of a layer stream, in chunks; no external program.
    Corrupt, truncated or trailing data is an ImageError naming ``label``."""
    if compression is None:
        while data := stream.read(_CHUNK):
            yield data
    elif compression == "gzip":
        try:
            yield from _gunzip(stream, label)
        except zlib.error as exc:
            raise ImageError(f"{label}: the gzip data is corrupt: {exc}") from None
    elif compression == "zstd":
        yield from _unzstd(stream, label)
    else:
        raise ImageError(f"{label}: unknown layer compression {compression!r}")


def _gunzip(stream: Readable, label: str) -> Iterator[bytes]:
    """gzip (also concatenated members) in chunks of at most _CHUNK bytes: a small
    input that expands a thousandfold never sits in memory at once."""
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header
    pending = b""
    started = False  # the current member has had input
    while True:
        if not pending:
            pending = stream.read(_CHUNK)
            if not pending:
                break
        started = True
        out = d.decompress(pending, _CHUNK)
        pending = d.unconsumed_tail
        if out:
            yield out
        if d.eof:  # the next member, zero padding, or garbage
            pending = d.unused_data + pending
            while len(pending) < 2 and (more := stream.read(_CHUNK)):
                pending += more
            if pending[:2] == b"\x1f\x8b":
                d, started = zlib.decompressobj(wbits=47), False
                continue
            _only_zeros(stream, pending, label, "gzip")
            return
    if started and not d.eof:
        raise ImageError(f"{label}: the gzip data ends inside a member (truncated)")
    yield d.flush()


def _only_zeros(stream: Readable, pending: bytes, label: str, what: str) -> None:
    """Read ``stream`` to its end: ImageError unless it (and ``pending``) is all zero."""
    while pending:
        if pending.count(0) != len(pending):
            raise ImageError(f"{label}: trailing data after the {what} data: refused")
        pending = stream.read(_CHUNK)


def _unzstd(stream: Readable, label: str) -> Iterator[bytes]:
    try:
        import zstandard
    except ImportError as exc:
        raise ImageError("a zstd layer needs the 'zstandard' package") from exc
    frames = _ZstdFrames(stream, label)
    reader = zstandard.ZstdDecompressor().stream_reader(
        frames, read_across_frames=True)  # type: ignore[arg-type]
    try:
        while data := reader.read(_CHUNK):
            yield data
    except zstandard.ZstdError as exc:
        raise ImageError(f"{label}: the zstd data is corrupt: {exc}") from None
    frames.finish()


class _ZstdFrames:
    """The stored bytes of a zstd layer on their way to the decompressor, walked frame
    by frame (headers and block sizes only): so that a stream that stops inside a
    frame is told from a complete one, and zero padding after the last frame is
    checked and kept from the decompressor (which would call it a bad frame)."""

    def __init__(self, stream: Readable, label: str) -> None:
        self._stream = stream
        self._label = label
        self._skip = 0       # payload bytes to pass
        self._want = 4       # header bytes the current state needs
        self._head = b""
        self._state = "magic"
        self._checksum = False
        self._zeros = False  # past the last frame: only zeros may follow

    def read(self, n: int = -1, /) -> bytes:
        if self._zeros:
            _only_zeros(self._stream, b"", self._label, "zstd")
            return b""
        data = self._stream.read(n)
        used = self._feed(data)
        if self._zeros:
            _only_zeros(self._stream, data[used:], self._label, "zstd")
            return data[:used]
        return data

    def finish(self) -> None:
        if not self._zeros and (self._state != "magic" or self._head or self._skip):
            raise ImageError(f"{self._label}: the zstd data ends inside a frame (truncated)")

    def _feed(self, data: bytes) -> int:
        """Walk ``data``; the number of bytes that belong to frames."""
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            if self._state == "magic" and not self._head and data[i] == 0:
                self._zeros = True
                return i
            step = min(self._want - len(self._head), n - i)
            self._head += data[i:i + step]
            i += step
            if len(self._head) == self._want:
                head, self._head = self._head, b""
                self._step(head)
        return n

    def _step(self, head: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = int.from_bytes(head, "little")
            if magic == 0xFD2FB528:
                self._state, self._want = "descriptor", 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._want = "skippable", 4
            else:
                raise ImageError(f"{self._label}: trailing data after the zstd data (or not "
                                 "zstd data): refused")
        elif state == "skippable":
            self._skip = int.from_bytes(head, "little")
            self._state, self._want = "magic", 4
        elif state == "descriptor":
            fhd = head[0]
            single = bool(fhd & 0x20)
            fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            self._checksum = bool(fhd & 0x04)
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            self._state, self._want = "block", 3
        elif state == "block":
            value = int.from_bytes(head, "little")
            kind, size = (value >> 1) & 3, value >> 3
            self._skip = 1 if kind == 1 else size
            if value & 1:  # the last block
                self._skip += 4 if self._checksum else 0
                self._state, self._want = "magic", 4


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
        self._chunks: Iterator[bytes] = decompressed(_RawSide(self), compression, label)
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
        pos = self._pos
        if 0 <= n <= len(self._buf) - pos:  # the common case: one slice of the chunk
            self._pos = pos + n
            return self._buf[pos:pos + n]
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
                with suppress(queue.Empty):
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
