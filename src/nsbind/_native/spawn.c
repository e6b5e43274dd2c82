/*
 * nsbind spawn engine: see spawn.h for the plan and the order of the steps.
 *
 * Rules for everything the child runs (CPython's _posixsubprocess child_exec is
 * the model): async-signal-safe calls only, no allocation, no locks, and no
 * glibc function that acts on "all threads" - setuid() and friends broadcast to
 * every thread of the parent when memory is shared - so credentials change
 * through raw syscall().  errno is the parent thread's (shared TLS) and is only
 * written while that thread is suspended (CLONE_VFORK) or blocked in read()
 * waiting for the report (the sync and gate cases); once a gated child has
 * reported "parked" its parent runs on, and the child's last steps (the gate,
 * the seccomp filter, the exec) leave errno alone (rawsys.h).
 */
#include "spawn.h"
#include "spawnchild.h"
#include "init.h"
#include "gate.h"
#include "terminal.h"
#include "rawsys.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <string.h>

/* Capability sets are 64-bit masks (struct nsb_spawn_plan.cap_*): bits 0..63. */
#define NSB_CAP_BITS 64
/* The signal mask the kernel takes (rt_sigprocmask's sigsetsize): the C
 * library's sigset_t is bigger (1024 bits in glibc), and the library's _NSIG
 * is the kernel's plus one (signals are numbered from 1). */
#define NSB_KERNEL_SIGSET_SIZE ((_NSIG - 1) / 8)

_Static_assert(NSB_CAP_BITS == 8 * sizeof(((struct nsb_spawn_plan *)0)->cap_bounding),
               "capability masks are NSB_CAP_BITS wide");
_Static_assert((_NSIG - 1) % 8 == 0 && NSB_KERNEL_SIGSET_SIZE <= sizeof(sigset_t),
               "the kernel's signal set is whole bytes within sigset_t");
/* the child copies a mount report's message whole into its spawn report */
_Static_assert(sizeof(((struct nsb_spawn_report *)0)->msg) ==
               sizeof(((struct nsb_mount_report *)0)->msg),
               "spawn and mount reports carry the same message buffer");

/* Ids are 32-bit: 32-bit x86 and arm keep 16-bit ids under the old names. */
#ifdef __NR_setresuid32
#define NSB_NR_SETRESUID __NR_setresuid32
#define NSB_NR_SETRESGID __NR_setresgid32
#define NSB_NR_SETGROUPS __NR_setgroups32
#else
#define NSB_NR_SETRESUID __NR_setresuid
#define NSB_NR_SETRESGID __NR_setresgid
#define NSB_NR_SETGROUPS __NR_setgroups
#endif

static void nsb_report(const struct nsb_spawn_plan *plan, const struct nsb_spawn_report *r)
    __attribute__((noreturn));
static void nsb_fail(const struct nsb_spawn_plan *plan, int step, int index)
    __attribute__((noreturn));
static void nsb_fail_err(const struct nsb_spawn_plan *plan, int step, int index, int err)
    __attribute__((noreturn));
static void nsb_exit_failed(void) __attribute__((noreturn));

static void nsb_fail(const struct nsb_spawn_plan *plan, int step, int index)
{
    nsb_fail_err(plan, step, index, errno);
}

static void nsb_fail_err(const struct nsb_spawn_plan *plan, int step, int index, int err)
{
    struct nsb_spawn_report report;
    report.step = step;
    report.err = err;
    report.index = index;
    report.phase = 0;
    report.msg[0] = 0;
    nsb_report(plan, &report);
}

/* exit_group(NSB_EXIT_FAILED), errno left alone (rawsys.h). */
static void nsb_exit_failed(void)
{
    nsb_raw3(__NR_exit_group, NSB_EXIT_FAILED, 0, 0);
    /* only a seccomp filter that refuses exit_group gets here: die by SIGILL */
    for (;;)
        __builtin_trap();
}

static void nsb_report(const struct nsb_spawn_plan *plan, const struct nsb_spawn_report *r)
{
    struct nsb_spawn_report report = *r;
    if (plan->report)
        *plan->report = report; /* shared memory; the parent is suspended */
    /* a short or failed write still ends the child; the parent sees the exit */
    if (plan->err_fd >= 0)
        nsb_raw3(__NR_write, plan->err_fd, (long)&report, sizeof(report));
    nsb_exit_failed();
}

#define TRY(call, step, index)              \
    do {                                    \
        if ((call) < 0)                     \
            nsb_fail(plan, (step), (index)); \
    } while (0)

