/*
 * The terminal of a spawn (spawn.h, steps TERMINAL and CONSOLE; runc's
 * process.terminal): after the root is set up, the child
 *   - opens /dev/ptmx (O_RDWR|O_NOCTTY|O_CLOEXEC) - the ptmx of the devpts the
 *     root mounted at /dev/pts -, unlocks it (TIOCSPTLCK 0) and opens its peer
 *     with TIOCGPTPEER: the peer is never looked up as /dev/pts/N, which a root
 *     could have made a symlink (CVE-2025-52565);
 *   - with a root (plan->console_mount), makes /dev/console the peer without
 *     following or reusing anything the root put there: /dev opened with
 *     O_DIRECTORY|O_NOFOLLOW, any "console" entry unlinked, a fresh empty file
 *     made with O_CREAT|O_EXCL|O_NOFOLLOW, and the peer bound onto it with
 *     open_tree(peer_fd, "", OPEN_TREE_CLONE|AT_EMPTY_PATH) and move_mount(...,
 *     MOVE_MOUNT_F_EMPTY_PATH|MOVE_MOUNT_T_EMPTY_PATH): fd to fd, no /proc;
 *   - sets the window size (TIOCSWINSZ) if the plan gives one;
 *   - sends the master to the parent over plan->console_sock, exactly one
 *     SCM_RIGHTS fd with one byte of data, and closes its copies of the master
 *     and of the socket;
 *   - setsid (unless plan->setsid did), TIOCSCTTY of the peer, and the peer
 *     dup'd onto 0, 1 and 2.
 * Internal: not seen by cffi; async-signal-safe like the rest of the spawn
 * child (raw syscalls, no allocation, nothing but stack buffers).
 */
#ifndef NSBIND_TERMINAL_H
#define NSBIND_TERMINAL_H

#include "spawn.h"

#pragma GCC visibility push(hidden)

/* Run the TERMINAL and CONSOLE steps of plan: 0, or the step that failed
 * (NSB_STEP_TERMINAL or NSB_STEP_CONSOLE) with errno set and *sub the sub-step
 * (enum nsb_spawn_substep).  Every fd it opened is closed either way. */
int nsb_terminal(const struct nsb_spawn_plan *plan, int *sub);

#pragma GCC visibility pop

#endif /* NSBIND_TERMINAL_H */
