"""Run nsbind's test suite on the kernels users run, in qemu virtual machines.

This host is one kernel (a recent one) with one cgroup layout.  This boots Debian's
kernels - ``linux-image-amd64`` (6.1) and the newest ``linux-image-6.12.*-amd64-unsigned``
(6.12) - under qemu (plain emulation: with -enable-kvm the guest hangs on this
machine), with the cgroup layout chosen at boot:

``v2``
    pure cgroup v2 (``cgroup_no_v1=all``), every controller enabled at the root as
    systemd does;
``hybrid``
    v1 controllers mounted as Debian 10 and Ubuntu 20.04's systemd did (``cpu,cpuacct``
    and ``net_cls,net_prio`` co-mounted, with their single-name links), a named
    ``systemd`` hierarchy and an empty cgroup2 at ``/sys/fs/cgroup/unified``.

The guest's root is this host's root, read-only over 9p, under an overlay whose upper
layer is guest memory: the tests find the same interpreter, checkout and peers
(runc, podman, containerd ...) and may write anywhere, but nothing reaches the host.
The other way round, the guest reads the host's files live: the host's own test runs
beside a guest (the rootless ones add users to /etc/passwd, /etc/subuid and /etc/subgid
for a while) reach the guest, whose tests then fail where they make their users.
Its own /proc, /sys, /dev, the cgroup mounts, tmpfs on /run and /var/tmp and an ext4
/tmp (a sparse disk image the host makes: user xattrs and idmapped mounts, which tmpfs
lacks before 6.6 and 6.3) are mounted over it, the kernel's modules are this kernel
package's (``modprobe`` is busybox's, over a modules.dep made when the package was
unpacked), and a 64 MiB virtio disk (the first) is there for the io controller tests.
A busybox initramfs builds that root and switches into it (not a chroot: the kernel
refuses user namespaces in one), then runs ``python -m pytest`` and prints
``NSBIND-VM-RESULT <status>``.

    python3 tests/vm.py [--kernel 6.1] [--cgroups v2] [-- pytest args]
    python3 tests/vm.py --matrix --jobs 2   # 6.1 and 6.12, v2 and hybrid (make test-kernels)

Each combination prints ``kernel 6.1.0-NN-amd64 cgroups v2: N passed, M failed, K
skipped`` and pytest's summary (and, when several run, a ``done:`` line as each ends,
so a matrix cut short keeps what finished); the exit status is non-zero if any failed.
A whole-suite run records each test file that passed for the code it ran, kernel and
layout, as the guest prints the file's line (``tests/vmfiles.py``), in the checkout's
ledger (``tests/vmrecords.py``: ``kernel-matrix.json``, committed with the code), and
boots the guest for the files without such a record only; once every file has one, the
combination is reported from the records, marked: the four take longer than a working
session here, a stopped run keeps the files it finished, and
a fix to one test file runs that file again (``--fresh`` runs every file).  Needs
root, qemu-system-x86, busybox-static and apt access to download the kernel packages
(cached, unpacked, in ~/.cache/nsbind-vm or $NSBIND_VM_CACHE).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import dataclasses
import gzip
import io
import lzma
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable

import vmrecords  # beside this file (sys.path[0], or pytest's rootdir insertion)

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("NSBIND_VM_CACHE",
                                    pathlib.Path.home() / ".cache" / "nsbind-vm"))
BUSYBOX = "/usr/bin/busybox"
KERNELS = ("6.1", "6.12")
LAYOUTS = ("v2", "hybrid")
# loaded by the initramfs (the rest is loaded on demand by busybox's modprobe)
MODULES = ["virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "virtio_blk", "loop", "netfs", "fscache", "9pnet", "9pnet_virtio",
           "9p", "overlay", "crc32c_generic", "crc16", "mbcache", "jbd2", "ext4"]
OPTIONAL_MODULES = {"fscache", "virtio_pci_legacy_dev", "loop", "netfs"}  # built in on some
MARKER = "NSBIND-VM-RESULT"
GUEST_ENV = "NSBIND_VM_GUEST"  # set in the guest: "<kernel release> <layout>"
DEFAULT_PYTEST = ["tests"]
TMP_DISK_BYTES = 8 << 30
#: the guest's first line once its root is up; a boot that has not printed it in
#: BOOT_SECONDS is killed and made again (one in a dozen or so hung, idle, before it here)
BOOTED = "guest kernel "
BOOT_SECONDS = 300
BOOT_ATTEMPTS = 3

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "$MARKER $1 ($2)"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /modules/$m.ko || echo "insmod $m failed"; done
mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 host /host ||
    fail 98 "no 9p root"
mount -t tmpfs -o mode=755 rw /rw && mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work root /newroot ||
    fail 97 "no overlay root"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs shm $R/dev/shm
for f in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
    ln -sf ${f#*:} $R/dev/${f%%:*}
done
mount -t tmpfs -o mode=755 run $R/run
# /tmp on ext4, as a Debian install has it (user xattrs and idmapped mounts, which
# tmpfs gains only in 6.6 and 6.3): the second virtio disk, made by the host
mount -t ext4 /dev/vdb $R/tmp && chmod 1777 $R/tmp || fail 95 "no ext4 /tmp"
mount -t tmpfs -o mode=1777 vartmp $R/var/tmp
# a checkout under one of those (a CI clone in /tmp) comes back as the root does: the
# host's, read-only, under an overlay in guest memory (where its modules are compiled);
# with the directory it is in, which holds shared/ (the test images) beside it
case $CHECKOUT in /tmp/*|/var/tmp/*|/run/*)
    B=$(dirname $CHECKOUT)
    case $B in /tmp|/var/tmp|/run) B=$CHECKOUT ;; esac
    mkdir -p $R$B /rw/checkout /rw/checkout-work &&
    mount -t overlay -o lowerdir=/host$B,upperdir=/rw/checkout,workdir=/rw/checkout-work \
        checkout $R$B || fail 94 "no overlay for the checkout" ;; esac
# the kernel's modules, and busybox's modprobe for the kernel to call
mkdir -p $R/usr/lib/modules/$RELEASE $R/usr/lib/nsbind-vm
mount --bind $R$MODULES_TREE $R/usr/lib/modules/$RELEASE
ln -s /usr/bin/busybox $R/usr/lib/nsbind-vm/modprobe
echo /usr/lib/nsbind-vm/modprobe > /proc/sys/kernel/modprobe
$CGROUPS
umount /proc /sys /dev
exec switch_root $R /usr/bin/busybox sh -c "$STAGE2"
fail 96 "switch_root failed"
""".replace("$MARKER", MARKER)

