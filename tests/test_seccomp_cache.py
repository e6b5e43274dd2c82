"""nsbind.seccompcache: compiled OCI seccomp profiles kept on disk, and what a hostile
cache directory can do to them (nothing: every doubtful entry is a miss)."""

from __future__ import annotations

import errno
import os
import pathlib
import struct
from typing import Any

import pytest

from nsbind.seccomp import Program, SeccompError, SeccompUnavailable, library

try:
    library()
except SeccompUnavailable as exc:
    pytest.skip(str(exc), allow_module_level=True)

from nsbind.seccompcache import MAX_ENTRIES, ProgramCache

pytestmark = pytest.mark.unprivileged

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
    ],
}
OTHER: dict[str, Any] = {**PROFILE, "syscalls": [
    {"names": ["chdir"], "action": "SCMP_ACT_ERRNO"}]}


def _compiled(profile: dict[str, Any]) -> Program:
    from nsbind.seccomp import Filter

    return Filter.from_oci(profile).program()


def _entry(cache: ProgramCache, profile: dict[str, Any]) -> pathlib.Path:
    return pathlib.Path(cache.directory) / (ProgramCache.key(profile) + ".bpf")


def test_a_profile_is_compiled_once_and_then_read_from_the_cache(tmp_path: pathlib.Path
                                                                  ) -> None:
    cache = ProgramCache(tmp_path / "cache")
    first = cache.program(PROFILE)
    assert first == _compiled(PROFILE)
    entry = _entry(cache, PROFILE)
    assert entry.is_file()
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert entry.stat().st_mode & 0o777 == 0o600
    # what is read is the entry: put another (valid) program under the same name
    other = _compiled(OTHER)
    head = struct.pack("=8sII", b"NSBSCMP1", other.flags, len(other.bpf) // 8)
    entry.write_bytes(head + other.bpf)
    assert cache.program(PROFILE) == other
    assert os.listdir(tmp_path / "cache") == [entry.name]  # no temp file left


def test_the_key_follows_the_profile_not_its_spelling() -> None:
    reordered = dict(reversed(list(PROFILE.items())))
    assert ProgramCache.key(reordered) == ProgramCache.key(PROFILE)
    assert ProgramCache.key(OTHER) != ProgramCache.key(PROFILE)


def test_a_profile_that_does_not_compile_is_an_error_and_is_not_kept(tmp_path: pathlib.Path
                                                                     ) -> None:
    bad = {**PROFILE, "defaultAction": "SCMP_ACT_MAYBE"}
    cache = ProgramCache(tmp_path / "cache")
    with pytest.raises(SeccompError, match=r"linux\.seccomp\.defaultAction"):
        cache.program(bad)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "truncated", "bad-magic",
                                  "wrong-count", "oversized", "empty"])
def test_a_doubtful_entry_is_a_miss(tmp_path: pathlib.Path, kind: str) -> None:
    """A FIFO is never opened for reading (no hang), a symlink never followed; a bad
    entry is compiled over (replaced), never used."""
    cache = ProgramCache(tmp_path / "cache")
    (tmp_path / "cache").mkdir(mode=0o700)
    entry = _entry(cache, PROFILE)
    good = _compiled(PROFILE)
    head = struct.pack("=8sII", b"NSBSCMP1", good.flags, len(good.bpf) // 8)
    target = tmp_path / "elsewhere.bpf"
    other = _compiled(OTHER)
    target.write_bytes(struct.pack("=8sII", b"NSBSCMP1", 0, len(other.bpf) // 8) + other.bpf)
    if kind == "fifo":
        os.mkfifo(entry)
    elif kind == "symlink":
        entry.symlink_to(target)
    elif kind == "directory":
        entry.mkdir()
    elif kind == "truncated":
        entry.write_bytes((head + good.bpf)[:-3])
    elif kind == "bad-magic":
        entry.write_bytes(b"XXXXXXXX" + head[8:] + good.bpf)
    elif kind == "wrong-count":
        entry.write_bytes(struct.pack("=8sII", b"NSBSCMP1", 0, 1) + good.bpf)
    elif kind == "oversized":
        entry.write_bytes(head + b"\0" * (8 * 4097))
    else:
        entry.write_bytes(b"")
    assert cache.program(PROFILE) == good
    assert target.read_bytes()[16:] == other.bpf  # a link's target is left alone
    if kind not in ("fifo", "directory"):  # replaced by the compiled program
        assert entry.read_bytes() == head + good.bpf
        assert not entry.is_symlink()


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o722])
def test_a_directory_others_may_write_is_not_used(tmp_path: pathlib.Path, mode: int) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    directory.chmod(mode)
    cache = ProgramCache(directory)
    assert cache.program(PROFILE) == _compiled(PROFILE)
    assert os.listdir(directory) == []  # nothing stored where others could swap it


def test_a_directory_of_another_user_is_not_used(tmp_path: pathlib.Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root (CAP_CHOWN)")
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    cache = ProgramCache(directory)
    assert cache.program(PROFILE) == _compiled(PROFILE)
    assert os.listdir(directory) == []


def test_a_symlinked_directory_is_not_used(tmp_path: pathlib.Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "cache").symlink_to(real)
    cache = ProgramCache(tmp_path / "cache")
    assert cache.program(PROFILE) == _compiled(PROFILE)
    assert os.listdir(real) == []


def test_a_full_cache_is_emptied_before_the_next_entry(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    for i in range(MAX_ENTRIES):
        (directory / f"{i:064x}.bpf").write_bytes(b"old")
    (directory / "unrelated").write_bytes(b"kept")
    cache = ProgramCache(directory)
    cache.program(PROFILE)
    assert sorted(os.listdir(directory)) == sorted([_entry(cache, PROFILE).name, "unrelated"])


def test_an_unwritable_cache_still_gives_the_program(tmp_path: pathlib.Path) -> None:
    """A cache path under a regular file cannot be made: compiled, not an error."""
    (tmp_path / "file").write_bytes(b"")
    cache = ProgramCache(tmp_path / "file" / "cache")
    assert cache.program(PROFILE) == _compiled(PROFILE)
    with pytest.raises(OSError) as info:
        os.stat(tmp_path / "file" / "cache")
    assert info.value.errno == errno.ENOTDIR


def test_a_deferred_cache_writes_only_on_save(tmp_path: pathlib.Path) -> None:
    """A runtime keeps the program of a container that was created: nothing is written
    (not even the directory) until save()."""
    cache = ProgramCache(tmp_path / "cache", defer=True)
    program = cache.program(PROFILE)
    assert not (tmp_path / "cache").exists()
    cache.save()
    assert _entry(cache, PROFILE).is_file()
    assert ProgramCache(tmp_path / "cache").program(PROFILE) == program
