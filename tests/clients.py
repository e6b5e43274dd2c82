"""Real OCI clients driving a runtime binary: podman (with conmon) and containerd (ctr
and the io.containerd.runc.v2 shim).

The same tests run against runc (the reference) and nsbind-oci: a client is told the
runtime's *path* (podman ``--runtime PATH``, ``ctr run --runc-binary PATH``), so nothing
on the machine is reconfigured.  Everything a client makes is private to the module's
fixture and removed at its teardown, also when a test failed:

podman
    one storage per module (``--root``/``--runroot``/``--tmpdir`` and a containers.conf
    and storage.conf of its own under a temp dir), the image imported from a tarred
    busybox rootfs (no network), containers under the cgroup parent
    ``/<test parent>/podman`` (podman also makes ``<parent>/conmon`` for conmon, in the
    v1 hierarchies; runc makes the parents in name=systemd and the v2 hierarchy).
    Those cgroups are made before the first test, so that a test's leak guard sees
    only what the test left, and removed, deepest first, at the end.
containerd
    one daemon per module (``--root``/``--state``/``--address`` in a temp dir, a
    config without the CRI plugin), an OCI image archive built here imported with
    ``ctr images import``, the runtime's state under ``--runc-root`` in the temp dir,
    ctr's fifos in ``--fifo-dir``, tasks in ``/<test parent>/ctr/<id>``.  Stopped by
    pid (TERM, then KILL), its shims (found by the daemon's socket address on their
    command line: only ours carry it) too.
registry
    Debian's docker-registry on 127.0.0.1:<free port> (:class:`Registry`, config and
    storage under a given directory, stopped by pid) and :func:`skopeo` to fill it:
    tests/test_registry.py and benchmarks/bench_pull.py use them.

Fixtures, defined as ``<name>_fixture`` (import those into a test module, which pytest
then offers by their names): ``podman_store`` (module) and ``podman`` (per test,
parametrized over RUNTIMES), ``containerd`` (module) and ``ctr`` (per test, parametrized
over RUNTIMES).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import itertools
import json
import os
import pathlib
import platform
import select
import shutil
import signal
import socket
import subprocess
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from helpers import busybox_root

#: the runtimes every client test runs against: the reference and ours
RUNTIMES = ("runc", "nsbind-oci")

PODMAN_IMAGE = "localhost/nsbind-test:latest"
CTR_IMAGE = "docker.io/library/nsbind-test:latest"
CTR_NAMESPACE = "nsbind-test"

#: where runc and crun keep a container's state for root (podman never passes --root)
DEFAULT_STATE_ROOTS = {"runc": "/run/runc", "crun": "/run/crun", "nsbind-oci": "/run/nsbind-oci"}


def runtime_path(name: str) -> str:
    """The binary of runtime ``name``: runc and crun from Debian, nsbind-oci the console
    script of the Python running the tests (not a pyenv shim on PATH)."""
    if name == "runc":
        return "/usr/sbin/runc"
    if name == "crun":
        return "/usr/bin/crun"
    if name == "nsbind-oci":
        return os.path.join(sysconfig.get_path("scripts"), "nsbind-oci")
    raise ValueError(f"unknown runtime {name!r}")


def need(*tools: str) -> None:
    """Skip the test when a client tool is not installed (scripts/test.sh installs them)."""
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages podman conmon containerd)")


def need_runtime(name: str) -> str:
    """The runtime's path; skips only when a reference runtime (runc, crun) is missing:
    nsbind-oci is this project's own, so a missing one fails the tests instead."""
    path = runtime_path(name)
    if name != "nsbind-oci" and not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not installed")
    return path


# --- the image --------------------------------------------------------------------------

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "tester:x:1000:1000:tester:/home/tester:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n"