/* ---------------------------------------------------------------- the child's steps
 * One function per group of steps, in the order of spawn.h; each returns only
 * if its steps succeeded (a failure reports and exits). */

/* SYNC: wait for the parent's byte (it has written the id maps). */
static void nsb_child_sync(const struct nsb_spawn_plan *plan)
{
    char go = 0;
    ssize_t n;
    if (plan->sync_fd < 0)
        return;
    /* our copy of the write end would keep us from ever seeing EOF */
    if (plan->sync_peer_fd >= 0)
        syscall(__NR_close, plan->sync_peer_fd);
    do {
        n = read(plan->sync_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
        if (n == 0)
            errno = ECANCELED; /* the parent gave up */
        nsb_fail(plan, NSB_STEP_SYNC, NSB_SUB_SYNC_WAIT);
    }
    /* until now our ids are the overflow ids of an unmapped outside uid: files made
     * by the mount steps would fail with EOVERFLOW (runc also becomes root first) */
    if (plan->userns_root) {
        TRY(syscall(NSB_NR_SETRESGID, 0, 0, 0), NSB_STEP_SYNC, NSB_SUB_SYNC_ROOT);
        TRY(syscall(NSB_NR_SETRESUID, 0, 0, 0), NSB_STEP_SYNC, NSB_SUB_SYNC_ROOT);
    }
}

/* CGROUP, SETNS, UNSHARE: the cgroups and namespaces to be in. */
static void nsb_child_join(const struct nsb_spawn_plan *plan)
{
    int i;
    for (i = 0; i < plan->n_cgroup_procs; i++)
        TRY(syscall(__NR_write, plan->cgroup_procs_fds[i], "0", 1), NSB_STEP_CGROUP, i);
    for (i = 0; i < plan->n_setns; i++)
        TRY(nsb_setns(plan->setns_fds[i], plan->setns_types[i]), NSB_STEP_SETNS, i);
    if (plan->unshare_flags)
        TRY(nsb_unshare(plan->unshare_flags), NSB_STEP_UNSHARE, 0);
}

/* DUP2, CLOSE_RANGE.  First (CVE-2024-21626): before any chdir or pivot_root,
 * no fd of the parent but those asked for is open, so /proc/self/fd/N cannot
 * lead back to a host directory. */
static void nsb_child_fds(const struct nsb_spawn_plan *plan)
{
    unsigned int lo = 3;
    int i;
    /* dup3, not dup2 (which the generic syscall table lacks): from is never to,
     * the parent puts every from above every target */
    for (i = 0; i < plan->n_fds; i++)
        TRY(syscall(__NR_dup3, plan->fds[i].from, plan->fds[i].to, 0), NSB_STEP_DUP2, i);
    if (!plan->close_fds)
        return;
    for (i = 0; i < plan->n_keep_fds; i++) {
        unsigned int keep = (unsigned int)plan->keep_fds[i];
        if (keep < lo)
            continue;
        if (keep > lo)
            TRY(nsb_close_range(lo, keep - 1, 0), NSB_STEP_CLOSE_RANGE, i);
        lo = keep + 1;
    }
    TRY(nsb_close_range(lo, ~0U, 0), NSB_STEP_CLOSE_RANGE, i); /* ~0U: the last fd there is */
}

/* SETSID, SETPGID, HOSTNAME, DOMAINNAME. */
static void nsb_child_session(const struct nsb_spawn_plan *plan)
{
    if (plan->setsid)
        TRY(syscall(__NR_setsid), NSB_STEP_SETSID, 0);
    if (plan->pgid >= 0)
        TRY(syscall(__NR_setpgid, 0, plan->pgid), NSB_STEP_SETPGID, 0);
    if (plan->hostname)
        TRY(nsb_sethostname(plan->hostname, strlen(plan->hostname)), NSB_STEP_HOSTNAME, 0);
    if (plan->domainname)
        TRY(nsb_setdomainname(plan->domainname, strlen(plan->domainname)),
            NSB_STEP_DOMAINNAME, 0);
}

/* LOOPBACK: set IFF_UP on lo. */
static void nsb_child_loopback(const struct nsb_spawn_plan *plan)
{
    static const char lo[] = "lo";
    struct ifreq ifr;
    int sock = (int)syscall(__NR_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    _Static_assert(sizeof(lo) <= sizeof(ifr.ifr_name), "an interface name fits ifr_name");
    TRY(sock, NSB_STEP_LOOPBACK, NSB_SUB_LOOPBACK_SOCKET);
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, lo, sizeof(lo));
    TRY(syscall(__NR_ioctl, sock, SIOCGIFFLAGS, &ifr), NSB_STEP_LOOPBACK,
        NSB_SUB_LOOPBACK_GETFLAGS);
    ifr.ifr_flags |= IFF_UP;
    TRY(syscall(__NR_ioctl, sock, SIOCSIFFLAGS, &ifr), NSB_STEP_LOOPBACK,
        NSB_SUB_LOOPBACK_SETFLAGS);
    syscall(__NR_close, sock);
}

/* MOUNT: the plan's mount steps; a failure reports the step and its phase. */
static void nsb_child_mounts(const struct nsb_spawn_plan *plan, struct nsb_mount_ctx *mctx)
{
    struct nsb_mount_report mrep;
    struct nsb_spawn_report report;
    if (!plan->n_mounts || nsb_mount_steps(plan->mounts, plan->n_mounts, mctx, &mrep) == 0)
        return;
    report.step = NSB_STEP_MOUNT;
    report.err = mrep.err;
    report.index = mrep.index;
    report.phase = mrep.phase;
    memcpy(report.msg, mrep.msg, sizeof(report.msg));
    nsb_report(plan, &report);
}

/* After the mount steps: close the fds they were handed (detached trees, idmap
 * user namespaces: nsbind's own close-on-exec copies, above every fd the
 * command gets), now, not at the exec - an init never execs (init.h). */
static void nsb_close_step_fds(const struct nsb_spawn_plan *plan)
{
    int i;
    for (i = 0; i < plan->n_mounts; i++) {
        if (plan->mounts[i].fd >= 0)
            syscall(__NR_close, plan->mounts[i].fd);
        if (plan->mounts[i].userns_fd >= 0)
            syscall(__NR_close, plan->mounts[i].userns_fd);
    }
}

/* MOUNT, PIVOT_ROOT: the mounts, then into the root they set (an fd: the root's
 * path is not looked up again) or else plan->pivot_root. */
static void nsb_child_root(const struct nsb_spawn_plan *plan)
{
    struct nsb_mount_ctx mctx; /* mount steps: the root they resolve in, ... */
    nsb_mount_ctx_init(&mctx);
    mctx.null_src = plan->null_mount_fd;
    nsb_child_mounts(plan, &mctx);
    nsb_close_step_fds(plan);
    if (plan->pivot_root) {
        if (mctx.root >= 0)
            TRY(syscall(__NR_fchdir, mctx.root), NSB_STEP_PIVOT_ROOT, NSB_SUB_PIVOT_ENTER);
        else
            TRY(syscall(__NR_chdir, plan->pivot_root), NSB_STEP_PIVOT_ROOT, NSB_SUB_PIVOT_ENTER);
        nsb_mount_ctx_close(&mctx);
        TRY(nsb_pivot_root(".", "."), NSB_STEP_PIVOT_ROOT, NSB_SUB_PIVOT_ROOT);
        TRY(nsb_umount2(".", MNT_DETACH), NSB_STEP_PIVOT_ROOT, NSB_SUB_PIVOT_DETACH);
        TRY(syscall(__NR_chdir, "/"), NSB_STEP_PIVOT_ROOT, NSB_SUB_PIVOT_CHDIR);
    }
    nsb_mount_ctx_close(&mctx);
}

/* CHDIR, RLIMIT. */
static void nsb_child_cwd_limits(const struct nsb_spawn_plan *plan)
{
    int i;
    if (plan->cwd)
        TRY(syscall(__NR_chdir, plan->cwd), NSB_STEP_CHDIR, 0);
    for (i = 0; i < plan->n_rlimits; i++) {
        /* prlimit64 of ourselves: 64-bit limits everywhere (setrlimit's rlim_t
         * is 32-bit on 32-bit ABIs, and the generic table may lack setrlimit) */
        struct rlimit64 rl;
        rl.rlim_cur = plan->rlimits[i].soft;
        rl.rlim_max = plan->rlimits[i].hard;
        TRY(syscall(__NR_prlimit64, 0, plan->rlimits[i].resource, &rl, NULL), NSB_STEP_RLIMIT,
            i);
    }
}

/* CAPBSET, SETGROUPS, SETGID, SETUID: the bounding set first (dropping needs
 * CAP_SETPCAP, gone after setuid), and PR_SET_KEEPCAPS so that setresuid keeps
 * the permitted set for capset. */
static void nsb_child_ids(const struct nsb_spawn_plan *plan)
{
    if (plan->set_caps) {
        int cap;
        for (cap = 0; cap < NSB_CAP_BITS; cap++) {
            if (plan->cap_bounding >> cap & 1)
                continue;
            if (nsb_prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
                if (errno == EINVAL)
                    break; /* past the kernel's last capability */
                nsb_fail(plan, NSB_STEP_CAPBSET, cap);
            }
        }
        if (plan->uid >= 0)
            TRY(nsb_prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), NSB_STEP_SETUID, NSB_SUB_SETUID_KEEPCAPS);
    }
    if (plan->set_groups)
        TRY(syscall(NSB_NR_SETGROUPS, plan->n_groups, plan->groups), NSB_STEP_SETGROUPS, 0);
    if (plan->gid >= 0)
        TRY(syscall(NSB_NR_SETRESGID, plan->gid, plan->gid, plan->gid), NSB_STEP_SETGID, 0);
    if (plan->uid >= 0)
        TRY(syscall(NSB_NR_SETRESUID, plan->uid, plan->uid, plan->uid), NSB_STEP_SETUID,
            NSB_SUB_SETUID_ID);
}

