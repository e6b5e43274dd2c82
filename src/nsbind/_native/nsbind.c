/*
 * nsbind native core: one system call per function, -1 and errno on failure.
 * See nsbind.h.  Everything here is async-signal-safe.
 */
#include "nsbind.h"

#include <linux/bpf.h>
#include <linux/kcmp.h>
#include <string.h>

long nsb_clone3(struct clone_args *args, size_t size)
{
    return syscall(__NR_clone3, args, size);
}

int nsb_unshare(int flags)
{
    return (int)syscall(__NR_unshare, flags);
}

int nsb_setns(int fd, int nstype)
{
    return (int)syscall(__NR_setns, fd, nstype);
}

int nsb_pidfd_open(int pid, unsigned int flags)
{
    return (int)syscall(__NR_pidfd_open, pid, flags);
}

int nsb_pidfd_send_signal(int pidfd, int sig, unsigned int flags)
{
    return (int)syscall(__NR_pidfd_send_signal, pidfd, sig, NULL, flags);
}

int nsb_pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
    return (int)syscall(__NR_pidfd_getfd, pidfd, targetfd, flags);
}

int nsb_waitid_pidfd(int pidfd, int options, struct nsb_wait_result *out)
{
    siginfo_t info;
    info.si_pid = 0;
    info.si_code = 0;
    info.si_status = 0;
    if (syscall(__NR_waitid, P_PIDFD, pidfd, &info, options, NULL) < 0)
        return -1;
    out->pid = info.si_pid;
    out->code = info.si_code;
    out->status = info.si_status;
    return 0;
}

int nsb_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(__NR_pivot_root, new_root, put_old);
}

int nsb_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const void *data)
{
    return (int)syscall(__NR_mount, source, target, fstype, flags, data);
}

int nsb_umount2(const char *target, int flags)
{
    return (int)syscall(__NR_umount2, target, flags);
}

int nsb_fsopen(const char *fsname, unsigned int flags)
{
    return (int)syscall(__NR_fsopen, fsname, flags);
}

int nsb_fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux)
{
    return (int)syscall(__NR_fsconfig, fd, cmd, key, value, aux);
}

int nsb_fsmount(int fd, unsigned int flags, unsigned int attr_flags)
{
    return (int)syscall(__NR_fsmount, fd, flags, attr_flags);
}

int nsb_move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path,
                   unsigned int flags)
{
    return (int)syscall(__NR_move_mount, from_dfd, from_path, to_dfd, to_path, flags);
}

int nsb_open_tree(int dfd, const char *path, unsigned int flags)
{
    return (int)syscall(__NR_open_tree, dfd, path, flags);
}

int nsb_mount_setattr(int dfd, const char *path, unsigned int flags,
                      struct mount_attr *attr, size_t size)
{
    return (int)syscall(__NR_mount_setattr, dfd, path, flags, attr, size);
}

int nsb_openat2(int dfd, const char *path, struct open_how *how, size_t size)
{
    return (int)syscall(__NR_openat2, dfd, path, how, size);
}

int nsb_sethostname(const char *name, size_t len)
{
    return (int)syscall(__NR_sethostname, name, len);
}

int nsb_setdomainname(const char *name, size_t len)
{
    return (int)syscall(__NR_setdomainname, name, len);
}

int nsb_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return (int)syscall(__NR_close_range, first, last, flags);
}

int nsb_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
              unsigned long a5)
{
    return (int)syscall(__NR_prctl, option, a2, a3, a4, a5);
}

int nsb_kcmp_vm(int pid1, int pid2)
{
    return (int)syscall(__NR_kcmp, pid1, pid2, KCMP_VM, 0, 0);
}

int nsb_capget(int pid, struct nsb_caps *out)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, pid};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(__NR_capget, &hdr, data) < 0)
        return -1;
    out->effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
    out->permitted = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
    out->inheritable = (uint64_t)data[0].inheritable | ((uint64_t)data[1].inheritable << 32);
    return 0;
}

int nsb_capset(const struct nsb_caps *caps)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    data[0].effective = (uint32_t)caps->effective;
    data[1].effective = (uint32_t)(caps->effective >> 32);
    data[0].permitted = (uint32_t)caps->permitted;
    data[1].permitted = (uint32_t)(caps->permitted >> 32);
    data[0].inheritable = (uint32_t)caps->inheritable;
    data[1].inheritable = (uint32_t)(caps->inheritable >> 32);
    return (int)syscall(__NR_capset, &hdr, data);
}

int nsb_ioctl(int fd, unsigned long request)
{
    return (int)syscall(__NR_ioctl, fd, request, 0);
}

long long nsb_fstatfs_type(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) < 0)
        return -1;
    return (long long)st.f_type;
}

/* No fallback number for bpf(2): it is older than the unified numbering (see
 * nsbind.h), so its number differs per architecture (321 on x86_64, 280 in the
 * generic table, 357 on i386, ...).  The kernel headers that define
 * BPF_PROG_TYPE_CGROUP_DEVICE (4.15, linux/bpf.h above) define __NR_bpf in
 * asm/unistd.h on every architecture, so a missing one means headers this file
 * cannot be built against, not an architecture without bpf: stop rather than
 * compile a bpf() that always fails with ENOSYS. */
#ifndef __NR_bpf
#error "__NR_bpf is not defined: install the kernel headers (linux-libc-dev, >= 4.15) of this architecture"
#endif

int nsb_bpf_load_cgroup_device(const void *insns, unsigned int n, char *log,
                               unsigned int log_size)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = n;
    attr.license = (uint64_t)(uintptr_t) "Apache-2.0";
    if (log && log_size) {
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    return (int)syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
}

int nsb_bpf_attach_cgroup_device(int prog_fd, int cgroup_fd, unsigned int flags)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = flags;
    return (int)syscall(__NR_bpf, BPF_PROG_ATTACH, &attr, sizeof(attr));
}

int nsb_bpf_detach_cgroup_device(int prog_fd, int cgroup_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    return (int)syscall(__NR_bpf, BPF_PROG_DETACH, &attr, sizeof(attr));
}