def build_rootfs(path: os.PathLike[str] | str) -> str:
    """A busybox-static root with every applet linked, /etc/passwd (root, 1000 tester),
    /etc/group, the tester's home (owned by 1000 when made by root) and the usual empty
    mount points."""
    root = busybox_root(path)
    listing = subprocess.run([os.path.join(root, "bin", "busybox"), "--list"],
                             capture_output=True, text=True, check=True).stdout.split()
    for applet in listing:
        link = os.path.join(root, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "home/tester", "run", "var/tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    if os.geteuid() == 0:  # without root it stays the caller's (chown needs CAP_CHOWN)
        os.chown(os.path.join(root, "home/tester"), 1000, 1000)
    pathlib.Path(root, "etc/passwd").write_text(PASSWD)
    pathlib.Path(root, "etc/group").write_text(GROUP)
    return root


def tar_rootfs(rootfs: str, out: str) -> str:
    """``rootfs`` as an uncompressed tar (numeric owners, sorted, stable times): a layer."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs + files):
                full = os.path.join(dirpath, name)
                tar.add(full, arcname=os.path.relpath(full, rootfs), recursive=False,
                        filter=clean)
    return out


def _goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)


def oci_archive(layer_tar: str | Sequence[str], out: str, name: str = CTR_IMAGE, *,
                config: dict[str, Any] | None = None, arch: str | None = None,
                compress: bool = False) -> str:
    """An OCI image layout, tarred (what ``ctr images import`` reads), of one
    uncompressed layer, or of several (a sequence of tars, lowest first); the index
    names the image ``name`` for containerd.  ``config`` replaces the image config's
    ``config`` object, ``arch`` this host's architecture.  ``compress``: the layers
    stored gzipped (``tar+gzip``, as registries serve them; level 6, Go's default, no
    name, time 0: the same bytes every time), their diff_ids still those of the tars."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    layers: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    for path in [layer_tar] if isinstance(layer_tar, str) else layer_tar:
        data = pathlib.Path(path).read_bytes()
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        digest, size = blob(gzip.compress(data, 6, mtime=0) if compress else data)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" +
                       ("+gzip" if compress else ""), "digest": digest, "size": size})
    config = {
        "architecture": arch or _goarch(), "os": "linux",
        "config": config if config is not None else {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "nsbind tests/clients.py"}] * len(layers),
    }
    config_digest, config_size = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": layers,
    }
    manifest_digest, manifest_size = blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": arch or _goarch(), "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rpartition(":")[2]},
        }],
    }
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index).encode()}
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.partition(":")[2]] = data
    with tarfile.open(out, "w") as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out


# --- the registry ------------------------------------------------------------------------

REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Registry:
    """One docker-registry process on 127.0.0.1:<free port>, its config, storage and log
    under ``root``; plain HTTP, or htpasswd basic auth, or TLS with a CA made here by
    openssl (``cert_dir``: DIR/HOST:PORT/ca.crt).  :meth:`stop` stops it by pid."""

    def __init__(self, root: pathlib.Path, *, htpasswd: tuple[str, str] | None = None,
                 tls: bool = False) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.cert_dir = str(root / "certs.d")
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
                 "storage:", "  filesystem:", f"    rootdirectory: {root / 'data'}",
                 "http:", f"  addr: {self.host}", "  secret: nsbind-test"]
        if tls:
            self._make_certs()
            lines += ["  tls:", f"    certificate: {root / 'server.crt'}",
                      f"    key: {root / 'server.key'}"]
        if htpasswd is not None:
            subprocess.run(["htpasswd", "-Bbc", str(root / "htpasswd"), *htpasswd],
                           check=True, capture_output=True)
            lines += ["auth:", "  htpasswd:", "    realm: nsbind-test",
                      f"    path: {root / 'htpasswd'}"]
        (root / "config.yml").write_text("\n".join(lines) + "\n")
        self.start()

    def start(self) -> None:
        """Start the registry (again, after :meth:`stop`: same port, same storage) and
        wait until it accepts connections."""
        root = self.root
        self.log = open(root / "registry.log", "ab")  # noqa: SIM115 (closed in stop)
        # the registry reads REGISTRY_* variables as config (REGISTRY_AUTH_FILE: auth.file)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.proc = subprocess.Popen([REGISTRY, "serve", str(root / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("docker-registry did not start: " +
                                   (root / "registry.log").read_text()[-2000:])
            time.sleep(0.02)

    def _make_certs(self) -> None:
        r = self.root

        def ssl(*argv: str) -> None:
            subprocess.run(["openssl", *argv], check=True, capture_output=True, cwd=r)

        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=nsbind test CA", "-keyout", "ca.key", "-out", "ca.crt")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
        (r / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")
        host_dir = r / "certs.d" / self.host
        host_dir.mkdir(parents=True)
        shutil.copy(r / "ca.crt", host_dir / "ca.crt")

    def stop(self) -> None:
        """Stop the registry by its pid (idempotent)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


def skopeo(*argv: str, prefix: Sequence[str] = (), timeout: float = 60.0) -> str:
    """``skopeo --insecure-policy ARGV``'s output, asserting its success; ``prefix``: a
    command that execs it (a wrapper: ``unshare ... --``, say)."""
    proc = subprocess.run([*prefix, "skopeo", "--insecure-policy", *argv], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --- cgroups and mounts the clients make -------------------------------------------------


def cgroup_mounts() -> list[str]:
    """The mount point of every cgroup hierarchy (v1 with or without controllers, v2)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] in ("cgroup", "cgroup2"):
                points.append(fields[4])
    return points


