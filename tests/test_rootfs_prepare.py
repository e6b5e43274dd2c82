"""RootFS.prepare(): the shared part of a root made once, in a mount namespace each spawn
copies.  (tests/test_rootfs.py runs all of its tests with prepared roots too.)"""

from __future__ import annotations

import os
import pathlib
import threading

import pytest

from helpers import busybox_root
from nsbind import Namespaces, RootFS, mounts, spawn
from nsbind.errors import NsbindError

NS = Namespaces(pid=True, mnt=True)


def _sleepers(root: RootFS, n: int, script: str = "sleep 60") -> list[object]:
    return [spawn(["/bin/sh", "-c", script], namespaces=NS, rootfs=root,
                  env={"PATH": "/bin"}) for _ in range(n)]


def _mountinfo(pid: int) -> list[list[str]]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line.split() for line in f]


def test_spawns_of_a_prepared_root_copy_its_namespace_and_make_their_own_proc(
        tmp_path: pathlib.Path) -> None:
    with open("/proc/self/mountinfo") as f:
        host_before = f.read()
    with RootFS(busybox_root(tmp_path), readonly=True).add(mounts.proc()).prepare() as root:
        procs = _sleepers(root, 2)
        try:
            infos = [_mountinfo(p.pid) for p in procs]  # type: ignore[attr-defined]
            nss = {os.stat(f"/proc/{p.pid}/ns/mnt").st_ino for p in procs}  # type: ignore
            assert len(nss) == 2  # each its own copy
            assert os.stat("/proc/self/ns/mnt").st_ino not in nss
            for info in infos:
                # the container's mounts only: no host mount was ever copied in
                assert [f[4] for f in info if not f[4].startswith("/proc/")] == ["/", "/proc"]
                assert next(f for f in info if f[4] == "/")[5].startswith("ro")  # readonly=
            proc_devs = [next(f[2] for f in info if f[4] == "/proc") for info in infos]
            assert proc_devs[0] != proc_devs[1]  # a proc of each pid namespace
            for p in procs:  # each proc shows its own pid namespace: only its pid 1
                pids = [e for e in os.listdir(f"/proc/{p.pid}/root/proc")  # type: ignore
                        if e.isdigit()]
                assert pids == ["1"]
        finally:
            for p in procs:
                p.kill()  # type: ignore[attr-defined]
                p.wait()  # type: ignore[attr-defined]
    with open("/proc/self/mountinfo") as f:
        assert f.read() == host_before


def test_a_prepared_root_follows_later_changes(tmp_path: pathlib.Path) -> None:
    root_dir = busybox_root(tmp_path)
    os.mkdir(os.path.join(root_dir, "secret"))
    with open(os.path.join(root_dir, "secret", "f"), "w") as f:
        f.write("x")
    with RootFS(root_dir, defaults=False).prepare() as root:
        def ls() -> bytes:
            with spawn(["/bin/ls", "/secret"], namespaces=NS, rootfs=root,
                       stdout=-1) as proc:
                return proc.communicate()[0] or b""

        assert ls() == b"f\n"
        root.mask("/secret")
        assert ls() == b""


def test_concurrent_spawns_of_a_prepared_overlay_share_one_overlay(
        tmp_path: pathlib.Path) -> None:
    lower, upper, work = (tmp_path / n for n in ("lower", "upper", "work"))
    busybox_root(lower)
    upper.mkdir()
    work.mkdir()
    with RootFS.overlay([lower], upper, work, defaults=False).prepare() as root:
        writer = _sleepers(root, 1, "echo hello > /note; sleep 60")[0]
        try:
            with spawn(["/bin/sh", "-c", "while ! test -e /note; do sleep 0.01; done; cat /note"],
                       namespaces=NS, rootfs=root, stdout=-1, env={"PATH": "/bin"}) as reader:
                out, _ = reader.communicate(timeout=30)
            assert out == b"hello\n"  # without prepare(): EBUSY (upperdir in use)
        finally:
            writer.kill()  # type: ignore[attr-defined]
            writer.wait()  # type: ignore[attr-defined]
    assert (upper / "note").read_text() == "hello\n"


def test_user_namespace_spawns_of_a_prepared_root_assemble_it_themselves(
        tmp_path: pathlib.Path) -> None:
    with RootFS(busybox_root(tmp_path)).add(mounts.proc()).prepare() as root:
        with spawn(["/bin/sh", "-c", "id -u; awk '$5 == \"/\"' /proc/self/mountinfo | wc -l"],
                   namespaces=Namespaces(user=True, pid=True, mnt=True), rootfs=root,
                   stdout=-1, env={"PATH": "/bin"}) as proc:
            out, _ = proc.communicate(timeout=30)
        assert (out, proc.returncode) == (b"0\n1\n", 0)


def test_a_failing_prepare_names_the_step_and_leaves_nothing(tmp_path: pathlib.Path) -> None:
    root = RootFS(busybox_root(tmp_path), defaults=False)
    root.add(mounts.bind(tmp_path / "missing", "/data"), mounts.proc())
    threads = threading.active_count()
    with pytest.raises(NsbindError, match=r"^rbind mount .*/missing on /data in the root: "
                                          r"ENOENT"):
        root.prepare()
    assert threading.active_count() == threads
    assert not os.path.exists(tmp_path / "data")
    root.close()  # nothing prepared: nothing to release (the leak guard checks the fds)


def test_a_prepared_root_hands_the_child_no_extra_fd(tmp_path: pathlib.Path) -> None:
    """The template namespace fd and the /dev/null bind are used before the child's
    close_range: the command gets exactly its stdio."""
    with RootFS(busybox_root(tmp_path)).add(mounts.proc()).prepare() as root:
        with spawn(["/bin/ls", "/proc/self/fd"], namespaces=NS, rootfs=root,
                   stdout=-1) as proc:
            out, _ = proc.communicate(timeout=30)
    assert out is not None and out.split() == [b"0", b"1", b"2", b"3"]  # 3: ls's own dir


