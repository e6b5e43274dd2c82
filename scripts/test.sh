#!/usr/bin/env bash
# Install everything nsbind's tests need on a fresh Debian machine, then run them.
# Needs root: the tests create real namespaces, mounts and cgroups.
# Without arguments: the suite as root, then the unprivileged pass (tests/unprivileged.py:
# the tests marked unprivileged, as a user it makes) and the kernel-sensitive tests in a
# Debian 6.1 guest with pure cgroup v2 (tests/vm.py; `make test-kernels` runs the whole
# suite on 6.1 and 6.12, v2 and hybrid).  Extra arguments go to the root pytest run only
# (e.g. `bash scripts/test.sh -k mount`).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # compiler and kernel headers for the cffi extension; ip(8) for network checks;
    # a static busybox for the rootfs tests; umoci and skopeo make images for the interop
    # tests; qemu boots the kernel-matrix guests (tests/vm.py); runc and crun write the
    # reference OCI configs (`runc spec`, `crun spec`); libseccomp2 compiles seccomp filters;
    # podman, conmon and containerd (ctr, the runc shim) are the real clients that
    # tests/test_oci_podman.py and tests/test_oci_containerd.py drive runtimes with;
    # uidmap (newuidmap, newgidmap) and python3-cffi-backend for rootless nsbind run
    # (tests/test_engine_rootless.py runs Debian's python3 as a user the tests make), and
    # slirp4netns for its networking (--network bridge, -p)
    apt-get install -y -qq --no-install-recommends \
        gcc libc6-dev linux-libc-dev iproute2 util-linux busybox-static umoci skopeo \
        qemu-system-x86 runc crun libseccomp2 podman conmon containerd docker-registry apache2-utils \
        uidmap python3-cffi-backend slirp4netns nftables libnftables1 >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
if [ $# -gt 0 ]; then
    exec python3 -m pytest "$@"
fi
status=0
# the root run's temporary files in a directory of its own, removed at the end (pytest
# would keep its last three runs' in /tmp/pytest-of-root)
basetemp=$(mktemp -d /tmp/nsbind-tests.XXXXXX)
trap 'rm -rf --one-file-system "$basetemp"' EXIT
python3 -m pytest --basetemp "$basetemp/root" || status=1
python3 tests/unprivileged.py || status=1
python3 tests/vm.py --kernel 6.1 --cgroups v2 --quiet --timeout 1800 -- tests/test_cgroups.py \
    tests/test_cgroupfs.py tests/test_cgroupdirs.py tests/test_features.py tests/test_mountclone.py \
    tests/test_doctor.py::test_doctor_on_a_pure_cgroup_v2_host \
    tests/test_mounts.py::test_detached_overlay_bound_into_a_spawned_child \
    tests/test_hostile_roots.py::test_pid_1_keeps_no_fd_for_the_container_to_reach \
    tests/test_hostile_roots.py::test_pid_1_closes_stdio_and_passed_fds_and_the_command_keeps_them \
    tests/test_engine_rootless.py::test_rootless_containers_live_in_the_users_delegated_cgroup \
    || status=1
exit $status