@contextlib.contextmanager
def cgroup_everywhere(tag: str) -> Iterator[str]:
    """``/<tag>`` in every hierarchy (a benchmark's cgroup parent); it and what is below
    it removed at the end."""
    made = make_cgroup(tag)
    try:
        yield f"/{tag}"
    finally:
        remove_cgroups_below(tag)
        remove_cgroup_dirs(cgroup_dirs(tag))
        remove_cgroup_dirs(made)


def make_cgroup(rel: str) -> list[str]:
    """Make cgroup ``rel`` (and its missing parents) in every hierarchy; a new v1 cpuset
    gets its parent's cpus and mems.  Returns the directories made, parents first."""
    made = []
    for top in cgroup_mounts():
        path = top
        for part in rel.strip("/").split("/"):
            parent, path = path, os.path.join(path, part)
            if os.path.isdir(path):
                continue
            os.mkdir(path, 0o755)
            made.append(path)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                mine = os.path.join(path, knob)
                if os.path.exists(mine) and not pathlib.Path(mine).read_text().strip():
                    pathlib.Path(mine).write_text(
                        pathlib.Path(parent, knob).read_text().strip())
    return made


def cgroup_dirs(rel: str) -> list[str]:
    """Every directory at and below cgroup ``rel`` in every hierarchy, deepest first."""
    found = []
    for top in cgroup_mounts():
        base = os.path.join(top, rel.strip("/"))
        for dirpath, _dirs, _files in os.walk(base):
            found.append(dirpath)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _cgroup_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def remove_cgroups_below(rel: str, *, keep: Sequence[str] = (), timeout: float = 10.0) -> None:
    """Remove every cgroup below ``rel`` (not ``rel`` itself, nor the directories in
    ``keep``), deepest first, in every hierarchy.  Their member processes are SIGKILLed by
    pid first: only the clients' containers and conmons live there, all started by the
    tests (a process the runtime left behind, say)."""
    deadline = time.monotonic() + timeout
    top_dirs = {os.path.join(t, rel.strip("/")) for t in cgroup_mounts()}
    for path in cgroup_dirs(rel):
        if path in top_dirs or path in keep:
            continue
        while True:
            for pid in _cgroup_pids(path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def remove_cgroup_dirs(dirs: Sequence[str]) -> None:
    """rmdir the given cgroup directories (made by :func:`make_cgroup`), deepest first."""
    for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)


def keep_named_parent(cgroup_parent: str) -> None:
    """The session's test parent in the named v1 hierarchies (name=systemd), made again
    where a runtime's clean-up took it as empty (runc and crun make and remove parents
    there too).  conftest makes it at the start, so that containers made at once do not
    race to make and remove it, and removes it at the end."""
    from nsbind.cgroups import cgroup_layout

    if os.geteuid() != 0:
        return  # (unprivileged, the test parent is in the delegated v2 subtree only)
    for h in cgroup_layout().hierarchies:
        if h.version == 1 and h.name and not h.controllers:
            with contextlib.suppress(FileExistsError):
                os.mkdir(h.path_of(f"/{cgroup_parent}"))


def mounts_below(path: str) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    real = os.path.realpath(path)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == real or point.startswith(real.rstrip("/") + "/"):
                points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount_below(path: str) -> None:
    """Detach every mount at or below ``path`` (deepest first; bounded)."""
    import nsbind
    from nsbind import UmountFlags

    for _ in range(100):
        points = mounts_below(path)
        if not points:
            return
        for point in points:
            with contextlib.suppress(OSError):
                nsbind.umount2(point, UmountFlags.DETACH)
    raise RuntimeError(f"mounts below {path} would not go: {mounts_below(path)}")


