"""RootFS: overlay roots, pivot_root, /proc, /dev, masked and read-only paths, and the
attacks on mount targets (SECURITY.md, "Mounts and the root filesystem")."""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import signal
import stat
import tempfile
from collections.abc import Iterator

import pytest

from helpers import busybox_root, forked, mountinfo
from nsbind import Namespaces, RootFS, SpawnError, features, mounts, spawn
from nsbind.errors import NsbindError
from nsbind.mountstep import MountKind, MountStep

PREPARED = False  # set by the `mode` fixture: every test runs with plain and prepared roots


@pytest.fixture(autouse=True, params=["plain", "prepared"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test twice: roots assembled by every spawn, and roots made once by
    RootFS.prepare() (whose spawns must behave the same)."""
    global PREPARED
    PREPARED = request.param == "prepared"
    try:
        yield request.param
    finally:
        PREPARED = False


#: the `mode` parameters of a test that also runs unprivileged, with plain roots only
#: (RootFS.prepare() needs root)
PLAIN_ALSO_UNPRIVILEGED = pytest.mark.parametrize(
    "mode", [pytest.param("plain", marks=pytest.mark.unprivileged), "prepared"], indirect=True)


def run_in(root: RootFS, script: str, ns: Namespaces | None = None,
           **kwargs: object) -> tuple[str, int]:
    """Run ``sh -c script`` in ``root`` (new pid and mount namespaces by default)."""
    if PREPARED:
        root.prepare()
    try:
        with spawn(["/bin/sh", "-c", script], namespaces=ns or Namespaces(pid=True, mnt=True),
                   rootfs=root, stdout=-1, stderr=-2, env={"PATH": "/bin"},
                   **kwargs) as proc:  # type: ignore[arg-type]
            out, _ = proc.communicate(timeout=60)
    finally:
        root._prepared = False  # release the namespace, keep the root's mount point
        root._drop_template()
    assert out is not None
    return out.decode(), proc.returncode or 0


def layers(tmp_path: pathlib.Path, n: int) -> list[pathlib.Path]:
    """``n`` layer directories, lowest first; busybox in the lowest."""
    made = []
    for i in range(n):
        layer = tmp_path / f"layer{i}"
        layer.mkdir()
        made.append(layer)
    busybox_root(made[0])
    return made


def test_three_layer_overlay_shows_the_union_and_hides_whiteouts(
        tmp_path: pathlib.Path) -> None:
    l1, l2, l3 = layers(tmp_path, 3)
    (l1 / "a").write_text("from layer 1\n")
    (l1 / "gone").write_text("hidden by layer 2\n")
    (l1 / "d").mkdir()
    (l1 / "d" / "old").write_text("hidden by the opaque dir\n")
    os.mknod(l2 / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    (l2 / "b").write_text("from layer 2\n")
    (l3 / "a").write_text("layer 3 wins\n")
    (l3 / "d").mkdir()
    os.setxattr(l3 / "d", "trusted.overlay.opaque", b"y")
    (l3 / "d" / "new").write_text("x")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with RootFS.overlay([l3, l2, l1], upper, work) as root:
        out, rc = run_in(root, "cat /a /b; ls /d; test -e /gone || echo no-gone; "
                               "echo written > /w; rm /a")
        assert root.path.startswith(os.path.join(tempfile.gettempdir(), "nsbind-rootfs-"))
    assert (out, rc) == ("layer 3 wins\nfrom layer 2\nnew\nno-gone\n", 0)
    assert (upper / "w").read_text() == "written\n"
    assert stat.S_ISCHR(os.lstat(upper / "a").st_mode)  # the delete became a whiteout
    assert (l3 / "a").read_text() == "layer 3 wins\n"
    assert not os.path.exists(root.path)  # close() removed the mount point


def test_overlay_root_of_120_layers(tmp_path: pathlib.Path) -> None:
    made = layers(tmp_path, 120)
    for i, layer in enumerate(made):
        (layer / f"f{i}").write_text(str(i))
    if not features.lowerdir_plus():
        # before 6.8 the child's overlay is one lowerdir= string of at most 255 bytes
        # through fsconfig: refused up front, naming the limit (Store.rootfs names its
        # layers by short links; mounts.overlay goes through mount(2))
        with pytest.raises(ValueError, match=r"120 overlay layers need a \d+-byte lowerdir "
                                             r"option; this kernel .* takes 255"):
            RootFS.overlay(list(reversed(made)))
        return
    with RootFS.overlay(list(reversed(made))) as root:
        out, rc = run_in(root, "ls / | grep -c '^f'; cat /f119")
    assert (out, rc) == ("120\n119", 0)


def test_pivot_root_leaves_the_old_root_unreachable(tmp_path: pathlib.Path) -> None:
    rootdir = pathlib.Path(busybox_root(tmp_path / "root"))
    (tmp_path / "host-secret").write_text("x")
    root = RootFS(rootdir, readonly=True).add(mounts.proc())
    out, rc = run_in(root, "ls /..; echo ---; find / -name host-secret; readlink /proc/1/root;"
                           " awk '{print $5}' /proc/self/mountinfo")
    listing, _, rest = out.partition("---\n")
    assert sorted(listing.split()) == ["bin", "proc"]
    # no host-secret anywhere; the only mounts are / and /proc with its masks (in mount id
    # order: a prepared root's first /dev/null mask was made by the parent, before the rest)
    lines = rest.split()
    assert lines[0] == "/" and rc == 0
    assert lines[1:].count("/") == 1 and all(p.startswith("/proc") for p in lines[1:]
                                             if p != "/"), lines


def test_proc_inside_shows_only_the_pid_namespace(tmp_path: pathlib.Path) -> None:
    root = RootFS(busybox_root(tmp_path), readonly=True).add(mounts.proc())
    out, rc = run_in(root, "cd /proc; echo [0-9]*")
    assert rc == 0 and out.split() and all(int(pid) <= 2 for pid in out.split())
    with open("/proc/sys/kernel/pid_max") as f:
        assert os.getpid() < int(f.read())  # the host's pids are many; inside only 1-2


def test_masked_paths_read_empty_and_readonly_paths_refuse_writes(
        tmp_path: pathlib.Path) -> None:
    root = RootFS(busybox_root(tmp_path)).add(mounts.proc(), mounts.sysfs())
    out, rc = run_in(root, "wc -c < /proc/keys; stat -c %t:%T /proc/keys; ls /sys/firmware;"
                           " ls /proc/acpi 2>&1 | wc -l; echo x > /proc/sys/kernel/domainname "
                           "|| echo refused; echo h > /proc/sysrq-trigger || echo refused",
                     ns=Namespaces(pid=True, mnt=True, uts=True))
    assert out.split("\n")[:2] == ["0", "1:3"]
    assert out.count("refused") == 2 and "Read-only file system" in out
    assert rc == 0


def test_masks_and_readonly_defaults_can_be_turned_off(tmp_path: pathlib.Path) -> None:
    root = RootFS(busybox_root(tmp_path), defaults=False).add(mounts.proc())
    root.mask("/proc/version")
    out, rc = run_in(root, "wc -c < /proc/version; head -c 5 /proc/timer_list | wc -c")
    assert (out, rc) == ("0\n5\n", 0)


def test_masks_of_one_spawn_share_one_empty_readonly_tmpfs(tmp_path: pathlib.Path) -> None:
    """One spawn makes one empty read-only tmpfs and checks /dev/null once; its other masks
    are clones of those.  Another spawn gets its own tmpfs."""
    root_dir = busybox_root(tmp_path)
    for d in ("a", "b", "c"):
        os.mkdir(os.path.join(root_dir, d))
        with open(os.path.join(root_dir, d, "secret"), "w") as f:
            f.write("x")
    for name in ("f1", "f2"):
        with open(os.path.join(root_dir, name), "w") as f:
            f.write("secret")
    root = RootFS(root_dir, defaults=False).add(mounts.proc())
    root.mask("/a", "/f1", "/b", "/f2", "/c")
    script = ("grep -E ' /(a|b|c) ' /proc/self/mountinfo; ls -A /a /b /c; "
              "stat -c '%F %t:%T' /f1 /f2; cat /f1 /f2; touch /b/x || echo refused")
    out, rc = run_in(root, script)
    assert rc == 0, out
    lines = out.split("\n")
    fields = [line.split() for line in lines[:3]]
    assert [f[4] for f in fields] == ["/a", "/b", "/c"]
    assert len({f[2] for f in fields}) == 1  # one superblock (major:minor) for all three
    assert all(f[5].startswith("ro") and f[-3:-1] == ["tmpfs", "tmpfs"] for f in fields)
    assert lines[3:6] == ["/a:", "", "/b:"] and "secret" not in out
    assert "character special file 1:3\ncharacter special file 1:3\ntouch" in out
    assert out.endswith("Read-only file system\nrefused\n")
    # two containers alive at once: each has its own mask tmpfs
    procs = [spawn(["/bin/sleep", "60"], namespaces=Namespaces(pid=True, mnt=True),
                   rootfs=root) for _ in range(2)]
    try:
        devs = []
        for proc in procs:
            with open(f"/proc/{proc.pid}/mountinfo") as f:
                devs.append({line.split()[2] for line in f if line.split()[4] == "/a"})
        assert len(devs[0]) == len(devs[1]) == 1 and devs[0] != devs[1]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_creation_steps_after_a_mount_land_on_the_mount(tmp_path: pathlib.Path) -> None:
    """Consecutive creations in one directory reuse its fd; a mount in between must not be
    bypassed by that reuse, and device nodes keep their mode whatever the umask."""
    root_dir = busybox_root(tmp_path)
    root = RootFS(root_dir, defaults=False).add(
        mounts.mkdir("/x/a"), mounts.symlink("/x/l1", "a"),
        mounts.tmpfs("/x"), mounts.symlink("/x/l2", "b"), mounts.device("/x/null", 1, 3),
        mounts.mkdir("/x/d"), mounts.device("/x/d/zero", 1, 5, mode=0o620))
    old = os.umask(0o077)
    try:
        out, rc = run_in(root, "ls /x; stat -c '%a %t:%T' /x/null /x/d/zero; umask")
    finally:
        os.umask(old)
    assert (out, rc) == ("d\nl2\nnull\n666 1:3\n620 1:5\n0077\n", 0)
    assert sorted(os.listdir(os.path.join(root_dir, "x"))) == ["a", "l1"]


def test_mount_steps_restore_the_umask(tmp_path: pathlib.Path) -> None:
    os.mkdir(tmp_path / "r")
    steps = RootFS(tmp_path / "r", defaults=False).add(
        mounts.tmpfs("/dev"), mounts.device("/dev/null", 1, 3)).steps()

    @forked
    def apply() -> tuple[int, int]:
        old = os.umask(0o027)
        with Namespaces(mnt=True):
            mounts.apply(steps)
            mode = os.stat(tmp_path / "r" / "dev" / "null").st_mode & 0o777
        return os.umask(old), mode

    assert apply() == (0o027, 0o666)


def test_minimal_dev(tmp_path: pathlib.Path) -> None:
    root = RootFS(busybox_root(tmp_path), readonly=True).add(mounts.proc(), mounts.dev())
    out, rc = run_in(root, "cd /dev; echo *; for d in null zero full random urandom tty; do "
                           "stat -c '%n %F %t:%T %a' $d; done; echo x > /dev/null; "
                           "head -c 3 /dev/zero | wc -c; readlink fd; readlink ptmx; "
                           "stat -c '%a %F' shm; grep -c ' /dev/pts .* devpts ' "
                           "/proc/self/mountinfo")
    assert rc == 0, out
    lines = out.split("\n")
    assert lines[0].split() == sorted(["core", "fd", "full", "null", "ptmx", "pts", "random",
                                       "shm", "stderr", "stdin", "stdout", "tty", "urandom",
                                       "zero"])
    assert lines[1:7] == ["null character special file 1:3 666",
                          "zero character special file 1:5 666",
                          "full character special file 1:7 666",
                          "random character special file 1:8 666",
                          "urandom character special file 1:9 666",
                          "tty character special file 5:0 666"]
    assert lines[7:12] == ["3", "/proc/self/fd", "pts/ptmx", "1777 directory", "1"]
    assert not (tmp_path / "dev").exists() or not os.listdir(tmp_path / "dev")


@PLAIN_ALSO_UNPRIVILEGED
def test_minimal_dev_in_a_user_namespace_binds_the_host_nodes(tmp_path: pathlib.Path) -> None:
    root = RootFS(busybox_root(tmp_path), readonly=True)
    root.add(mounts.proc(), mounts.dev(pts_gid=None))
    out, rc = run_in(root, "stat -c '%F %t:%T' /dev/null /dev/zero; echo x > /dev/null && "
                           "echo ok", ns=Namespaces(user=True, pid=True, mnt=True))
    assert (out, rc) == ("character special file 1:3\ncharacter special file 1:5\nok\n", 0)


def test_bind_volume_inside_the_root_readonly(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("volume\n")
    root = RootFS(busybox_root(tmp_path / "root"))
    root.add(mounts.bind(data, "/mnt/data/deep", readonly=True), mounts.bind(data / "f", "/f"))
    out, rc = run_in(root, "cat /mnt/data/deep/f /f; touch /mnt/data/deep/x || echo refused")
    assert out.startswith("volume\nvolume\n") and out.endswith("refused\n")
    assert rc == 0
    assert (tmp_path / "root" / "mnt" / "data" / "deep").is_dir()  # created inside the root
    assert (tmp_path / "root" / "f").is_file()


@pytest.mark.unprivileged
def test_rootfs_needs_a_mount_namespace(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="rootfs needs a new mount namespace"):
        spawn(["true"], rootfs=RootFS(tmp_path))
    with pytest.raises(ValueError, match="a classic mount"):
        RootFS(tmp_path).add(MountStep("proc", "/proc", "proc"))


@pytest.mark.unprivileged
@pytest.mark.parametrize(("lower", "refused"), [
    ([], "at least one lower layer"),
    (["/layers/a,b", "/layers/c"], r"contains .*','"),
    (["/layers/only"], "at least two lower layers"),
], ids=["no-layer", "comma", "one-layer-read-only"])
def test_overlay_refused_by_its_step_raises_that_error_and_removes_its_mount_point(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, lower: list[str],
        refused: str) -> None:
    """The error overlay_step raises reaches the caller (not an AttributeError from a
    half-made RootFS), and the mount point directory made for it is gone."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # where the mount point is made
    with pytest.raises(ValueError, match=refused) as info:
        RootFS.overlay(lower)
    assert info.value.__context__ is None
    assert list(tmp.iterdir()) == []


def test_a_root_replaced_after_it_was_made_is_refused_naming_it(
        tmp_path: pathlib.Path) -> None:
    """The root's directory is resolved when the RootFS is made: another directory put
    at its path later is never entered (by a spawn, or by prepare())."""
    real, decoy = tmp_path / "root", tmp_path / "decoy"
    for d in (real, decoy):
        busybox_root(d)
    root = RootFS(real, defaults=False).add(mounts.mkdir("/made"))
    os.rename(real, tmp_path / "moved")
    os.rename(decoy, real)
    with pytest.raises(NsbindError) as info:
        run_in(root, "true")
    assert info.value.errno == errno.ESTALE
    assert str(info.value).startswith(f"bind {real} onto itself as the root: ESTALE")
    assert "is no longer the directory it was pinned to" in str(info.value)
    assert not (real / "made").exists() and not (tmp_path / "moved" / "made").exists()


def test_failing_rootfs_step_names_the_step_and_leaves_nothing(tmp_path: pathlib.Path) -> None:
    busybox_root(tmp_path)
    (tmp_path / "file").write_text("not a dir")
    root = RootFS(tmp_path).add(mounts.tmpfs("/file/sub"))
    with pytest.raises(SpawnError) as info:
        run_in(root, "true")
    assert str(info.value).startswith("mount tmpfs on /file/sub in the root: ENOTDIR")
    assert "resolve the target" in str(info.value)


# ------------------------------------------------------------------ attacks


def test_cve_2019_16884_rootfs_proc_symlink_is_refused(tmp_path: pathlib.Path) -> None:
    busybox_root(tmp_path)
    os.symlink("/", tmp_path / "proc")
    with pytest.raises(SpawnError) as info:
        run_in(RootFS(tmp_path).add(mounts.proc()), "true")
    assert info.value.errno == errno.ELOOP
    assert "mount proc on /proc in the root: ELOOP" in str(info.value)
    assert "refused: /proc is a symlink in the root" in str(info.value)


def test_rootfs_etc_climbing_out_stays_inside(tmp_path: pathlib.Path) -> None:
    root_dir = tmp_path / "a" / "b" / "root"
    busybox_root(root_dir)
    os.symlink("../../..", root_dir / "etc")  # on the host: tmp_path
    (tmp_path / "victim").mkdir()
    root = RootFS(root_dir, defaults=False).add(mounts.proc(), mounts.tmpfs("/etc/victim"),
                                                mounts.mkdir("/etc/made"))
    out, rc = run_in(root, "grep -c ' /victim .* tmpfs ' /proc/self/mountinfo; ls -d /made")
    assert (out, rc) == ("1\n/made\n", 0)  # `..` at the root stays at the root
    assert not (tmp_path / "made").exists() and (root_dir / "made").is_dir()
    assert os.listdir(tmp_path / "victim") == []


def test_image_dev_symlink_creates_nothing_on_the_host(tmp_path: pathlib.Path) -> None:
    root_dir = tmp_path / "root"
    busybox_root(root_dir)
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(str(victim), root_dir / "dev")  # absolute: resolves inside the root
    with pytest.raises(SpawnError, match=r"mount tmpfs on /dev in the root: ELOOP.*symlink"):
        run_in(RootFS(root_dir).add(mounts.dev()), "true")
    os.unlink(root_dir / "dev")
    os.symlink("../victim", root_dir / "dev")  # relative, climbing out
    steps = (mounts.mkdir("/dev/pts"), mounts.symlink("/dev/x", "/etc"))
    # (a prepared root makes these steps once, in prepare(): an NsbindError there)
    with pytest.raises(NsbindError, match=r"^mkdir /dev/pts in the root: ENOENT"):
        run_in(RootFS(root_dir, defaults=False).add(*steps), "true")  # dangling inside
    (root_dir / "victim").mkdir()
    out, rc = run_in(RootFS(root_dir, defaults=False).add(*steps), "ls /victim")
    assert (out, rc) == ("pts\nx\n", 0)
    assert os.listdir(victim) == []
    assert sorted(os.listdir(root_dir / "victim")) == ["pts", "x"]


@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_cve_2025_31133_masking_ignores_a_rootfs_dev_null_symlink(
        tmp_path: pathlib.Path, planted: str) -> None:
    # a file mask binds the root's /dev/null only when it is the null device itself
    # (as runc); a symlink (not followed) or a plain file there: the caller's
    busybox_root(tmp_path)
    (tmp_path / "dev").mkdir()
    if planted == "symlink":
        os.symlink("/proc/sys/kernel/core_pattern", tmp_path / "dev" / "null")
    else:
        (tmp_path / "dev" / "null").write_text("planted\n")
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read()
    root = RootFS(tmp_path).add(mounts.proc())
    out, rc = run_in(root, "stat -c '%F %t:%T' /proc/timer_list /proc/keys; wc -c < /proc/keys; "
                           "echo x > /proc/sys/kernel/core_pattern || echo refused")
    assert out.startswith("character special file 1:3\ncharacter special file 1:3\n0\n")
    assert out.endswith("refused\n") and rc == 0
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == pattern


def test_cve_2022_23648_workdir_climbing_out_stays_inside(tmp_path: pathlib.Path) -> None:
    busybox_root(tmp_path)
    (tmp_path / "etc").mkdir()
    out, rc = run_in(RootFS(tmp_path), "pwd; ls", cwd="/../../etc")
    assert (out, rc) == ("/etc\n", 0)


_RENAME_EXCHANGE = 2


def _swapper(a: bytes, b: bytes) -> int:
    """A child that swaps ``a`` and ``b`` with renameat2(RENAME_EXCHANGE) until killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                libc.renameat2(-100, a, -100, b, _RENAME_EXCHANGE)
        finally:
            os._exit(0)
    return pid


@forked
def test_cve_2021_30465_and_2024_45310_swapped_targets_land_inside(
        tmp_path: pathlib.Path) -> None:
    """A mount target (and a missing volume path) raced into a symlink that points
    outside: every mount lands inside the root, nothing is created on the host."""
    root = tmp_path / "root"
    root.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (root / "vol").mkdir()
    os.symlink("../victim", root / "link")  # would reach the host's victim if followed
    vol, link = os.fsencode(root / "vol"), os.fsencode(root / "link")
    steps = [MountStep(None, str(root), kind=MountKind.ROOT),
             mounts.tmpfs("/vol", size="1m").in_root(),
             mounts.tmpfs("/vol/sub/deeper", size="1m").in_root()]
    landed: set[str] = set()
    refused = 0
    swapper = _swapper(vol, link)
    try:
        for _ in range(300):
            with Namespaces(mnt=True):  # each round's mounts vanish with its namespace
                try:
                    mounts.apply(steps)
                except NsbindError as exc:
                    # refused: a symlink at resolve time, or swapped away after the
                    # attach (the check finds another file there)
                    assert exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT,
                                         errno.EAGAIN, errno.EXDEV), exc
                    refused += 1
                landed.update(f[4] for f in mountinfo() if f[4].startswith(str(tmp_path)))
    finally:
        os.kill(swapper, signal.SIGKILL)
        os.waitpid(swapper, 0)
    assert landed, "no mount was made at all"
    assert all(p.startswith(str(root) + "/") for p in landed), landed
    assert os.listdir(victim) == []
    for p in ("vol", "link"):  # whatever was created went inside the root
        for dirpath, _, _ in os.walk(root / p):
            assert dirpath.startswith(str(root))


def test_cve_2022_0492_and_2023_25809_cgroupfs_is_not_writable(tmp_path: pathlib.Path) -> None:
    """Without a cgroup namespace /sys (and /sys/fs/cgroup) is read-only, and without
    CAP_SYS_ADMIN no cgroup v1 hierarchy (with its release_agent) can be mounted."""
    from nsbind import CapabilitySets

    busybox_root(tmp_path)
    root = RootFS(tmp_path).add(mounts.proc(), mounts.sysfs(), mounts.mkdir("/mnt"))
    out, _ = run_in(root, "grep -c ' /sys ro,' /proc/self/mountinfo; mount -t cgroup -o "
                          "memory none /mnt 2>&1 || echo refused; grep -c ' /mnt ' "
                          "/proc/self/mountinfo",
                    capabilities=CapabilitySets(permitted=frozenset()))
    assert out.startswith("1\n") and "refused" in out
    assert out.endswith("\n0\n")


def test_a_root_from_layers_lowest_first_shows_the_top_layer(tmp_path: pathlib.Path) -> None:
    """RootFS.from_layers takes layers as an image lists them (lowest first): the file of
    the top layer wins; one layer without an upper is bound read-only."""
    made = layers(tmp_path, 3)
    for layer, name in zip(made, ("base", "middle", "top"), strict=True):
        (layer / "which").write_text(name)
    with RootFS.from_layers(made, defaults=False) as root:
        assert run_in(root, "cat /which") == ("top", 0)
    with RootFS.from_layers(made[:1], defaults=False) as root:
        out, code = run_in(root, "cat /which; echo; touch /x 2>&1")
    assert out.startswith("base\n") and "Read-only" in out and code != 0
    assert not (made[0] / "x").exists()
    with pytest.raises(ValueError, match="at least one layer"):
        RootFS.from_layers([])


@pytest.mark.parametrize("link, target", [
    ("/proc", "/evil/sys/kernel"),                   # absolute, resolved inside the root
    ("../../../../proc", "/evil/sys"),               # relative, climbing out and back
    (None, "/proc/sys"),                             # named directly
], ids=["absolute", "relative", "direct"])
def test_cve_2019_19921_no_mount_lands_on_the_roots_procfs(
        tmp_path: pathlib.Path, link: str | None, target: str) -> None:
    busybox_root(tmp_path / "root")
    (tmp_path / "root" / "proc").mkdir()
    (tmp_path / "victim").mkdir()
    if link is not None:
        os.symlink(link, tmp_path / "root" / "evil")
    root = RootFS(tmp_path / "root", defaults=False).add(
        mounts.proc(), mounts.bind(str(tmp_path / "victim"), target))
    with pytest.raises(SpawnError, match=r"inside /proc.*CVE-2019-19921"):
        run_in(root, "true")
    # proc itself may go there, and so may the /proc files lxcfs replaces
    ok = RootFS(tmp_path / "root", defaults=False).add(
        mounts.proc(), mounts.bind("/proc/meminfo", "/proc/meminfo"))
    assert run_in(ok, "head -c 9 /proc/meminfo") == ("MemTotal:", 0)


@forked
def test_cve_2023_27561_a_target_swapped_into_proc_while_mounting_never_lands_there(
        tmp_path: pathlib.Path) -> None:
    """The mount target's directory is swapped with a symlink into the root's /proc
    (renameat2 RENAME_EXCHANGE, in a loop) while binds are made: each bind lands in the
    directory or is refused; procfs is never covered (the check is on the fd the mount
    goes onto)."""
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "evil" / "sys").mkdir(parents=True)
    os.symlink("/proc", root / "link")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "mark").write_text("victim\n")
    steps = [MountStep(None, str(root), kind=MountKind.ROOT),
             mounts.proc().in_root(),
             mounts.bind(str(tmp_path / "victim"), "/evil/sys").in_root()]
    landed = refused = 0
    swapper = _swapper(os.fsencode(root / "evil"), os.fsencode(root / "link"))
    try:
        for _ in range(200):
            with Namespaces(mnt=True, pid=False):  # the round's mounts go with it
                try:
                    mounts.apply(steps)
                except NsbindError as exc:
                    assert exc.errno in (errno.EPERM, errno.ELOOP, errno.ENOENT,
                                         errno.ENOTDIR, errno.EXDEV), exc
                    refused += 1
                    continue
                landed += 1
                # the bind is on the directory, never on the root's procfs
                assert not (root / "proc" / "sys" / "mark").exists()
                assert (root / "proc" / "sys" / "kernel").is_dir()
    finally:
        os.kill(swapper, signal.SIGKILL)
        os.waitpid(swapper, 0)
    assert landed + refused == 200 and landed
