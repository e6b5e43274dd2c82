"""An image's User resolved inside its rootfs (SECURITY.md: CVE-2016-3697)."""

from __future__ import annotations

import os
import pathlib

import pytest

from nsbind.errors import InvalidValue, LookupFailed, NsbindError
from nsbind.users import MAX_FILE_BYTES, User, resolve_user

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
1000:x:0:0:a name that looks like a uid:/:/bin/sh
app:x:1001:1002:app:/home/app:/bin/sh
"""
GROUP = """\
root:x:0:
appgrp:x:1002:
staff:x:50:app,other
audio:x:29:other
"""


@pytest.fixture
def rootfs(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


def test_cve_2016_3697_a_numeric_user_is_a_uid_never_a_name(rootfs: pathlib.Path) -> None:
    assert resolve_user(rootfs, "1000") == User(1000, 0, ())  # not root
    assert resolve_user(rootfs, "1000:1000") == User(1000, 1000, ())


def test_names_groups_and_supplementary_groups(rootfs: pathlib.Path) -> None:
    assert resolve_user(rootfs, "app") == User(1001, 1002, (50,), "/home/app")
    assert resolve_user(rootfs, "app:staff") == User(1001, 50, (), "/home/app")
    assert resolve_user(rootfs, "1001") == User(1001, 1002, (50,), "/home/app")
    assert resolve_user(rootfs, "4242:29") == User(4242, 29, ())
    with pytest.raises(LookupError, match="user 'nobody-here' is not in the rootfs"):
        resolve_user(rootfs, "nobody-here")
    with pytest.raises(LookupError, match="group 'wheel' is not in the rootfs"):
        resolve_user(rootfs, "app:wheel")


def test_cve_2016_3697_passwd_symlink_to_the_host_resolves_inside(
        tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:0:0::/:/bin/sh\n")
    os.symlink(str(host), root / "etc" / "passwd")  # absolute: taken inside the root
    inside = root / str(host).lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_text("evil:x:4000:4000::/:/bin/sh\n")
    assert resolve_user(root, "evil") == User(4000, 4000, ())
    os.symlink("../../../../../../../../etc/shadow", root / "etc" / "group")
    assert resolve_user(root, "evil").groups == ()  # climbs to the root's /etc/shadow: none


def test_errors_are_nsbind_errors_and_the_builtin_kind(rootfs: pathlib.Path) -> None:
    with pytest.raises(NsbindError) as info:
        resolve_user(rootfs, "nobody-here")
    assert isinstance(info.value, LookupError) and isinstance(info.value, LookupFailed)
    assert str(info.value) == "user 'nobody-here' is not in the rootfs's /etc/passwd"
    with pytest.raises(InvalidValue, match=r"^user ':staff': no user$") as bad:
        resolve_user(rootfs, ":staff")
    assert isinstance(bad.value, ValueError)
    (rootfs / "etc" / "group").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(InvalidValue, match=r"^/etc/group in the rootfs is larger than"):
        resolve_user(rootfs, "app")


def test_passwd_that_is_a_directory_leaves_no_fd_open(rootfs: pathlib.Path) -> None:
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").mkdir()
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(InvalidValue, match=r"^/etc/passwd in the rootfs is a directory, not a "
                                           "regular file: refused$"):
        resolve_user(rootfs, "app")
    assert sorted(os.listdir("/proc/self/fd")) == before
