"""resolve_user on an image's hostile /etc/passwd and /etc/group: ids out of range or
written loosely never become a uid (root least of all), files that are not regular
files are refused without being opened for reading, and only LookupFailed or
InvalidValue ever comes out (hypothesis fuzzes specs and lines)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import string
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import forked, private_mount_ns
from nsbind import mounts
from nsbind.errors import InvalidValue, LookupFailed, NsbindError
from nsbind.idmap import MAX_ID
from nsbind.users import MAX_FILE_BYTES, User, resolve_user

GROUP = "root:x:0:\nstaff:x:50:app,other\n"


def make_root(root: pathlib.Path, passwd: str | bytes, group: str | bytes = GROUP) -> pathlib.Path:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    for name, data in (("passwd", passwd), ("group", group)):
        path = root / "etc" / name
        # surrogatepass: a generated lone surrogate becomes the invalid UTF-8 it stands for
        path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return root


@contextlib.contextmanager
def no_fd_leak() -> Iterator[None]:
    before = sorted(os.listdir("/proc/self/fd"))
    yield
    assert sorted(os.listdir("/proc/self/fd")) == before


def line(name: str, uid: str, gid: str = "100", home: str = "/home/x") -> str:
    return f"{name}:x:{uid}:{gid}::{home}:/bin/sh\n"


# ---- ids out of range or not plain digits, in the files -------------------------------


@pytest.mark.unprivileged
@pytest.mark.parametrize("uid", ["-1", "4294967295", "4294967296", "18446744073709551615",
                                 "9" * 30, "1" + "0" * 5000])
def test_passwd_uid_out_of_range_is_refused_naming_the_line(tmp_path: pathlib.Path,
                                                            uid: str) -> None:
    root = make_root(tmp_path, line("root", "0") + line("app", uid))
    with pytest.raises(InvalidValue, match=r"^/etc/passwd line 2: uid .*(out of range|not a "
                                           r"number)") as info:
        resolve_user(root, "app")
    assert uid[:20] in str(info.value)


@pytest.mark.unprivileged
@pytest.mark.parametrize("gid", ["-1", "4294967295", "4294967296", "", "x", "0x5", "+5", " 5",
                                 "5 ", "³", "\u0665", "1_0"])
def test_passwd_gid_that_is_not_an_id_is_refused_not_root_group(tmp_path: pathlib.Path,
                                                                gid: str) -> None:
    root = make_root(tmp_path, line("app", "1001", gid))
    with pytest.raises(InvalidValue, match=r"^/etc/passwd line 1: gid "):
        resolve_user(root, "app")
    with pytest.raises(InvalidValue, match=r"^/etc/passwd line 1: gid "):
        resolve_user(root, "1001")  # the uid's line is used, so it must be sound


@pytest.mark.unprivileged
@pytest.mark.parametrize("uid", ["³", "\u0665", "+5", " 5", "5 ", "0x5", "5\0", "1_0", "5.0", "",
                                 "5e0"])
def test_passwd_uid_not_plain_digits_is_refused_for_its_name(tmp_path: pathlib.Path,
                                                             uid: str) -> None:
    root = make_root(tmp_path, line("app", uid))
    with pytest.raises(InvalidValue, match=r"^/etc/passwd line 1"):
        resolve_user(root, "app")


@pytest.mark.unprivileged
@pytest.mark.parametrize("uid", ["+1000", " 1000", "1000 ", "\u0661\u0660\u0660\u0660", "1_000"])
def test_a_loosely_written_uid_never_matches_quietly(tmp_path: pathlib.Path, uid: str) -> None:
    """glibc's strtoul reads '+1000' and ' 1000' as 1000: the line would be user 1000's
    inside the container, so it is not silently skipped (gid 0) either."""
    root = make_root(tmp_path, line("app", uid, "1000"))
    with pytest.raises(InvalidValue, match=r"^/etc/passwd line 1: uid .* is not plain ASCII "
                                           r"digits \(uid 1000 read loosely\)"):
        resolve_user(root, "1000")


@pytest.mark.unprivileged
def test_leading_zeros_are_decimal_and_malformed_lines_elsewhere_are_skipped(
        tmp_path: pathlib.Path) -> None:
    passwd = ("broken\n" "short:x:7\n" "weird:x:-1:0::/:/bin/sh\n" "# comment\n\n"
              + line("app", "0010", "0020", "/srv/app"))
    root = make_root(tmp_path, passwd, "staff:x:0050:app\nbad:x:¹:other\n")
    assert resolve_user(root, "app") == User(10, 20, (50,), "/srv/app")
    assert resolve_user(root, "10") == User(10, 20, (50,), "/srv/app")
    assert resolve_user(root, "010:0") == User(10, 0, (50,), "/srv/app")
    assert resolve_user(root, "0") == User(0, 0, ())  # no line has uid 0: gid 0, no groups


@pytest.mark.unprivileged
@pytest.mark.parametrize("text", ["app:x:1001", "app:x:1001:1002", "app:x:1001:1002::/home"])
def test_passwd_line_with_too_few_fields_is_refused(tmp_path: pathlib.Path, text: str) -> None:
    root = make_root(tmp_path, text + "\n")
    with pytest.raises(InvalidValue, match=r"^/etc/passwd line 1 \('app'\) has \d fields; a "
                                           "passwd line has 7"):
        resolve_user(root, "app")
    with pytest.raises(InvalidValue, match=r"^/etc/passwd line 1 "):
        resolve_user(root, "1001")


@pytest.mark.unprivileged
def test_extra_colons_belong_to_the_shell_and_nul_is_refused(tmp_path: pathlib.Path) -> None:
    root = make_root(tmp_path, "app:x:5:6::/h:/bin/sh:extra:more\n")
    assert resolve_user(root, "app") == User(5, 6, (50,), "/h")
    make_root(tmp_path, "app:x:5:6::/h\0/evil:/bin/sh\n")
    with pytest.raises(InvalidValue, match="contains a NUL byte"):
        resolve_user(tmp_path, "app")


@pytest.mark.unprivileged
def test_invalid_utf8_is_kept_byte_for_byte(tmp_path: pathlib.Path) -> None:
    root = make_root(tmp_path, b"j\xf6rg:x:5:6:J\xf6rg:/home/j\xf6rg:/bin/sh\n"
                     + line("app", "7").encode())
    assert resolve_user(root, "app").uid == 7
    home = resolve_user(root, "5").home
    assert os.fsencode(home) == b"/home/j\xf6rg"
    with pytest.raises(LookupFailed):
        resolve_user(root, "jörg")  # UTF-8 'ö' is not the byte 0xf6


# ---- groups -------------------------------------------------------------------------------


@pytest.mark.unprivileged
@pytest.mark.parametrize("gid", ["-1", "4294967295", "4294967296", "", "x", "³", "+5"])
def test_group_gid_not_an_id_is_refused_for_spec_and_membership(tmp_path: pathlib.Path,
                                                                gid: str) -> None:
    root = make_root(tmp_path, line("app", "5"), f"root:x:0:\nwheel:x:{gid}:app\n")
    with pytest.raises(InvalidValue, match=r"^/etc/group line 2: gid "):
        resolve_user(root, "app")  # a group that lists app
    with pytest.raises(InvalidValue, match=r"^/etc/group line 2: gid "):
        resolve_user(root, "5:wheel")  # the group named in the spec
    assert resolve_user(root, "6") == User(6, 0, ())  # not app's: the line does not matter


@pytest.mark.unprivileged
def test_group_line_too_short_and_members_with_spaces(tmp_path: pathlib.Path) -> None:
    root = make_root(tmp_path, line("app", "5"), "wheel:x\n")
    with pytest.raises(InvalidValue, match=r"^/etc/group line 1 \('wheel'\) has 2 fields"):
        resolve_user(root, "app:wheel")
    make_root(tmp_path, line("app", "5"), "audio:x:29:other, app\n")
    with pytest.raises(InvalidValue, match=r"^/etc/group line 1: a member is 'app' with spaces"):
        resolve_user(tmp_path, "app")
    make_root(tmp_path, line("app", "5"), "audio:x:29:,,other,,app,\nvideo:x:44:apps,xapp\n")
    assert resolve_user(tmp_path, "app").groups == (29,)


@pytest.mark.unprivileged
def test_more_groups_than_the_kernel_takes_is_refused(tmp_path: pathlib.Path) -> None:
    limit = os.sysconf("SC_NGROUPS_MAX")
    group = "".join(f"g{i}:x:{1000 + i}:app\n" for i in range(limit + 1))
    assert len(group) < MAX_FILE_BYTES
    root = make_root(tmp_path, line("app", "5"), group)
    with pytest.raises(InvalidValue, match=rf"member of {limit + 1} groups .* at most {limit}"):
        resolve_user(root, "app")


# ---- the spec -------------------------------------------------------------------------------


@pytest.mark.unprivileged
@pytest.mark.parametrize("spec", ["4294967295", "4294967296", "99999999999999999999999",
                                  "1" + "0" * 5000, "0:4294967295", "0:4294967296"])
def test_spec_id_out_of_range_is_refused(tmp_path: pathlib.Path, spec: str) -> None:
    root = make_root(tmp_path, line("app", "5"))
    with pytest.raises(InvalidValue, match=r"^(user|group) .*out of range"):
        resolve_user(root, spec)


@pytest.mark.unprivileged
@pytest.mark.parametrize("spec", ["³", "\u0665", "+5", " 5", "5 ", "-1", "1_000", "\uff15", "app:³",
                                  "app:-1", "0:+0"])
def test_spec_that_is_a_number_only_when_read_loosely_is_refused(tmp_path: pathlib.Path,
                                                                spec: str) -> None:
    names = "".join(line(n, "7") for n in ("+5", " 5", "5 ", "-1", "³", "\u0665"))  # never used
    root = make_root(tmp_path, names + line("app", "5"), "³:x:9:\n-1:x:9:\n")
    with pytest.raises(InvalidValue, match=r"^(user|group) .* is not a valid number"):
        resolve_user(root, spec)


@pytest.mark.unprivileged
@pytest.mark.parametrize("spec", ["a b", "a\nb", "a\0b", "a:b:c", "a:b,c", "a\tb", "-app",
                                  "+app", "x" * 257, "app:\x7f"])
def test_spec_that_is_not_a_valid_name_is_refused(tmp_path: pathlib.Path, spec: str) -> None:
    root = make_root(tmp_path, line("app", "5"))
    with pytest.raises(InvalidValue, match="is not a valid name"):
        resolve_user(root, spec)


@pytest.mark.unprivileged
def test_hex_is_a_name_never_a_number(tmp_path: pathlib.Path) -> None:
    root = make_root(tmp_path, line("0x5", "77", "78"))
    assert resolve_user(root, "0x5") == User(77, 78, (), "/home/x")
    make_root(tmp_path, line("app", "5"))
    with pytest.raises(LookupFailed, match="user '0x5' is not in"):
        resolve_user(tmp_path, "0x5")


@pytest.mark.unprivileged
def test_largest_id_is_taken(tmp_path: pathlib.Path) -> None:
    root = make_root(tmp_path, line("big", str(MAX_ID), str(MAX_ID)))
    assert resolve_user(root, "big") == User(MAX_ID, MAX_ID, (), "/home/x")
    assert resolve_user(root, f"{MAX_ID}:{MAX_ID}") == User(MAX_ID, MAX_ID, (), "/home/x")


# ---- files that are not regular files ---------------------------------------------------------


def _fifo(path: pathlib.Path) -> None:
    os.mkfifo(path)


def _chr_kmsg(path: pathlib.Path) -> None:
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 11))  # /dev/kmsg: a read blocks


def _chr_zero(path: pathlib.Path) -> None:
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero: reads forever


def _blk(path: pathlib.Path) -> None:
    os.mknod(path, 0o600 | 0o060000, os.makedev(7, 0))  # a loop device


def _socket(path: pathlib.Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


def _dir(path: pathlib.Path) -> None:
    path.mkdir()


KINDS = {"fifo": (_fifo, "a FIFO"), "kmsg": (_chr_kmsg, "a character device"),
         "zero": (_chr_zero, "a character device"), "block": (_blk, "a block device"),
         "socket": (_socket, "a socket"), "dir": (_dir, "a directory")}
DEVICES = ("kmsg", "zero", "block")  # made with mknod: CAP_MKNOD


def kinds(names: list[str]) -> list[object]:
    """``names`` as parameters; all but the device nodes also run unprivileged."""
    return [k if k in DEVICES else pytest.param(k, marks=pytest.mark.unprivileged)
            for k in names]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", ["passwd", "group"])
@pytest.mark.parametrize("kind", kinds(sorted(KINDS)))
def test_passwd_or_group_that_is_not_a_file_is_refused_at_once(tmp_path: pathlib.Path,
                                                               name: str, kind: str) -> None:
    root = make_root(tmp_path, line("app", "5"))
    (root / "etc" / name).unlink()
    make, label = KINDS[kind]
    make(root / "etc" / name)
    with no_fd_leak(), pytest.raises(InvalidValue, match=rf"^/etc/{name} in the rootfs is "
                                                         rf"{label}, not a regular file"):
        resolve_user(root, "app")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", kinds(["fifo", "zero", "kmsg"]))
@pytest.mark.parametrize("target", ["/dev/x", "../../../../dev/x", "../dev/x"])
def test_symlink_to_a_device_or_fifo_inside_the_root_is_refused(
        tmp_path: pathlib.Path, kind: str, target: str) -> None:
    root = make_root(tmp_path / "root", line("app", "5"))
    (root / "dev").mkdir()
    KINDS[kind][0](root / "dev" / "x")
    (root / "etc" / "passwd").unlink()
    os.symlink(target, root / "etc" / "passwd")
    with no_fd_leak(), pytest.raises(InvalidValue, match="not a regular file"):
        resolve_user(root, "app")


@pytest.mark.unprivileged
@pytest.mark.timeout(10)
def test_symlink_to_the_hosts_dev_zero_stays_inside(tmp_path: pathlib.Path) -> None:
    root = make_root(tmp_path, line("app", "5"))
    (root / "etc" / "passwd").unlink()
    os.symlink("/dev/zero", root / "etc" / "passwd")  # no /dev/zero in the root: missing
    with pytest.raises(LookupFailed):
        resolve_user(root, "app")
    assert resolve_user(root, "5") == User(5, 0, ())


@pytest.mark.timeout(20)
@forked
def test_without_proc_the_file_is_opened_again_and_checked(tmp_path: pathlib.Path) -> None:
    """With no /proc/self/fd to reopen through, the path is opened a second time
    (non-blocking) and must still be the same regular file."""
    root = make_root(tmp_path, line("app", "5"))
    private_mount_ns()
    mounts.apply([mounts.tmpfs("/proc", size="1m")])
    assert not os.path.exists("/proc/self/fd")
    assert resolve_user(root, "app") == User(5, 100, (50,), "/home/x")
    (root / "etc" / "group").unlink()
    os.mkfifo(root / "etc" / "group")
    with pytest.raises(InvalidValue, match="is a FIFO, not a regular file"):
        resolve_user(root, "app")


@pytest.mark.unprivileged
def test_sizes_up_to_the_limit(tmp_path: pathlib.Path) -> None:
    body = line("app", "5")
    root = make_root(tmp_path, body + "#" * (MAX_FILE_BYTES - len(body) - 1) + "\n")
    assert resolve_user(root, "app").uid == 5
    make_root(tmp_path, body + "#" * (MAX_FILE_BYTES - len(body) + 1))
    with no_fd_leak(), pytest.raises(InvalidValue, match=r"^/etc/passwd in the rootfs is larger "
                                                         rf"than {MAX_FILE_BYTES} bytes$"):
        resolve_user(tmp_path, "app")


@pytest.mark.unprivileged
def test_a_root_that_is_not_a_directory(tmp_path: pathlib.Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotADirectoryError):
        resolve_user(tmp_path / "fifo", "app")
    with pytest.raises(FileNotFoundError):
        resolve_user(tmp_path / "missing", "app")


# ---- fuzzing ----------------------------------------------------------------------------------

_ID_TEXT = st.one_of(st.integers(-5, 2**33).map(str),
                     st.sampled_from(["", "0", "00", "+1", " 1", "1 ", "³", "\u0665", "0x1", "1_0",
                                      "4294967295", "4294967294", "-0", "1e3"]),
                     st.text(alphabet=string.digits + "+- x_³\u0665\t", max_size=12))
_NAME = st.one_of(st.sampled_from(["app", "root", "1000", "0", "x y", "+app", "-1", "³"]),
                  st.text(max_size=8))
_FIELD = st.text(alphabet=st.characters(blacklist_characters=":\n"), max_size=8)


@st.composite
def _passwd_line(draw: st.DrawFn) -> str:
    fields = [draw(_NAME), "x", draw(_ID_TEXT), draw(_ID_TEXT), draw(_FIELD), draw(_FIELD),
              draw(_FIELD)]
    return ":".join(fields[:draw(st.integers(1, 8))])


@st.composite
def _group_line(draw: st.DrawFn) -> str:
    members = ",".join(draw(st.lists(_NAME, max_size=4)))
    fields = [draw(_NAME), "x", draw(_ID_TEXT), members]
    return ":".join(fields[:draw(st.integers(1, 4))])


def _strict_id(text: str) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() else None


@pytest.mark.unprivileged
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passwd=st.lists(_passwd_line(), max_size=6), group=st.lists(_group_line(), max_size=6),
       spec=st.one_of(_NAME, _ID_TEXT, st.tuples(_NAME, _ID_TEXT).map(":".join),
                      st.text(max_size=20)))
def test_fuzz_only_documented_errors_and_no_root_by_accident(
        tmp_path: pathlib.Path, passwd: list[str], group: list[str], spec: str) -> None:
    text = "\n".join(passwd) + "\n"
    root = make_root(tmp_path, text, "\n".join(group) + "\n")
    try:
        user = resolve_user(root, spec)
    except (InvalidValue, LookupFailed) as exc:
        assert isinstance(exc, NsbindError) and str(exc)
        return
    assert 0 <= user.uid <= MAX_ID and 0 <= user.gid <= MAX_ID
    assert all(0 <= g <= MAX_ID for g in user.groups) and user.gid not in user.groups
    user_part = spec.partition(":")[0]
    number = _strict_id(user_part)
    if number is not None:
        assert user.uid == number  # a number is a uid, never a name
    else:  # a name: its uid is that of its first line, written as plain digits
        first = next(f for f in (t.split(":") for t in text.split("\n")
                                 if t and not t.startswith("#")) if f[0] == user_part)
        assert _strict_id(first[2]) == user.uid  # so uid 0 only when the line says 0


@pytest.mark.unprivileged
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passwd=st.binary(max_size=300), group=st.binary(max_size=300),
       spec=st.sampled_from(["app", "0", "5", "app:staff", "5:0", "root"]))
def test_fuzz_arbitrary_bytes_as_the_files(tmp_path: pathlib.Path, passwd: bytes, group: bytes,
                                           spec: str) -> None:
    root = make_root(tmp_path, passwd, group)
    with contextlib.suppress(InvalidValue, LookupFailed):
        user = resolve_user(root, spec)
        assert 0 <= user.uid <= MAX_ID and 0 <= user.gid <= MAX_ID