CGROUPS_V2 = r"""mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
for c in $(cat $R/sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > $R/sys/fs/cgroup/cgroup.subtree_control
done"""

# systemd's hybrid layout (Debian 10, Ubuntu 20.04): each enabled v1 controller on a
# hierarchy of its own, cpu+cpuacct and net_cls+net_prio together with a link per name
CGROUPS_HYBRID = r"""C=$R/sys/fs/cgroup
mount -t tmpfs -o mode=755 tmpfs $C
enabled=" $(awk 'NR > 1 && $4 == 1 {printf "%s ", $1}' /proc/cgroups)"
for h in cpu,cpuacct net_cls,net_prio cpuset memory devices freezer blkio perf_event \
         hugetlb pids rdma misc; do
    want=
    for c in $(echo $h | tr , ' '); do
        case "$enabled" in *" $c "*) want=${want:+$want,}$c ;; esac
    done
    [ -n "$want" ] || continue
    # a kernel may lack a controller's v1 side (Debian's 6.12: memory and cpuset): it
    # stays on v2 only (not enabled at its root: systemd enables none there when hybrid),
    # with no empty directory in its place
    mkdir $C/$want
    if ! mount -t cgroup -o $want cgroup $C/$want 2>/dev/null; then
        rmdir $C/$want && echo "cgroup v1 $want: not in this kernel" && continue
    fi
    case $want in *,*) for c in $(echo $want | tr , ' '); do ln -s $want $C/$c; done ;; esac
done
mkdir $C/systemd $C/unified
mount -t cgroup -o none,name=systemd cgroup $C/systemd
mount -t cgroup2 cgroup2 $C/unified"""