def remove_tree(path: str) -> None:
    """Unmount what is below ``path``, then remove it (read-only bits of overlay work
    dirs included)."""
    unmount_below(path)
    if os.path.lexists(path):
        shutil.rmtree(path)


def state_dir_of(runtime: str, container_id: str, root: str | None = None) -> str:
    """Where runtime ``runtime`` keeps the state of ``container_id`` (under ``root``, or
    its default root for root)."""
    return os.path.join(root or DEFAULT_STATE_ROOTS[runtime], container_id)


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"{' '.join(map(str, proc.args))}\n  -> exit {proc.returncode}\n"
            f"  stdout: {proc.stdout!r}\n  stderr: {proc.stderr!r}")


def check(proc: subprocess.CompletedProcess[str], code: int = 0) -> str:
    """``proc``'s stdout, after asserting its exit status (the whole call in the message)."""
    assert proc.returncode == code, _describe(proc)
    return proc.stdout


def run_bounded(argv: list[str], *, env: dict[str, str] | None = None,
                input: str | None = None, timeout: float = 60.0,
                stdin: int | None = None, cwd: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output captured and a timeout that kills the client
    (its process group: a client's helper processes stay in it) instead of hanging."""
    with subprocess.Popen(argv, env=env, text=True, start_new_session=True, cwd=cwd,
                          stdin=subprocess.PIPE if input is not None else
                          (stdin if stdin is not None else subprocess.DEVNULL),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"{' '.join(argv)} took more than {timeout} s\n"
                                 f"  stdout: {out!r}\n  stderr: {err!r}") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_in_pty(argv: list[str], *, env: dict[str, str] | None = None,
               timeout: float = 30.0, cwd: str | None = None) -> tuple[int, str]:
    """Run ``argv`` with a new pty as its stdin, stdout and stderr (controlling terminal
    of a new session); returns (exit status, everything it wrote, \\r\\n as is)."""
    import fcntl
    import termios

    master, slave = os.openpty()

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True, preexec_fn=controlling_tty)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"{' '.join(argv)} under a pty took more than "
                                     f"{timeout} s; wrote {b''.join(chunks)!r}")
            ready, _, _ = select.select([master], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer closed the slave
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, b"".join(chunks).decode(errors="replace")


def processes_with(match: Callable[[list[bytes]], bool]) -> list[int]:
    """Pids of the processes whose argv ``match`` accepts (a process that is gone, or a
    kernel thread with an empty command line, is left out)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw and match(raw.rstrip(b"\0").split(b"\0")):
            pids.append(int(name))
    return pids


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(interval)


# --- podman -------------------------------------------------------------------------------

CONTAINERS_CONF = """\
# tests/clients.py: podman for the client tests, on a host without systemd
[containers]
# the host's default rlimits (1048576) exceed its hard limits, and root here lacks
# CAP_SYS_RESOURCE: every runtime would fail "setting rlimit"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
# default_sysctls stay podman's (net.ipv4.ping_group_range); --network none sends none

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
lock_type = "file"
hooks_dir = ["{base}/hooks"]
static_dir = "{base}/root/libpod"
volume_path = "{base}/root/volumes"
# podman passes --log-format=json --log FILE only to runtimes named here
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "nsbind-oci"]

[network]
network_config_dir = "{base}/net"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
runroot = "{base}/runroot"
graphroot = "{base}/root"
"""


#: where runc and nsbind-oci keep state when no --root is given (as root)
RUNTIME_DEFAULT_ROOTS = ("/run/runc", "/run/nsbind-oci", "/run/crun")


def remove_run_dir(path: str) -> None:
    """Remove a runtime's state root this run made once it holds no container: the
    runtime's caches (names with a leading dot, as nsbind-oci's compiled seccomp
    profiles) go with it; a container's directory keeps it."""
    with contextlib.suppress(OSError):
        for name in os.listdir(path):
            if name.startswith("."):
                shutil.rmtree(os.path.join(path, name), ignore_errors=True)
        os.rmdir(path)


