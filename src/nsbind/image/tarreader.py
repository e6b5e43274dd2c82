"""The members of a layer tar, read from a stream and strictly checked (no tarfile:
its stream mode keeps every member in memory, reads extended headers of any size
whole, expands sparse files' holes unaccounted and lets malformed fields through).

ustar, GNU and PAX headers: long names and links, base-256 numbers, PAX records
(path, linkpath, size, uid, gid, mtime, SCHILY/LIBARCHIVE xattrs), and the four GNU
sparse formats (the old 'S' type, PAX 0.0, 0.1 and 1.0), whose holes are skipped, not
read: :meth:`TarReader.data` gives (offset, chunk) pairs.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import urllib.parse

from nsbind.idmap import check_id
from nsbind.image.model import ImageError
from nsbind.image.stream import Readable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_DEV_MAJOR", "MAX_DEV_MINOR", "MAX_META_BYTES", "MAX_SPARSE_REGIONS",
           "TarEntry", "TarReader"]

_CHUNK = 1 << 20
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
#: the largest PAX header or GNU long name/link (Go's archive/tar has the same limit)
MAX_META_BYTES = 1 << 20
#: the most data regions one sparse member may have
MAX_SPARSE_REGIONS = 1 << 16
_MAX_NS = (1 << 63) - 1  # what utimensat takes
_KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"S": "file", b"1": "hardlink",
          b"2": "symlink", b"3": "chr", b"4": "blk", b"5": "dir", b"6": "fifo"}
_META = (b"x", b"g", b"L", b"K")
_INT = re.compile(rb"-?[0-9]{1,30}\Z")
_TIME = re.compile(rb"(-?)([0-9]{1,30})(?:\.([0-9]*))?\Z")
_XATTR_PREFIXES = (b"SCHILY.xattr.", b"LIBARCHIVE.xattr.")
_XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.", b"system.")
MAX_DEV_MAJOR = (1 << 12) - 1   # what the kernel's dev_t holds
MAX_DEV_MINOR = (1 << 20) - 1


@dataclasses.dataclass(slots=True)
class TarEntry:
    """One member of a layer tar, its extended headers applied and checked."""

    name: str            # as in the archive (os.fsdecode of its bytes)
    kind: str            # file, dir, symlink, hardlink, chr, blk, fifo
    mode: int            # permission bits (0o7777)
    uid: int
    gid: int
    mtime_ns: int
    size: int            # of the file once written (a sparse file's, holes included)
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    sparse: tuple[tuple[int, int], ...] | None = None  # data regions (offset, length)


class _Malformed(ImageError):
    """A field that does not parse: TarReader turns it into an ImageError naming the
    member (so one that ever escaped would still be an ImageError)."""


def _nts(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _number(field: bytes, what: str) -> int:
    """A numeric header field: octal text, or GNU base-256 (negative too)."""
    if field and field[0] & 0x80:
        bits = 8 * len(field) - 1
        value = int.from_bytes(field, "big") & ((1 << bits) - 1)
        return value - (1 << bits) if field[0] & 0x40 else value
    text = field.strip(b" \0")
    if text.strip(b"01234567"):
        raise _Malformed(f"its {what} field {field!r} is not a number")
    return int(text, 8) if text else 0


def _decimal(value: bytes, what: str) -> int:
    if not _INT.match(value):
        raise _Malformed(f"its PAX {what} {value!r} is not a decimal number")
    return int(value)


def _time_ns(value: bytes) -> int:
    """A PAX time ("1600000000.5") in nanoseconds, exactly (no float)."""
    match = _TIME.match(value)
    if not match:
        raise _Malformed(f"its PAX mtime {value!r} is not a decimal time")
    sign, whole, frac = match.groups()
    ns = int(whole) * 10**9 + int(((frac or b"") + b"000000000")[:9])
    return -ns if sign else ns


def _pax_records(data: bytes) -> list[tuple[bytes, bytes]]:
    """The ``LEN key=value\\n`` records of a PAX header, in order (NUL padding at the end
    is allowed)."""
    out = []
    pos, end = 0, len(data)
    while pos < end:
        if data.count(0, pos) == end - pos:
            break
        space = data.find(b" ", pos, min(end, pos + 24))
        length = data[pos:space]
        if space < 0 or not length.isdigit():
            raise _Malformed(f"a PAX record at byte {pos} has no length")
        stop = pos + int(length)
        if stop <= space + 1 or stop > end or data[stop - 1] != 0x0A:
            raise _Malformed(f"a PAX record at byte {pos} has a wrong length")
        key, eq, value = data[space + 1:stop - 1].partition(b"=")
        if not eq or not key:
            raise _Malformed(f"a PAX record at byte {pos} has no key")
        out.append((key, value))
        pos = stop
    return out


def _xattrs(records: dict[bytes, bytes]) -> tuple[tuple[bytes, bytes], ...]:
    """Extended attributes of SCHILY.xattr.NAME=raw and LIBARCHIVE.xattr.%-NAME=base64
    records (the SCHILY one wins when both name one attribute); names are checked."""
    found: dict[bytes, bytes] = {}
    for key, value in records.items():
        if key.startswith(b"SCHILY.xattr."):
            name = key[len(b"SCHILY.xattr."):]
        elif key.startswith(b"LIBARCHIVE.xattr."):
            name = urllib.parse.unquote_to_bytes(key[len(b"LIBARCHIVE.xattr."):])
            if b"SCHILY.xattr." + name in records:
                continue
            try:
                value = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
            except binascii.Error:
                raise _Malformed(f"its xattr {name!r} is not base64") from None
        else:
            continue
        ns = next((p for p in _XATTR_NAMESPACES if name.startswith(p)), None)
        if ns is None or len(name) == len(ns) or b"\0" in name or len(name) > 255:
            raise _Malformed(f"an xattr name the kernel refuses: {name!r} (one of "
                             "user. trusted. security. system., then 1-255 bytes, no NUL)")
        if len(value) > 65536:
            raise _Malformed(f"its xattr {name!r} has {len(value)} bytes (at most 65536)")
        found[name] = value
    return tuple(found.items())


def _check_regions(regions: list[tuple[int, int]], realsize: int, stored: int) -> None:
    if len(regions) > MAX_SPARSE_REGIONS:
        raise _Malformed(f"a sparse map of more than {MAX_SPARSE_REGIONS} regions")
    end = total = 0
    for offset, length in regions:
        if offset < end or length < 0:
            raise _Malformed("a sparse map with regions out of order or overlapping")
        end = offset + length
        total += length
    if end > realsize or realsize < 0:
        raise _Malformed(f"a sparse map past the file's size {realsize}")
    if total != stored:
        raise _Malformed(f"a sparse map of {total} bytes for {stored} bytes of data")


class TarReader:
    """The members of an uncompressed tar stream, strictly checked: ustar, GNU and PAX
    headers (long names, base-256 numbers, xattrs, the four GNU sparse formats).

    Anything malformed is an :class:`ImageError` naming the member: a bad checksum or
    number, a time, id, device number or size out of range, a NUL in a name, a bad xattr
    name, a sparse map that disagrees with the data, data on an entry that has none, an
    extended header over :data:`MAX_META_BYTES`, and a stream that ends early (a tar
    ends with a zero block; what follows it is not read)."""

    def __init__(self, stream: Readable, label: str) -> None:
        self._stream = stream
        self.label = label
        self._left = 0                    # data and padding of the current member unread
        self._entry: TarEntry | None = None
        self._last = "the start"          # for messages about what follows a member

    def __iter__(self) -> Iterator[TarEntry]:
        while (entry := self.next()) is not None:
            yield entry

    def bad(self, name: str, why: str) -> ImageError:
        return ImageError(f"{self.label}: malformed tar member {name!r}: {why}")

    def _read(self, n: int, name: str) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise self.bad(name, "the archive ends inside it (truncated)")
        return data

    def _skip(self, n: int, name: str) -> None:
        while n > 0:
            step = min(n, _CHUNK)
            self._read(step, name)
            n -= step

    def data(self) -> Iterator[tuple[int, bytes]]:
        """The current file's data as (offset, chunk) pairs, chunks of at most 1 MiB,
        offsets rising (a sparse file's holes are skipped)."""
        entry = self._entry
        assert entry is not None and entry.kind == "file"
        regions = entry.sparse if entry.sparse is not None else ((0, entry.size),)
        for offset, length in regions:
            while length > 0:
                step = min(length, _CHUNK)
                chunk = self._read(step, entry.name)
                self._left -= step
                yield offset, chunk
                offset += step
                length -= step

    def next(self) -> TarEntry | None:
        """The next member (its data unread), or None at the end of the archive."""
        if self._left:
            self._skip(self._left, self._last)
            self._left = 0
        self._entry = None
        pax: dict[bytes, bytes] = {}
        order: list[tuple[bytes, bytes]] = []
        names: dict[bytes, bytes] = {}
        while True:
            block = self._stream.read(_BLOCK)
            if len(block) < _BLOCK:
                where = "ends without its end-of-archive block" if not block else \
                        "ends inside a header"
                raise ImageError(f"{self.label}: the archive {where} after "
                                 f"{self._last} (truncated)")
            if block == _ZERO_BLOCK:
                if pax or names:
                    raise ImageError(f"{self.label}: an extended header after {self._last} "
                                     "has no member")
                self._end()
                return None
            raw_name = _nts(block[:100])
            self._check(block, raw_name)
            flag = block[156:157]
            if flag not in _META:
                self._entry = self._member(block, raw_name, pax, order, names)
                self._last = repr(self._entry.name)
                return self._entry
            shown = os.fsdecode(raw_name)
            try:
                size = _number(block[124:136], "size")
                if not 0 <= size <= MAX_META_BYTES:
                    raise _Malformed(f"an extended header of {size} bytes (at most "
                                     f"{MAX_META_BYTES})")
                data = self._read(size, shown)
                self._skip(-size % _BLOCK, shown)
                if flag in (b"x", b"g"):
                    records = _pax_records(data)
                    if flag == b"x":  # a global header ('g') is checked, not used
                        order, pax = records, dict(records)
                else:
                    names[flag] = _nts(data)
            except _Malformed as exc:
                raise self.bad(shown, str(exc)) from None

    def _end(self) -> None:
        """After the first zero block: a second one, or the end of the stream."""
        second = self._stream.read(_BLOCK)
        if second.count(0) != len(second):
            raise ImageError(f"{self.label}: data after the end-of-archive block that "
                             f"follows {self._last}")

    def _check(self, block: bytes, raw_name: bytes) -> None:
        try:
            want = _number(block[148:156], "checksum")
        except _Malformed:
            want = -1
        unsigned = sum(block) - sum(block[148:156]) + 256
        if want == unsigned:
            return
        signed = unsigned - 256 * sum(1 for i, b in enumerate(block)
                                      if b >= 128 and not 148 <= i < 156)
        if want != signed:
            raise ImageError(f"{self.label}: the header after {self._last} (name "
                             f"{raw_name[:100]!r}) is not a tar header (checksum mismatch)")

    def _member(self, block: bytes, raw_name: bytes, pax: dict[bytes, bytes],
                order: list[tuple[bytes, bytes]], names: dict[bytes, bytes]) -> TarEntry:
        flag = block[156:157]
        if block[257:263] == b"ustar\0" and (prefix := _nts(block[345:500])):
            raw_name = prefix + b"/" + raw_name  # POSIX ustar's name prefix
        raw_name = pax.get(b"GNU.sparse.name", pax.get(b"path", names.get(b"L", raw_name)))
        name = os.fsdecode(raw_name)
        try:
            if b"\0" in raw_name:
                raise _Malformed("a NUL byte in its name")
            kind = _KINDS.get(flag)
            if kind is None:
                raise _Malformed(f"unsupported tar entry type {flag!r}")
            if flag == b"\0" and raw_name.endswith(b"/"):
                kind = "dir"  # an old (v7) directory
            entry = self._fields(block, name, kind, pax, names)
            stored = _number(block[124:136], "size")
            if b"size" in pax:
                stored = _decimal(pax[b"size"], "size")
            if stored < 0:
                raise _Malformed(f"a size of {stored}")
            if kind != "file" and stored:
                raise _Malformed(f"a {kind} entry with {stored} bytes of data")
            self._left = stored + (-stored % _BLOCK)
            entry.size = stored
            if flag == b"S" or any(k.startswith(b"GNU.sparse.") and k != b"GNU.sparse.name"
                                   for k in pax):
                self._sparse(entry, block, pax, order, stored)
        except _Malformed as exc:
            raise self.bad(name, str(exc)) from None
        return entry

    def _fields(self, block: bytes, name: str, kind: str, pax: dict[bytes, bytes],
                names: dict[bytes, bytes]) -> TarEntry:
        """The member's metadata: header fields, PAX records over them, all checked."""
        ids = []
        for what, field in (("uid", block[108:116]), ("gid", block[116:124])):
            value = _number(field, what)
            if what.encode() in pax:
                value = _decimal(pax[what.encode()], what)
            try:
                ids.append(check_id(what, value))
            except ValueError as exc:
                raise _Malformed(str(exc)) from None
        mtime = _number(block[136:148], "mtime") * 10**9
        if b"mtime" in pax:
            mtime = _time_ns(pax[b"mtime"])
        if not -_MAX_NS <= mtime <= _MAX_NS:
            raise _Malformed(f"an mtime out of range ({mtime // 10**9} s)")
        raw_link = pax.get(b"linkpath", names.get(b"K", _nts(block[157:257])))
        if b"\0" in raw_link:
            raise _Malformed("a NUL byte in its link target")
        entry = TarEntry(name, kind, _number(block[100:108], "mode") & 0o7777, ids[0], ids[1],
                         mtime, 0, os.fsdecode(raw_link) if kind in ("symlink", "hardlink")
                         else "", xattrs=_xattrs(pax))
        if kind in ("chr", "blk"):
            entry.devmajor = _number(block[329:337], "devmajor")
            entry.devminor = _number(block[337:345], "devminor")
            if not (0 <= entry.devmajor <= MAX_DEV_MAJOR and
                    0 <= entry.devminor <= MAX_DEV_MINOR):
                raise _Malformed(f"device number {entry.devmajor}:{entry.devminor} out of "
                                 f"range (major 0..{MAX_DEV_MAJOR}, minor 0..{MAX_DEV_MINOR})")
        return entry

    def _sparse(self, entry: TarEntry, block: bytes, pax: dict[bytes, bytes],
                order: list[tuple[bytes, bytes]], stored: int) -> None:
        """Read the sparse map of a GNU sparse member (old 'S' type, PAX 0.0, 0.1, 1.0):
        ``entry.size`` becomes the real size, ``entry.sparse`` the data regions."""
        if block[156:157] == b"S":
            regions, realsize = self._old_gnu_map(block, entry.name)
        else:
            major, minor = pax.get(b"GNU.sparse.major"), pax.get(b"GNU.sparse.minor")
            size_key = b"GNU.sparse.size"
            if major is not None or minor is not None:
                if (major, minor) != (b"1", b"0"):
                    raise _Malformed(f"GNU sparse format {major!r}.{minor!r}: not supported")
                size_key = b"GNU.sparse.realsize"
                regions, used = self._pax_map_1_0(entry.name, stored)
                stored -= used
            elif b"GNU.sparse.map" in pax:  # 0.1
                text = pax[b"GNU.sparse.map"]
                numbers = [_decimal(x, "sparse map") for x in text.split(b",")] if text else []
                regions = self._pairs(numbers)
            else:  # 0.0: offset and numbytes records, in turn
                numbers = [_decimal(v, "sparse map") for k, v in order
                           if k in (b"GNU.sparse.offset", b"GNU.sparse.numbytes")]
                keys = [k for k, _ in order if k in (b"GNU.sparse.offset",
                                                     b"GNU.sparse.numbytes")]
                if keys[0::2] != [b"GNU.sparse.offset"] * len(keys[0::2]) or \
                        keys[1::2] != [b"GNU.sparse.numbytes"] * len(keys[1::2]):
                    raise _Malformed("GNU sparse 0.0 offset and numbytes records out of turn")
                regions = self._pairs(numbers)
            if size_key not in pax:
                raise _Malformed("a sparse file without its real size")
            realsize = _decimal(pax[size_key], "sparse size")
        _check_regions(regions, realsize, stored)
        entry.size, entry.sparse = realsize, tuple(regions)

    @staticmethod
    def _pairs(numbers: list[int]) -> list[tuple[int, int]]:
        if len(numbers) % 2 or len(numbers) > 2 * MAX_SPARSE_REGIONS:
            raise _Malformed(f"a sparse map of {len(numbers)} numbers")
        return list(zip(numbers[0::2], numbers[1::2], strict=True))

    def _old_gnu_map(self, block: bytes, name: str) -> tuple[list[tuple[int, int]], int]:
        """The old GNU 'S' header's map: 4 entries in the header, then 21 in each
        extension block while the 'isextended' byte is set."""
        regions: list[tuple[int, int]] = []
        area, more = block[386:482], block[482]
        realsize = _number(block[483:495], "realsize")
        while True:
            for pos in range(0, len(area) - 23, 24):
                if area[pos] == 0:
                    break
                regions.append((_number(area[pos:pos + 12], "sparse offset"),
                                _number(area[pos + 12:pos + 24], "sparse length")))
            if not more:
                return regions, realsize
            if len(regions) > MAX_SPARSE_REGIONS:
                raise _Malformed(f"a sparse map of more than {MAX_SPARSE_REGIONS} regions")
            ext = self._read(_BLOCK, name)
            area, more = ext[:504], ext[504]

    def _pax_map_1_0(self, name: str, stored: int) -> tuple[list[tuple[int, int]], int]:
        """GNU sparse 1.0: the map is decimal lines at the start of the data, padded to
        a block; (the regions, the bytes of data the map took)."""
        buf, used, count = b"", 0, -1
        numbers: list[int] = []
        while count < 0 or len(numbers) < 2 * count:
            while b"\n" not in buf:
                if used + _BLOCK > stored or len(buf) > 64:
                    raise _Malformed("a GNU sparse 1.0 map that does not end")
                buf += self._read(_BLOCK, name)
                used += _BLOCK
            line, _, buf = buf.partition(b"\n")
            value = _decimal(line, "sparse map")
            if count < 0:
                if not 0 <= value <= MAX_SPARSE_REGIONS:
                    raise _Malformed(f"a sparse map of {value} regions")
                count = value
            else:
                numbers.append(value)
        self._left -= used
        return self._pairs(numbers), used