def _plant(root_dir: str, host_path: pathlib.Path, text: str) -> None:
    """Put an image file where a host path would resolve inside the root."""
    inside = pathlib.Path(root_dir + str(host_path))
    inside.mkdir(parents=True, exist_ok=True)
    (inside / "file").write_text(text)


def _host_volume(tmp_path: pathlib.Path, text: str, file_text: str
                 ) -> tuple[pathlib.Path, pathlib.Path]:
    """A host directory with a file in it, and a host file, to bind into roots."""
    host_dir = tmp_path / "hostvol"
    host_dir.mkdir()
    (host_dir / "file").write_text(text)
    host_file = tmp_path / "hostfile"
    host_file.write_text(file_text)
    return host_dir, host_file


def test_a_prepared_roots_bind_source_is_the_hosts_not_the_images(
        tmp_path: pathlib.Path) -> None:
    """Host sources of a prepared root are opened on the host before any step runs in
    the container's root: an image (or a running container) that plants a file at the
    host path cannot hand later containers its own 'volume'."""
    host_dir, host_file = _host_volume(tmp_path, "from the host", "host file")
    root_dir = busybox_root(tmp_path / "root")
    _plant(root_dir, host_dir, "planted by the image")
    pathlib.Path(root_dir + str(host_file)).write_text("planted file")
    for prepared in (False, True):
        root = RootFS(root_dir).add(mounts.proc(), mounts.bind(host_dir, "/vol"),
                                    mounts.bind(host_file, "/etc/f", readonly=True))
        with (root.prepare() if prepared else root) as ready:
            for _ in range(2):  # the second spawn too (a kept plan must open them again)
                with spawn(["/bin/sh", "-c", "cat /vol/file; echo; cat /etc/f"], namespaces=NS,
                           rootfs=ready, env={"PATH": "/bin"}, stdout=-1) as proc:
                    out, _ = proc.communicate(timeout=30)
                assert (out, proc.returncode) == (b"from the host\nhost file", 0), prepared


def test_a_prepared_root_with_a_host_overlay_step_assembles_it_per_spawn(
        tmp_path: pathlib.Path) -> None:
    """An overlay after the per-container filesystems names host layers: the spawn
    assembles the root itself (as without prepare) rather than read them inside it."""
    low1, low2, host_m = tmp_path / "l1", tmp_path / "l2", "/mnt"
    for d in (low1, low2):
        d.mkdir()
    (low1 / "file").write_text("host layer")
    root_dir = busybox_root(tmp_path / "root")
    _plant(root_dir, low1, "planted layer")
    os.makedirs(os.path.join(root_dir, str(low2).lstrip("/")), exist_ok=True)
    step = mounts.overlay_step(host_m, [low1, low2])
    with RootFS(root_dir).add(mounts.proc(), step).prepare() as root:
        with spawn(["/bin/cat", "/mnt/file"], namespaces=NS, rootfs=root, stdout=-1) as proc:
            out, _ = proc.communicate(timeout=30)
    assert (out, proc.returncode) == (b"host layer", 0)


_PROBE = ("cat /proc/self/mountinfo | cut -d' ' -f5,6,9,10 | sed 's/,\\?relatime//' | sort; "
          "ls -ln /dev /vol | sed 's/ [A-Z][a-z][a-z] .* / /'; cat /vol/file /etc/f; "
          "touch /vol/new /etc/f /proc/sys/x /sys/x 2>&1 | sed 's/^touch: //' | sort; "
          "cat /proc/kcore 2>&1 | wc -c; ls /secret 2>&1; hostname")


def test_every_step_kind_does_the_same_in_a_plain_and_a_prepared_root(
        tmp_path: pathlib.Path) -> None:
    """A differential test: the same RootFS, every kind of step (filesystems, binds of a
    directory and a file, read-only, devices, symlinks, directories, masks, read-only
    paths, a read-only root), spawned plain and prepared: the same mount table (points,
    types, options), the same /dev, the same contents and the same refusals."""
    host_dir, host_file = _host_volume(tmp_path, "vol\n", "f\n")
    outs = []
    for prepared in (False, True):  # each its own copy of the image: steps create files
        root_dir = busybox_root(tmp_path / f"root-{prepared}")
        _plant(root_dir, host_dir, "planted\n")
        os.mkdir(os.path.join(root_dir, "secret"))
        (pathlib.Path(root_dir) / "secret" / "s").write_text("s")
        root = RootFS(root_dir, readonly=True).add(
            mounts.proc(), mounts.sysfs(), mounts.dev(), mounts.tmpfs("/tmp", size="1m"),
            mounts.mqueue(), mounts.bind(host_dir, "/vol"),
            mounts.bind(host_file, "/etc/f", readonly=True), mounts.mkdir("/made"),
            mounts.symlink("/link", "/made"), mounts.device("/dev/mine", 1, 3))
        root.mask("/secret")
        with (root.prepare() if prepared else root) as ready:
            with spawn(["/bin/sh", "-c", _PROBE], namespaces=Namespaces(
                    pid=True, mnt=True, uts=True, ipc=True), hostname="diff", rootfs=ready,
                    env={"PATH": "/bin"}, stdout=-1, stderr=-2) as proc:
                out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        outs.append(out.decode() if out else "")
        (host_dir / "new").unlink()  # the volume is writable: the probe made it
    assert outs[0] == outs[1]
    assert "vol\nf\n" in outs[0] and "planted" not in outs[0]