class PodmanStore:
    """One private podman storage with the test image, shared by a module's tests."""

    def __init__(self, base: str, cgroup_parent: str) -> None:
        self.base = os.path.realpath(base)
        self.cgroup_parent = f"/{cgroup_parent}/podman"
        self.env = dict(os.environ,
                        CONTAINERS_CONF=f"{self.base}/containers.conf",
                        CONTAINERS_STORAGE_CONF=f"{self.base}/storage.conf",
                        CONTAINERS_REGISTRIES_CONF=f"{self.base}/registries.conf")
        self._made_cgroups: list[str] = []
        # conmon passes no --root: the runtimes keep state in their default roots
        self._made_run_dirs = [d for d in RUNTIME_DEFAULT_ROOTS if not os.path.exists(d)]

    def setup(self) -> None:
        for d in ("hooks", "net", "root", "runroot", "tmp", "image"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        pathlib.Path(self.base, "containers.conf").write_text(
            CONTAINERS_CONF.format(base=self.base))
        pathlib.Path(self.base, "storage.conf").write_text(STORAGE_CONF.format(base=self.base))
        pathlib.Path(self.base, "registries.conf").write_text(
            "unqualified-search-registries = []\n")
        # conmon's cgroup and the parents runc makes (name=systemd, v2): made now, before
        # the tests' leak guards look, removed at the end
        self._made_cgroups = make_cgroup(self.cgroup_parent + "/conmon")
        rootfs = build_rootfs(os.path.join(self.base, "image", "rootfs"))
        layer = tar_rootfs(rootfs, os.path.join(self.base, "image", "rootfs.tar"))
        check(self.podman("runc", "import", layer, PODMAN_IMAGE, timeout=60))

    def flags(self, runtime: str) -> list[str]:
        return ["--root", f"{self.base}/root", "--runroot", f"{self.base}/runroot",
                "--tmpdir", f"{self.base}/tmp", "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--runtime", runtime_path(runtime)]

    def podman(self, runtime: str, *args: str, input: str | None = None,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        # conmon inherits the working directory and leaves an "oom" file there
        return run_bounded(["podman", *self.flags(runtime), *args], env=self.env,
                           input=input, timeout=timeout, cwd=self.base)

    def container_ids(self) -> list[str]:
        proc = self.podman("runc", "ps", "-aq", "--no-trunc", timeout=30)
        return proc.stdout.split() if proc.returncode == 0 else []

    def created_ids(self) -> list[str]:
        """Every container podman created in this storage (its events log)."""
        ids = []
        with contextlib.suppress(FileNotFoundError), open(f"{self.base}/events.log") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("Type") == "container" and event.get("Status") == "create":
                        ids.append(str(event["ID"]))
        return list(dict.fromkeys(ids))

    def remove_containers(self, runtime: str) -> None:
        """Remove every container (as the runtime that made it), then whatever they left:
        runtime state, cgroups (their processes killed), rootfs mounts."""
        ids = self.container_ids()
        if ids:
            self.podman(runtime, "rm", "-f", "-t", "0", *ids, timeout=60)
            if self.container_ids():  # the runtime failed: storage and db still go
                self.podman("runc", "rm", "-f", "-t", "0", *ids, timeout=60)
        remove_cgroups_below(self.cgroup_parent,
                             keep=[d for d in self._made_cgroups if d.endswith("/conmon")])
        for cid in self.created_ids():  # a runtime that failed to delete (podman may have
            # forgotten the container already, run --rm): its state, by its own command
            for name in dict.fromkeys((runtime, *RUNTIMES)):
                state = state_dir_of(name, cid)
                if os.path.isdir(state):
                    run_bounded([runtime_path(name), "delete", "--force", cid], timeout=30)
                    with contextlib.suppress(FileNotFoundError):
                        shutil.rmtree(state)
        for cid in ids:
            for d in ("root/overlay-containers", "runroot/overlay-containers"):
                unmount_below(os.path.join(self.base, d, cid))
        # each podman process mounts its storage's overlay directory on itself and
        # unmounts it when it exits, unless it saw a layer still mounted then (containers/
        # storage's Shutdown): the cleanup podman that conmon starts when a container exits
        # (--rm) may still be running, and when the two race neither unmounts it. Once no
        # podman or conmon of this storage is left, what they left is unmounted here, as
        # the last of them would have (bounded waits)
        wait_until(lambda: not self.processes(), timeout=30)
        unmount_below(os.path.join(self.base, "root", "overlay"))

    def processes(self) -> list[int]:
        """The podman and conmon processes working on this storage (their command lines
        name it)."""
        needle = os.fsencode(self.base + "/")
        return processes_with(lambda argv: any(needle in arg for arg in argv))

    def close(self) -> None:
        try:
            self.remove_containers("runc")
            self.podman("runc", "rmi", "-af", timeout=60)
        finally:
            try:
                remove_cgroups_below(self.cgroup_parent)
                remove_cgroup_dirs(self._made_cgroups)
            finally:
                remove_tree(self.base)
                for d in self._made_run_dirs:  # made by a runtime here: gone when empty
                    remove_run_dir(d)


class Podman:
    """podman with one runtime (``--runtime PATH``) on a module's storage."""

    def __init__(self, store: PodmanStore, runtime: str) -> None:
        self.store = store
        self.runtime = runtime
        self.path = need_runtime(runtime)
        self.cgroup_parent = store.cgroup_parent

    def cmd(self, *args: str) -> list[str]:
        return ["podman", *self.store.flags(self.runtime), *args]

    def run(self, *args: str, input: str | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``podman ARGS`` (its global flags first); the result, never raising on failure."""
        return self.store.podman(self.runtime, *args, input=input, timeout=timeout)

    def run_options(self, *, rm: bool = True, detach: bool = False,
                    interactive: bool = False) -> list[str]:
        opts = ["run", "--network", "none", "--cgroup-parent", self.cgroup_parent]
        if rm:
            opts.append("--rm")
        if detach:
            opts.append("-d")
        if interactive:
            opts.append("-i")
        return opts

    def run_image(self, options: Sequence[str], command: Sequence[str], *,
                  rm: bool = True, detach: bool = False, input: str | None = None,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``podman run [defaults] OPTIONS IMAGE COMMAND``."""
        argv = [*self.run_options(rm=rm, detach=detach, interactive=input is not None),
                *options, PODMAN_IMAGE, *command]
        return self.run(*argv, input=input, timeout=timeout)

    def run_tty(self, options: Sequence[str], command: Sequence[str], *,
                timeout: float = 30.0) -> tuple[int, str]:
        """``podman run -t`` under a pty of its own: (exit status, what the pty showed)."""
        argv = self.cmd(*self.run_options(), "-t", *options, PODMAN_IMAGE, *command)
        return run_in_pty(argv, env=self.store.env, timeout=timeout, cwd=self.store.base)

    def inspect(self, cid: str) -> dict[str, Any]:
        out = check(self.run("inspect", cid, timeout=30))
        data = json.loads(out)
        assert isinstance(data, list) and data, out
        result: dict[str, Any] = data[0]
        return result

    def cleanup(self) -> None:
        self.store.remove_containers(self.runtime)


@pytest.fixture(scope="module", name="podman_store")
def podman_store_fixture(tmp_path_factory: pytest.TempPathFactory,
                 cgroup_parent: str) -> Iterator[PodmanStore]:
    """A private podman storage with the test image (module-wide), removed at the end."""
    need("podman", "conmon")
    # a short base (the run's temp dir, not pytest's deep one): conmon's attach socket
    # lives below it and a unix socket path has 108 bytes at most; with pytest's paths
    # podman sometimes failed to connect to it
    store = PodmanStore(tempfile.mkdtemp(prefix="pm-"), cgroup_parent)
    try:
        store.setup()
        yield store
    finally:
        store.close()


@pytest.fixture(params=RUNTIMES, name="podman")
def podman_fixture(podman_store: PodmanStore, request: pytest.FixtureRequest) -> Iterator[Podman]:
    """podman driving runtime ``request.param``; the test's containers are removed after."""
    runner = Podman(podman_store, request.param)
    try:
        yield runner
    finally:
        runner.cleanup()


# --- containerd ----------------------------------------------------------------------------

CONTAINERD_CONFIG = """\
# tests/clients.py: a private containerd for the client tests
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.native",
]

[grpc]
  address = "{base}/c.sock"

[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "100ms"

[plugins."io.containerd.runtime.v2.task"]
  platforms = ["linux/{arch}"]
"""


class Containerd:
    """A containerd daemon of the tests' own (a child of this process) with the test image."""

    def __init__(self, base: str, cgroup_parent: str) -> None:
        self.base = os.path.realpath(base)
        self.address = f"{self.base}/c.sock"
        self.cgroup_parent = f"/{cgroup_parent}/ctr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._made_cgroups: list[str] = []
        self._made_run_dirs: list[str] = []
        self.ids: set[str] = set()  # every container id the tests used

    def shim_socket(self, container_id: str) -> str:
        """Where containerd 1.6 puts the shim's socket of ``container_id``: a hash of this
        daemon's address, the namespace and the id under the fixed /run/containerd/s."""
        digest = hashlib.sha256(f"{self.address}/{CTR_NAMESPACE}/{container_id}".encode())
        return f"/run/containerd/s/{digest.hexdigest()}"

    def setup(self) -> None:
        os.makedirs(os.path.join(self.base, "fifo"), exist_ok=True)
        config = os.path.join(self.base, "config.toml")
        pathlib.Path(config).write_text(CONTAINERD_CONFIG.format(base=self.base, arch=_goarch()))
        # the shim puts its socket in /run/containerd/s (fixed in containerd 1.6)
        for d in ("/run/containerd", "/run/containerd/s"):
            if not os.path.isdir(d):
                self._made_run_dirs.append(d)
        self._made_cgroups = make_cgroup(self.cgroup_parent)
        with open(os.path.join(self.base, "containerd.log"), "wb") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", config, "--root", f"{self.base}/root",
                 "--state", f"{self.base}/state", "--address", self.address],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.base)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.address) and self.ctr("version", timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"containerd did not answer in 20 s:\n{self.log()}")
            time.sleep(0.05)
        rootfs = build_rootfs(os.path.join(self.base, "image", "rootfs"))
        layer = tar_rootfs(rootfs, os.path.join(self.base, "image", "rootfs.tar"))
        archive = oci_archive(layer, os.path.join(self.base, "image", "image.oci.tar"))
        check(self.ctr("images", "import", archive, timeout=60))

    def log(self) -> str:
        try:
            return pathlib.Path(self.base, "containerd.log").read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def ctr(self, *args: str, input: str | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run_bounded(["ctr", "-a", self.address, "-n", CTR_NAMESPACE, *args],
                           input=input, timeout=timeout, cwd=self.base)

    def runc_root(self, runtime: str) -> str:
        """The --runc-root given to the shim for ``runtime`` (it appends the namespace)."""
        return os.path.join(self.base, "runtime-state", runtime)

    def state_dir(self, runtime: str, container_id: str) -> str:
        return os.path.join(self.runc_root(runtime), CTR_NAMESPACE, container_id)

    def containers(self) -> list[str]:
        proc = self.ctr("containers", "list", "-q", timeout=30)
        found = proc.stdout.split() if proc.returncode == 0 else []
        self.ids.update(found)
        return found

    def created_ids(self) -> list[str]:
        """Every container podman created in this storage (its events log)."""
        ids = []
        with contextlib.suppress(FileNotFoundError), open(f"{self.base}/events.log") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("Type") == "container" and event.get("Status") == "create":
                        ids.append(str(event["ID"]))
        return list(dict.fromkeys(ids))

    def remove_containers(self, runtime: str) -> None:
        """Kill and delete every task and container (snapshots go with them), then
        what a failing runtime may have left: cgroups (processes killed), mounts."""
        for cid in self.containers():
            self.ctr("tasks", "kill", "-a", "-s", "KILL", cid, timeout=30)
            self.ctr("tasks", "delete", "-f", cid, timeout=30)
            self.ctr("containers", "delete", cid, timeout=30)
        remove_cgroups_below(self.cgroup_parent)
        unmount_below(os.path.join(self.base, "state"))

    def shims(self) -> list[int]:
        """Pids of the shims of this daemon: their command lines carry its address."""
        needle = self.address.encode()
        return processes_with(lambda argv: argv[0].endswith(b"containerd-shim-runc-v2")
                              and needle in argv)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.remove_containers("runc")
                self.ctr("images", "remove", CTR_IMAGE, timeout=30)
        finally:
            try:
                self.stop()
                for pid in self.shims():  # a shim whose task would not go: ours, by pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                wait_until(lambda: not self.shims(), timeout=10)
                for cid in self.ids:  # a killed shim leaves its socket
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.shim_socket(cid))
                remove_cgroups_below(self.cgroup_parent)
                remove_cgroup_dirs(self._made_cgroups)
            finally:
                remove_tree(self.base)
                for d in reversed(self._made_run_dirs):
                    with contextlib.suppress(OSError):  # left when not empty: not ours only
                        os.rmdir(d)


