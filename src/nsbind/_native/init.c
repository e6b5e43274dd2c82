/*
 * nsbind's init: see init.h (what it does and the fds it keeps: none).  What
 * tini and catatonit do, in the spawn child: no exec, so nothing of the
 * spawn's state goes away by itself - every fd is closed explicitly.
 */
#include "init.h"

#include <errno.h>
#include <string.h>

/* The command's exit status as init passes it on. */
static int nsb_exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : NSB_EXIT_SIGNAL_BASE + WTERMSIG(status);
}

/* Init's life after the fork: forward signals to cmd and reap until cmd exits.
 * All signals are still blocked (the parent blocked them before clone3), so
 * sigwaitinfo sees every one of them. */
static void nsb_init_loop(long cmd) __attribute__((noreturn));
static void nsb_init_loop(long cmd)
{
    static const int forward[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    sigset_t wait_for;
    unsigned int i;

    nsb_prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    sigemptyset(&wait_for);
    sigaddset(&wait_for, SIGCHLD);
    for (i = 0; i < sizeof(forward) / sizeof(forward[0]); i++)
        sigaddset(&wait_for, forward[i]);
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&wait_for, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            syscall(__NR_kill, cmd, sig);
            continue;
        }
        for (;;) {
            int status;
            long pid = syscall(__NR_wait4, -1, &status, WNOHANG, NULL);
            if (pid <= 0)
                break;
            if (pid == cmd)
                syscall(__NR_exit_group, nsb_exit_code(status));
        }
    }
}

int nsb_init_fork(int fail_status)
{
    struct clone_args fork_args;
    long cmd;

    /* fork as clone3 without a stack (clone's argument order differs per
     * architecture; clone3 takes one struct everywhere) */
    memset(&fork_args, 0, sizeof(fork_args));
    fork_args.exit_signal = SIGCHLD;
    cmd = syscall(__NR_clone3, &fork_args, sizeof(fork_args));
    if (cmd < 0 && (errno == ENOSYS || errno == EPERM)) {
        /* a seccomp filter that refuses clone3 (Docker's answers ENOSYS, so that
         * glibc falls back to clone): fork the old way */
#ifdef __NR_fork
        cmd = syscall(__NR_fork);
#else
        cmd = syscall(__NR_clone, SIGCHLD, 0, 0, 0, 0); /* flags first where no fork */
#endif
    }
    if (cmd < 0)
        return -1;
    if (cmd == 0)
        return 0; /* the command: go on to exec */
    /* init: no fd at all from here on (see init.h); only the command reports */
    if (nsb_close_range(0, ~0U, 0) < 0) {
        syscall(__NR_kill, cmd, SIGKILL);
        syscall(__NR_exit_group, fail_status);
    }
    nsb_init_loop(cmd);
}
