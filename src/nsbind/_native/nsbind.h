/*
 * nsbind native core: thin Linux syscall wrappers.
 *
 * Every nsb_* function makes one system call (or one ioctl) and returns its
 * result, or -1 with errno set.  Nothing else: no retries, no allocation, no
 * logging, so every function here is async-signal-safe and may be called in a
 * child between clone and execve.
 *
 * The prototypes between the "cdef" markers below are read verbatim by
 * build.py and handed to cffi; keep them in the plain C subset cffi parses.
 */
#ifndef NSBIND_H
#define NSBIND_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <linux/sched.h>

/*
 * Syscall numbers for kernels newer than the installed headers.  The rule for
 * a fallback here: only numbers from the unified table, never one
 * architecture's own.  Since Linux 5.1 (pidfd_send_signal, 424) every new
 * syscall gets the same number on every architecture; only the base a few
 * ABIs put all their numbers at is added (NSB_NR_UNIFIED below: alpha +110,
 * mips o32/n64/n32 __NR_Linux, x32 __X32_SYSCALL_BIT).  A syscall older than
 * 424 (bpf, setns, ...) has a number per architecture: no fallback for it, the
 * headers must define it (see the bpf note in nsbind.c).
 */
#if defined(__alpha__)
#define NSB_NR_UNIFIED(n) ((n) + 110)
#elif defined(__mips__)
#define NSB_NR_UNIFIED(n) (__NR_Linux + (n))
#elif defined(__x86_64__) && defined(__ILP32__)
#define NSB_NR_UNIFIED(n) (__X32_SYSCALL_BIT + (n))
#else
#define NSB_NR_UNIFIED(n) (n)
#endif
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal NSB_NR_UNIFIED(424)
#endif
#ifndef __NR_open_tree
#define __NR_open_tree NSB_NR_UNIFIED(428)
#endif
#ifndef __NR_move_mount
#define __NR_move_mount NSB_NR_UNIFIED(429)
#endif
#ifndef __NR_fsopen
#define __NR_fsopen NSB_NR_UNIFIED(430)
#endif
#ifndef __NR_fsconfig
#define __NR_fsconfig NSB_NR_UNIFIED(431)
#endif
#ifndef __NR_fsmount
#define __NR_fsmount NSB_NR_UNIFIED(432)
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open NSB_NR_UNIFIED(434)
#endif
#ifndef __NR_clone3
#define __NR_clone3 NSB_NR_UNIFIED(435)
#endif
#ifndef __NR_close_range
#define __NR_close_range NSB_NR_UNIFIED(436)
#endif
#ifndef __NR_openat2
#define __NR_openat2 NSB_NR_UNIFIED(437)
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd NSB_NR_UNIFIED(438)
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr NSB_NR_UNIFIED(442)
#endif

/* Constants that older uapi headers lack (values are kernel ABI). */
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef MNT_FORCE
#define MNT_FORCE 0x00000001
#endif
#ifndef MNT_DETACH
#define MNT_DETACH 0x00000002
#endif
#ifndef MNT_EXPIRE
#define MNT_EXPIRE 0x00000004
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 0x00000008
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_LOWER 3
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif
#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif
#ifndef NS_GET_OWNER_UID
#define NS_GET_OWNER_UID _IO(0xb7, 0x4)
#endif

/* ---- cdef-begin ---- */

/* Result of waitid(P_PIDFD): the fields of siginfo_t that waitid fills. */
struct nsb_wait_result {
    int pid;    /* si_pid; 0 when WNOHANG found nothing */
    int code;   /* si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED, ... */
    int status; /* si_status: exit code or signal number */
};

/* The three capability sets of a thread, one bit per capability. */
struct nsb_caps {
    uint64_t effective;
    uint64_t permitted;
    uint64_t inheritable;
};

/* The bare clone3: cffi releases the GIL around it, so the child must not run
 * Python (a probe that is meant to fail, or a child that only execs); for a
 * child that goes on in Python, nsb_clone3_python (pyclone.h). */
long nsb_clone3(struct clone_args *args, size_t size);
int nsb_unshare(int flags);
int nsb_setns(int fd, int nstype);
int nsb_pidfd_open(int pid, unsigned int flags);
int nsb_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
int nsb_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
int nsb_waitid_pidfd(int pidfd, int options, struct nsb_wait_result *out);
int nsb_pivot_root(const char *new_root, const char *put_old);
int nsb_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const void *data);
int nsb_umount2(const char *target, int flags);
int nsb_fsopen(const char *fsname, unsigned int flags);
int nsb_fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux);
int nsb_fsmount(int fd, unsigned int flags, unsigned int attr_flags);
int nsb_move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path,
                   unsigned int flags);
int nsb_open_tree(int dfd, const char *path, unsigned int flags);
int nsb_mount_setattr(int dfd, const char *path, unsigned int flags,
                      struct mount_attr *attr, size_t size);
int nsb_openat2(int dfd, const char *path, struct open_how *how, size_t size);
int nsb_sethostname(const char *name, size_t len);
int nsb_setdomainname(const char *name, size_t len);
int nsb_close_range(unsigned int first, unsigned int last, unsigned int flags);
int nsb_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
              unsigned long a5);
/* kcmp(2) KCMP_VM (CONFIG_KCMP): 0 when the two processes share their memory,
 * 1 or 2 when not (an order), -1 and errno (ESRCH: one is gone; EPERM: no ptrace
 * access to it). */
int nsb_kcmp_vm(int pid1, int pid2);
int nsb_capget(int pid, struct nsb_caps *out);
int nsb_capset(const struct nsb_caps *caps);
int nsb_ioctl(int fd, unsigned long request);
long long nsb_fstatfs_type(int fd);
/* bpf(2) for cgroup device programs (BPF_PROG_TYPE_CGROUP_DEVICE, Linux 4.15):
 * load ``n`` struct bpf_insn; the verifier's log goes to ``log`` when given. */
int nsb_bpf_load_cgroup_device(const void *insns, unsigned int n, char *log,
                               unsigned int log_size);
int nsb_bpf_attach_cgroup_device(int prog_fd, int cgroup_fd, unsigned int flags);
int nsb_bpf_detach_cgroup_device(int prog_fd, int cgroup_fd);

/* ---- cdef-end ---- */

#endif /* NSBIND_H */
