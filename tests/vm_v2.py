"""Run nsbind's cgroup tests on a pure cgroup v2 kernel, in a qemu virtual machine.

This host is hybrid: its v2 hierarchy carries no memory, pids, cpu, io or cpuset
controller, so the v2 code paths of those controllers cannot act here.  This
boots Debian's ``linux-image-amd64`` kernel (an older kernel than the host's, too)
with ``cgroup_no_v1=all`` under qemu (plain emulation: with -enable-kvm the guest
hung on this machine), with a small busybox initramfs whose init:

- loads the virtio, 9p and virtio-blk modules,
- mounts this host's root filesystem read-only over 9p at /host, with the guest's
  own /proc, /sys, /dev, a tmpfs /run (TMPDIR=/run/tmp: the checkout may be under
  /tmp) and cgroup2 at /sys/fs/cgroup on top,
- enables every controller at the v2 root (as systemd does),
- runs ``python -m pytest`` on the cgroup tests with this host's interpreter and
  this checkout (chroot /host), and prints ``NSBIND-VM-RESULT <status>``.

    python3 tests/vm_v2.py [pytest args]     # or: make test-v2

Needs root, qemu-system-x86, busybox-static and apt access to download the kernel
package (cached in ~/.cache/nsbind-vm).
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("NSBIND_VM_CACHE",
                                    pathlib.Path.home() / ".cache" / "nsbind-vm"))
BUSYBOX = "/usr/bin/busybox"
MODULES = ["virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "virtio_blk", "loop", "netfs", "fscache", "9pnet", "9pnet_virtio",
           "9p"]
DEFAULT_TESTS = ["tests/test_cgroups.py", "tests/test_cgroupfs.py"]
MARKER = "NSBIND-VM-RESULT"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /modules/$m.ko || echo "insmod $m failed"; done
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 host /host || {
    echo "$MARKER 98 (no 9p root)"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
mount -t devtmpfs devtmpfs /host/dev
mount -t tmpfs tmpfs /host/run
mkdir -p /host/run/tmp
for c in $(cat /host/sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /host/sys/fs/cgroup/cgroup.subtree_control
done
ctl=$(cat /host/sys/fs/cgroup/cgroup.subtree_control)
echo "guest kernel $(uname -r), cgroup2 controllers: $ctl"
chroot /host /bin/sh -c '$COMMAND'
echo "$MARKER $?"
poweroff -f
""".replace("$MARKER", MARKER)


def _kernel() -> tuple[pathlib.Path, pathlib.Path]:
    """(vmlinuz, the modules directory) of Debian's current linux-image-amd64."""
    CACHE.mkdir(parents=True, exist_ok=True)
    deps = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True,
                          capture_output=True, text=True).stdout
    match = re.search(r"Depends: (linux-image-\S+)", deps)
    if match is None:
        raise RuntimeError(f"cannot tell which kernel linux-image-amd64 is:\n{deps}")
    package = match.group(1)
    tree = CACHE / package
    if not (tree / "boot").is_dir():
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True,
                           capture_output=True)
            deb = next(pathlib.Path(tmp).glob("*.deb"))
            subprocess.run(["dpkg-deb", "-x", deb, f"{tmp}/root"], check=True)
            os.rename(f"{tmp}/root", tree)
    vmlinuz = next((tree / "boot").glob("vmlinuz-*"))
    modules = next((tree / "lib" / "modules").iterdir()) / "kernel"
    return vmlinuz, modules


def _find_modules(kernel: pathlib.Path) -> list[tuple[str, bytes]]:
    """The needed modules' bytes, dependencies first (read from their .modinfo)."""
    found = {p.name.removesuffix(".ko"): p for p in kernel.rglob("*.ko")}
    data = {name: found[name].read_bytes() for name in MODULES if name in found}
    missing = set(MODULES) - set(data)
    if missing - {"fscache", "virtio_pci_legacy_dev", "loop"}:  # built in on some kernels
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


def _initramfs(kernel_modules: pathlib.Path, command: str) -> bytes:
    modules = _find_modules(kernel_modules)
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    files: list[tuple[str, int, bytes]] = [
        (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "modules", "host")]
    files += [("bin/busybox", 0o100755, busybox),
              ("init", 0o100755, INIT.replace("$COMMAND", command).encode()),
              ("modules.order", 0o100644, "\n".join(n for n, _ in modules).encode() + b"\n")]
    files += [(f"modules/{name}.ko", 0o100644, data) for name, data in modules]
    return gzip.compress(_cpio(files), 1)


def run(pytest_args: list[str] | None = None, *, timeout: float = 1500,
        echo: bool = True) -> tuple[int, str]:
    """Boot the guest, run the cgroup tests in it; (their exit status, the console)."""
    for tool in ("qemu-system-x86_64", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is missing (Debian: qemu-system-x86, apt, dpkg)")
    vmlinuz, modules = _kernel()
    args = pytest_args or DEFAULT_TESTS
    python = sys.executable  # not resolved: a venv is recognised by this path
    # what the guest runs, inside this host's root (seen read-only over 9p)
    command = (f"cd {ROOT} && PYTHONDONTWRITEBYTECODE=1 HOME=/run/tmp TMPDIR=/run/tmp "
               "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
               f"{python} -m pytest -p no:cacheprovider -q -rs {' '.join(args)}")
    if "'" in command:
        raise ValueError(f"a quote in the guest command: {command}")
    with tempfile.TemporaryDirectory(prefix="nsbind-vm-") as tmp:
        work = pathlib.Path(tmp)
        (work / "initrd").write_bytes(_initramfs(modules, command))
        disk = work / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(64 << 20)  # a virtio block device for the io controller tests
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1536", "-smp", "2",
               "-nographic", "-no-reboot", "-kernel", str(vmlinuz),
               "-initrd", str(work / "initrd"),
               "-append", "console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=3",
               "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,"
                          "multidevs=remap",
               "-drive", f"file={disk},format=raw,if=virtio"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        lines = []
        timer = threading.Timer(timeout, proc.kill)  # a guest that hangs is ended
        timer.start()
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                lines.append(line)
                if echo:
                    print(line, flush=True)
            proc.wait()
        finally:
            timer.cancel()
            timer.join()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    console = "\n".join(lines)
    found = re.findall(rf"{MARKER} (\d+)", console)
    return (int(found[-1]) if found else 99), console


def main() -> int:
    code, _ = run(sys.argv[1:] or None)
    print(f"guest pytest exit status: {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