_ids = itertools.count(1)


class Ctr:
    """ctr against the module's daemon, its tasks run by runtime ``runtime``."""

    def __init__(self, daemon: Containerd, runtime: str) -> None:
        self.daemon = daemon
        self.runtime = runtime
        self.path = need_runtime(runtime)

    def __call__(self, *args: str, input: str | None = None,
                 timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.daemon.ctr(*args, input=input, timeout=timeout)

    def new_id(self, what: str) -> str:
        cid = f"{what}-{self.runtime}-{os.getpid()}-{next(_ids)}"
        self.daemon.ids.add(cid)
        return cid

    def cgroup_of(self, container_id: str) -> str:
        return f"{self.daemon.cgroup_parent}/{container_id}"

    def run_args(self, container_id: str, *, detach: bool = False) -> list[str]:
        return ["run", "--rm" if not detach else "-d",
                "--runc-binary", self.path, "--runc-root", self.daemon.runc_root(self.runtime),
                "--fifo-dir", f"{self.daemon.base}/fifo",
                "--cgroup", self.cgroup_of(container_id)]

    def run(self, container_id: str, command: Sequence[str], *, options: Sequence[str] = (),
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``ctr run --rm ... IMAGE ID COMMAND`` in the foreground: its exit status is the
        task's."""
        return self(*self.run_args(container_id), *options, CTR_IMAGE, container_id,
                    *command, timeout=timeout)

    def start(self, container_id: str, command: Sequence[str], *,
              options: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """``ctr run -d --null-io``: a task left running."""
        return self(*self.run_args(container_id, detach=True), "--null-io", *options,
                    CTR_IMAGE, container_id, *command, timeout=60)

    def exec(self, container_id: str, exec_id: str, command: Sequence[str],
             timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self("tasks", "exec", "--exec-id", exec_id, "--fifo-dir",
                    f"{self.daemon.base}/fifo", container_id, *command, timeout=timeout)

    def task_status(self, container_id: str) -> str | None:
        """The task's STATUS column in ``ctr tasks ls`` (RUNNING, STOPPED...), None if none."""
        out = self("tasks", "ls", timeout=30).stdout
        for line in out.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id:
                return fields[-1]
        return None

    def cleanup(self) -> None:
        self.daemon.remove_containers(self.runtime)


@pytest.fixture(scope="module", name="containerd")
def containerd_fixture(tmp_path_factory: pytest.TempPathFactory,
               cgroup_parent: str) -> Iterator[Containerd]:
    """A containerd daemon of the module's own with the test image, stopped at the end."""
    need("containerd", "ctr", "containerd-shim-runc-v2")
    daemon = Containerd(str(tmp_path_factory.mktemp("containerd")), cgroup_parent)
    try:
        daemon.setup()
        yield daemon
    finally:
        daemon.close()


@pytest.fixture(params=RUNTIMES, name="ctr")
def ctr_fixture(containerd: Containerd, request: pytest.FixtureRequest) -> Iterator[Ctr]:
    """ctr with runtime ``request.param``; the test's tasks and containers go after it."""
    client = Ctr(containerd, request.param)
    try:
        yield client
    finally:
        client.cleanup()


def podman_seccomp(profile: dict[str, Any], caps: set[str]) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` podman sends for a docker-style profile and the
    container's capabilities ``caps``: rules kept when their ``includes`` (caps all held,
    arches with this one, minKernel not above this kernel) hold and their ``excludes``
    do not; the architectures of this one's archMap entry."""
    machine = platform.machine()
    goarch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    arches = {goarch, machine}
    native = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}.get(goarch, "")
    kernel = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "syscalls": []}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for entry in profile.get("archMap") or ():
        if entry["architecture"] == native:
            out["architectures"] = [native, *(entry.get("subArchitectures") or ())]
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        min_kernel = inc.get("minKernel")
        if ((inc.get("arches") and not arches & set(inc["arches"]))
                or not set(inc.get("caps") or ()) <= caps
                or (min_kernel and kernel < tuple(int(x) for x in min_kernel.split(".")[:2]))
                or arches & set(exc.get("arches") or ())
                or caps & set(exc.get("caps") or ())):
            continue
        out["syscalls"].append({k: rule[k] for k in ("names", "action", "errnoRet", "args")
                                if rule.get(k) is not None})
    return out