/* CAPSET, AMBIENT: the plan's sets; without them, nothing inheritable or
 * ambient unless asked for (CVE-2022-24769). */
static void nsb_child_caps(const struct nsb_spawn_plan *plan)
{
    struct nsb_caps caps;
    if (plan->set_caps) {
        int cap;
        caps.effective = plan->cap_effective;
        caps.permitted = plan->cap_permitted;
        caps.inheritable = plan->cap_inheritable;
        TRY(nsb_capset(&caps), NSB_STEP_CAPSET, NSB_SUB_CAPSET_SETS);
        TRY(nsb_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), NSB_STEP_AMBIENT,
            NSB_SUB_AMBIENT_CLEAR);
        for (cap = 0; cap < NSB_CAP_BITS; cap++) {
            if (plan->cap_ambient >> cap & 1)
                TRY(nsb_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
                    NSB_STEP_AMBIENT, cap);
        }
    } else if (plan->clear_inheritable) {
        TRY(nsb_capget(0, &caps), NSB_STEP_CAPSET, NSB_SUB_CAPSET_CLEAR_INHERITABLE);
        if (caps.inheritable) {
            caps.inheritable = 0;
            TRY(nsb_capset(&caps), NSB_STEP_CAPSET, NSB_SUB_CAPSET_CLEAR_INHERITABLE);
        }
        TRY(nsb_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), NSB_STEP_AMBIENT,
            NSB_SUB_AMBIENT_CLEAR);
    }
}

