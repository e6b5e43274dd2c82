/*
 * nsbind's init (spawn(init=True)): the first process of a new pid namespace,
 * which forks the command and stays as PID 1.  Internal: not seen by cffi, not
 * exported from the extension.  Async-signal-safe like the rest of the spawn
 * child (raw syscalls, no allocation).
 *
 * The fds PID 1 keeps: none.  Everything the earlier steps of the spawn used
 * (mount step fds: detached trees and idmap user namespaces, the null mount,
 * the report and sync pipes, joined namespaces) is close-on-exec, but init
 * never execs: it closes every fd (close_range(0, ~0U)) right after the fork,
 * so that no process of the container reaches any of them through
 * /proc/1/fd.  stdio is closed too: init writes nothing (it has no message to
 * give; failures before the fork are reported by the spawn child as any
 * other step's), and the command holds its own copies of 0-2 for as long as it
 * wants them - init holding them would keep a terminal or pipe the command
 * gave up reachable from inside.  Forwarding signals (kill by pid: the command
 * is init's own unreaped child, so its pid cannot be reused), reaping (wait4)
 * and exiting use no fd.
 */
#ifndef NSBIND_INIT_H
#define NSBIND_INIT_H

#include "nsbind.h"

/* The status of an init whose command a signal ended: 128 + N, as shells do. */
#define NSB_EXIT_SIGNAL_BASE 128

#pragma GCC visibility push(hidden)

/* Fork the command (all signals must be blocked).  Returns 0 in the command's
 * process, or -1 with errno if the fork failed; in init it does not return: it
 * closes every fd, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2
 * and SIGWINCH to the command, reaps every orphan, and exits with the command's
 * status (128+N if a signal N ended it).  If the fds cannot be closed, init
 * kills the command and exits with `fail_status` rather than stay with them. */
int nsb_init_fork(int fail_status);

#pragma GCC visibility pop

#endif /* NSBIND_INIT_H */