STAGE2 = r"""export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
hostname nsbind-guest
ip link set lo up
# /dev/net/tun, which udev makes as a static node: no udev here, and busybox's depmod
# leaves out tun's char-major alias, so the module is loaded (devtmpfs's node is 0600,
# as this host's: the rootless tests bind a 0666 node of their own over it)
busybox modprobe tun
echo "guest kernel $(uname -r) cgroups $LAYOUT: $(cat /proc/self/cgroup | tr '\n' ' ')"
cd $CHECKOUT && eval "$(echo $COMMAND | base64 -d)"
echo "$MARKER $?"
busybox poweroff -f"""


@dataclasses.dataclass(frozen=True)
class Kernel:
    package: str
    release: str  # uname -r
    vmlinuz: pathlib.Path
    modules: pathlib.Path  # lib/modules/<release>: decompressed, with busybox's modules.dep


def _newest_612() -> str:
    names = subprocess.run(["apt-cache", "pkgnames", "linux-image-6.12."], check=True,
                           capture_output=True, text=True).stdout.split()
    found = []
    for name in names:
        m = re.fullmatch(r"linux-image-6\.12\.(\d+)\+deb(\d+)-amd64-unsigned", name)
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), name))
    if not found:
        raise RuntimeError("apt knows no linux-image-6.12.*-amd64-unsigned package "
                           "(bookworm-security or bookworm-backports carries it)")
    return max(found)[1]


def kernel_package(series: str) -> str:
    """The Debian package of kernel ``series`` ("6.1": what linux-image-amd64 pulls in)."""
    if series == "6.12":
        return _newest_612()
    if series != "6.1":
        raise ValueError(f"kernel {series!r}: one of {', '.join(KERNELS)}")
    deps = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True,
                          capture_output=True, text=True).stdout
    match = re.search(r"Depends: (linux-image-\S+)", deps)
    if match is None:
        raise RuntimeError(f"cannot tell which kernel linux-image-amd64 is:\n{deps}")
    return match.group(1)


def _unpack(deb: pathlib.Path, root: pathlib.Path) -> None:
    """Unpack a kernel package: modules decompressed (busybox's insmod and modprobe take
    plain .ko files), busybox's depmod run over them."""
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    for xz in root.glob("lib/modules/*/kernel/**/*.ko.xz"):
        xz.with_suffix("").write_bytes(lzma.decompress(xz.read_bytes()))
        xz.unlink()
    release = next((root / "lib" / "modules").iterdir()).name
    subprocess.run([BUSYBOX, "depmod", "-b", root, release], check=True)


def fetch(series: str) -> Kernel:
    """Download and unpack kernel ``series`` (once: cached under CACHE)."""
    package = kernel_package(series)
    tree = CACHE / f"{package}.unpacked"
    if not (tree / "boot").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True,
                           capture_output=True)
            deb = next(pathlib.Path(tmp).glob("*.deb"))
            _unpack(deb, pathlib.Path(tmp) / "root")
            os.rename(f"{tmp}/root", tree)
    vmlinuz = next((tree / "boot").glob("vmlinuz-*"))
    modules = next((tree / "lib" / "modules").iterdir())
    return Kernel(package, modules.name, vmlinuz, modules)