/* NO_NEW_PRIVS, PDEATHSIG, umask. */
static void nsb_child_privs(const struct nsb_spawn_plan *plan)
{
    if (plan->no_new_privs)
        TRY(nsb_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), NSB_STEP_NO_NEW_PRIVS, 0);
    if (plan->pdeathsig) /* after setresuid, which clears it */
        TRY(nsb_prctl(PR_SET_PDEATHSIG, plan->pdeathsig, 0, 0, 0), NSB_STEP_PDEATHSIG, 0);
    if (plan->umask >= 0)
        syscall(__NR_umask, plan->umask);
}

/* SIGNALS: SIGPIPE and SIGXFSZ back to SIG_DFL (as subprocess), nothing blocked. */
static void nsb_child_signals(const struct nsb_spawn_plan *plan)
{
    sigset_t none;
    if (plan->default_signals) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        TRY(sigaction(SIGPIPE, &dfl, NULL), NSB_STEP_SIGNALS, SIGPIPE);
        TRY(sigaction(SIGXFSZ, &dfl, NULL), NSB_STEP_SIGNALS, SIGXFSZ);
    }
    sigemptyset(&none);
    TRY(syscall(__NR_rt_sigprocmask, SIG_SETMASK, &none, NULL, NSB_KERNEL_SIGSET_SIZE),
        NSB_STEP_SIGNALS, NSB_SUB_SIGNALS_MASK);
}

/* GATE: tell the parent we are parked, then wait for a reader of the FIFO (gate.h).
 * err_fd is closed with the report: the parent no longer reads it, so a later
 * failure shows only as the exit status.  From the report on the parent runs
 * again (and in our memory, with CLONE_VM): errno is no longer ours (rawsys.h). */
static void nsb_child_gate(const struct nsb_spawn_plan *plan)
{
    struct nsb_spawn_report parked;
    int wfd, bad = -1;
    if (plan->gate_fd < 0)
        return;
    if (nsb_gate_probe(plan->gate_fd, &wfd, plan->exec_paths, &bad) < 0)
        nsb_fail(plan, bad >= 0 ? NSB_STEP_EXEC : NSB_STEP_GATE, bad >= 0 ? bad : 0);
    memset(&parked, 0, sizeof(parked));
    parked.step = NSB_STEP_GATE; /* err 0: parked, not failed */
    if (plan->err_fd >= 0) { /* a parent gone or given up kills us */
        nsb_raw3(__NR_write, plan->err_fd, (long)&parked, sizeof(parked));
        nsb_raw3(__NR_close, plan->err_fd, 0, 0);
    }
    if (nsb_gate_wait(plan->gate_fd, wfd) < 0)
        nsb_exit_failed();
}

/* SECCOMP: the plan's filter, the last step before the exec (``last``), or before
 * the ids and caps steps when they may drop the CAP_SYS_ADMIN it then needs. */
static void nsb_child_seccomp(const struct nsb_spawn_plan *plan, int last)
{
    struct sock_fprog prog;
    long rc;
    int early = !plan->no_new_privs && (plan->set_caps || plan->uid > 0);
    if (!plan->seccomp_filter || early == last)
        return;
    prog.len = plan->seccomp_len;
    prog.filter = (struct sock_filter *)plan->seccomp_filter;
    rc = nsb_raw3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, plan->seccomp_flags, (long)&prog);
    if (rc < 0)
        nsb_fail_err(plan, NSB_STEP_SECCOMP, 0, (int)-rc);
}

/* EXEC: each candidate path in turn, as execvp: ENOENT-like errors try the
 * next one, and EACCES is remembered. */
static void nsb_child_exec(const struct nsb_spawn_plan *plan) __attribute__((noreturn));
static void nsb_child_exec(const struct nsb_spawn_plan *plan)
{
    int first_err = 0, err = ENOENT, i;
    for (i = 0; plan->exec_paths[i]; i++) {
        err = (int)-nsb_raw3(__NR_execve, (long)plan->exec_paths[i], (long)plan->argv,
                             (long)plan->envp);
        if (err == EACCES)
            first_err = EACCES;
        else if (err != ENOENT && err != ENOTDIR && err != ELOOP && err != ENAMETOOLONG &&
                 err != ESTALE)
            nsb_fail_err(plan, NSB_STEP_EXEC, i, err);
    }
    nsb_fail_err(plan, NSB_STEP_EXEC, i > 0 ? i - 1 : 0, first_err ? first_err : err);
}

int nsb_child_main(void *arg)
{
    const struct nsb_spawn_plan *plan = arg;
    int step, sub;
    nsb_child_sync(plan);
    nsb_child_join(plan);
    nsb_child_fds(plan);
    nsb_child_session(plan);
    if (plan->loopback)
        nsb_child_loopback(plan);
    nsb_child_root(plan);
    if (plan->console_sock >= 0 && (step = nsb_terminal(plan, &sub)) != 0)
        nsb_fail(plan, step, sub);
    nsb_child_cwd_limits(plan);
    nsb_child_seccomp(plan, 0);
    nsb_child_ids(plan);
    nsb_child_caps(plan);
    nsb_child_privs(plan);
    if (plan->init && nsb_init_fork(NSB_EXIT_FAILED) < 0) /* returns in the command only */
        nsb_fail(plan, NSB_STEP_INIT, 0);
    nsb_child_signals(plan);
    nsb_child_gate(plan);
    nsb_child_seccomp(plan, 1);
    nsb_child_exec(plan);
}

void nsb_spawn_plan_init(struct nsb_spawn_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->cgroup_fd = plan->sync_fd = plan->sync_peer_fd = plan->err_fd = -1;
    plan->null_mount_fd = plan->gate_fd = plan->console_sock = -1;
    plan->pgid = plan->gid = plan->uid = plan->umask = -1;
    plan->clear_inheritable = 1;
    plan->default_signals = 1;
}

void nsb_strv_fill(char *blob, char **out, const int *counts, int ngroups)
{
    for (int g = 0; g < ngroups; g++) {
        for (int i = 0; i < counts[g]; i++) {
            *out++ = blob;
            blob += strlen(blob) + 1;
        }
        *out++ = NULL;
    }
}