def _find_modules(kernel: pathlib.Path) -> list[tuple[str, bytes]]:
    """The initramfs's modules' bytes, dependencies first (read from their .modinfo);
    those built into the kernel (modules.builtin) are not needed."""
    found = {p.name.removesuffix(".ko"): p for p in kernel.rglob("*.ko")}
    data = {name: found[name].read_bytes() for name in MODULES if name in found}
    builtin = kernel.parent / "modules.builtin"
    built_in = {pathlib.PurePath(line).name.removesuffix(".ko").replace("-", "_")
                for line in builtin.read_text().split()} if builtin.exists() else set()
    missing = set(MODULES) - set(data) - OPTIONAL_MODULES - built_in
    if missing:
        raise RuntimeError(f"the guest kernel lacks modules {sorted(missing)}")
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in data:
            return
        m = re.search(rb"depends=([^\0]*)", data[name])
        for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
            visit(dep.replace("-", "_"))
        order.append(name)

    for name in MODULES:
        visit(name)
    return [(name, data[name]) for name in order]


def _cpio(files: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (path, mode, content); symlinks carry their target."""
    out = io.BytesIO()
    for ino, (name, mode, content) in enumerate([*files, ("TRAILER!!!", 0, b"")], 1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(content), 0, 0, 0, 0, len(raw), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        out.write(b"\0" * (-(110 + len(raw)) % 4))
        out.write(content)
        out.write(b"\0" * (-len(content) % 4))
    return out.getvalue()


def _init(kernel: Kernel, layout: str, command: str) -> str:
    for text in (str(ROOT), str(kernel.modules)):
        if any(c in text for c in "'\"$`\\ "):
            raise ValueError(f"a quote or shell character in a guest path: {text}")
    encoded = base64.b64encode(command.encode()).decode()  # any shell text, passed intact
    stage2 = (STAGE2.replace("$LAYOUT", layout).replace("$CHECKOUT", str(ROOT))
              .replace("$COMMAND", encoded).replace("$MARKER", MARKER))
    cgroups = CGROUPS_V2 if layout == "v2" else CGROUPS_HYBRID
    return (INIT.replace("$CGROUPS", cgroups).replace("$RELEASE", kernel.release)
            .replace("$CHECKOUT", str(ROOT))
            .replace("$MODULES_TREE", str(kernel.modules))
            .replace('"$STAGE2"', "'" + stage2.replace("'", "'\\''") + "'"))


def _initramfs(kernel: Kernel, layout: str, command: str) -> bytes:
    modules = _find_modules(kernel.modules / "kernel")
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    files: list[tuple[str, int, bytes]] = [
        (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "modules", "host")]
    files += [("bin/busybox", 0o100755, busybox),
              ("init", 0o100755, _init(kernel, layout, command).encode()),
              ("modules.order", 0o100644, "\n".join(n for n, _ in modules).encode() + b"\n")]
    files += [(f"modules/{name}.ko", 0o100644, data) for name, data in modules]
    return gzip.compress(_cpio(files), 1)


def _pytest_command(kernel: Kernel, layout: str, args: list[str]) -> str:
    python = sys.executable  # not resolved: a venv is recognised by this path
    env = {"PYTHONDONTWRITEBYTECODE": "1", "HOME": "/root", "CI": os.environ.get("CI", ""),
           GUEST_ENV: f"{kernel.release}:{layout}", "PY_COLORS": "0"}
    settings = " ".join(f"{k}={v}" for k, v in env.items() if v)
    quoted = " ".join(shlex.quote(a) for a in args)  # a -k expression is one argument
    # The checkout's modules compiled first, into the guest's overlay (host untouched):
    # under PYTHONDONTWRITEBYTECODE every Python process the tests start (nsbind-oci
    # called by podman four times a container, nsbind, helpers) would otherwise compile
    # each module it imports, about 0.1 s a process here and over a second under
    # emulation (a third of test_oci_cli.py's time in the 6.1 guest).
    compile_first = f"{python} -m compileall -q -j 2 src tests >/dev/null; "
    return (f"{compile_first}env {settings} {python} -m pytest -p no:cacheprovider -q "
            f"-rfEs {quoted}")


_ECHO = threading.Lock()  # guests run at once echo whole lines, each with its prefix
_GUESTS: set[subprocess.Popen[bytes]] = set()  # the qemu processes running, under _ECHO
_STOP = threading.Event()  # the runner was told to stop: no guest is booted any more


def _stop_guests(signum: int, _frame: object) -> None:
    """SIGTERM, SIGHUP or SIGINT: kill every guest; the runs then end as a guest that was
    killed does (status 99), their temporary files (a sparse 8 GiB disk each) removed."""
    _STOP.set()
    with _ECHO:
        print(f"{signal.Signals(signum).name}: stopping the guests", flush=True)
        for proc in list(_GUESTS):
            proc.kill()


def run(pytest_args: list[str] | None = None, *, kernel: str = "6.1", cgroups: str = "v2",
        timeout: float = 1500, echo: bool = True, memory_mib: int = 4096,
        command: str | None = None, prefix: str = "",
        on_line: Callable[[str], None] | None = None) -> tuple[int, str]:
    """Boot ``kernel`` with ``cgroups`` layout and run pytest there (or ``command``, a
    shell command line in the checkout); (its exit status, the console, echoed line by
    line after ``prefix``, and each line passed to ``on_line`` as it comes).  A guest
    that does not finish in ``timeout`` seconds is killed (99)."""
    if cgroups not in LAYOUTS:
        raise ValueError(f"cgroups {cgroups!r}: one of {', '.join(LAYOUTS)}")
    for tool in ("qemu-system-x86_64", "apt-get", "dpkg-deb", "mkfs.ext4"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is missing (Debian: qemu-system-x86, apt, dpkg)")
    k = fetch(kernel)
    if command is None:
        command = _pytest_command(k, cgroups, pytest_args or DEFAULT_PYTEST)
    append = "console=ttyS0 panic=-1 quiet loglevel=3"
    if cgroups == "v2":
        append += " cgroup_no_v1=all"
    with tempfile.TemporaryDirectory(prefix="nsbind-vm-") as tmp:
        work = pathlib.Path(tmp)
        (work / "initrd").write_bytes(_initramfs(k, cgroups, command))
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            _code, lines, booted = _boot(k, work, append, timeout, echo, memory_mib, prefix,
                                         on_line)
            if booted or attempt == BOOT_ATTEMPTS or _STOP.is_set():
                break
            with _ECHO:  # a boot that hangs is not the suite's failure: boot again
                print(f"{prefix}the guest did not boot in {BOOT_SECONDS} s (attempt "
                      f"{attempt} of {BOOT_ATTEMPTS}): booting it again", flush=True)
    console = "\n".join(lines)
    found = re.findall(rf"{MARKER} (\d+)", console)
    return (int(found[-1]) if found else 99), console


def _boot(k: Kernel, work: pathlib.Path, append: str, timeout: float, echo: bool,
          memory_mib: int, prefix: str,
          on_line: Callable[[str], None] | None) -> tuple[int, list[str], bool]:
    """One boot of the guest prepared in ``work``: (qemu's status, the console's lines,
    whether the guest came up).  qemu is killed after ``timeout`` seconds, or after
    BOOT_SECONDS if the guest has not said it is up by then."""
    disk = work / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(0)
        f.truncate(64 << 20)  # a virtio block device for the io controller tests
    tmp_disk = work / "tmp.img"  # the guest's /tmp (sparse: grows as it is written)
    with open(tmp_disk, "wb") as f:
        f.truncate(0)
        f.truncate(TMP_DISK_BYTES)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1",
                    str(tmp_disk)], check=True, capture_output=True)
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mib), "-smp", "2",
           "-nographic", "-no-reboot", "-kernel", str(k.vmlinuz),
           "-initrd", str(work / "initrd"), "-append", append,
           "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,"
                      "multidevs=remap",
           "-drive", f"file={disk},format=raw,if=virtio",
           "-drive", f"file={tmp_disk},format=raw,if=virtio"]
    with _ECHO:
        if _STOP.is_set():
            return 99, [], False
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _GUESTS.add(proc)
    assert proc.stdout is not None
    lines: list[str] = []
    up = threading.Event()

    def boot_watch() -> None:
        if not up.is_set():
            proc.kill()

    timers = [threading.Timer(timeout, proc.kill),  # a guest that hangs is ended
              threading.Timer(BOOT_SECONDS, boot_watch)]
    for timer in timers:
        timer.start()
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            if BOOTED in line:  # after the firmware's escape sequences
                up.set()
            if echo:
                with _ECHO:
                    print(prefix + line, flush=True)
            if on_line is not None:
                on_line(line)
        proc.wait()
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        with _ECHO:
            _GUESTS.discard(proc)
    return proc.returncode, lines, up.is_set()


def in_guest() -> str | None:
    """"<kernel release>:<layout>" inside a guest of this module, else None."""
    return os.environ.get(GUEST_ENV)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", action="append", choices=KERNELS)
    parser.add_argument("--cgroups", action="append", choices=LAYOUTS)
    parser.add_argument("--matrix", action="store_true", help="every kernel and layout")
    parser.add_argument("--jobs", type=int, default=1,
                        help="guests at once (an emulated guest keeps about one core busy)")
    parser.add_argument("--timeout", type=float, default=4 * 3600,
                        help="seconds per guest (the whole suite takes over an hour)")
    parser.add_argument("--quiet", action="store_true", help="no console echo")
    parser.add_argument("--fresh", action="store_true",
                        help="run every test file, even one whose pass on this code, "
                        "kernel and layout is recorded (tests/vmrecords.py)")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments")
    opts = parser.parse_args(argv)
    if opts.jobs < 1:
        parser.error("--jobs: at least 1")
    kernels = KERNELS if opts.matrix else (opts.kernel or ["6.1"])
    layouts = LAYOUTS if opts.matrix else (opts.cgroups or ["v2"])
    combinations = [(kernel, layout) for kernel in kernels for layout in layouts]
    # downloaded and unpacked once, before guests share the cache
    fetched = {kernel: fetch(kernel) for kernel in kernels}
    ledger = ROOT / vmrecords.LEDGER
    environment = "" if opts.pytest_args else vmrecords.environment()

    def one(kernel: str, layout: str) -> tuple[int, str, str]:
        release = fetched[kernel].release
        prefix = f"[{kernel} {layout}] " if opts.jobs > 1 and len(combinations) > 1 else ""
        # a whole-suite run records each file that passed, as the guest prints its line,
        # and runs only the files that have no record for this code (vmrecords): keyed
        # as the guest starts (a combination may wait hours for its turn)
        keys = None if opts.pytest_args else vmrecords.file_keys(ROOT, environment)
        recorded = {} if opts.fresh or not keys else vmrecords.load(ledger, release,
                                                                     layout, keys)
        todo = [name for name in keys if name not in recorded] if keys else None
        recorder = None if not keys else vmrecords.Recorder(
            ledger, ROOT, keys, release, layout, todo or (), environment, prefix)
        code, console = 0, ""
        if todo != []:
            code, console = run(todo or opts.pytest_args or None, kernel=kernel,
                                cgroups=layout, timeout=opts.timeout, echo=not opts.quiet,
                                prefix=prefix, on_line=recorder)
        head, summary = vmrecords.summarize(release, layout, code, console,
                                            recorded.values(), len(keys or ()))
        if len(combinations) > 1:  # as each ends: a long matrix cut short keeps what ran
            with _ECHO:
                print(f"done: {head}", flush=True)
        return code, head, summary

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop_guests)
    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        results = list(pool.map(lambda c: one(*c), combinations))
    for _code, head, _summary in results:
        print(head)
    for _code, head, summary in results:
        print(f"\n{head.split(':')[0]}:\n{summary}")
    return 0 if all(code == 0 for code, _h, _s in results) else 1


if __name__ == "__main__":
    sys.exit(main())
