/*
 * The start gate of a spawn (spawn.h, step GATE; runc's exec.fifo): the child,
 * after every other step but the seccomp filter and the exec, opens the FIFO
 * the parent handed it as an O_PATH fd for writing, which blocks until someone
 * opens the FIFO for reading ("start"), writes the byte "0" and closes it.
 *
 * The FIFO is reached again through /proc/self/fd/N (an O_PATH fd cannot be
 * re-opened any other way), so the new root must have procfs at /proc, of the
 * child's pid namespace; without it the GATE step fails (ENOENT) and is reported
 * like any other.  Before the child blocks, it checks that its program is there
 * (a missing or non-executable command fails the create, not the start, as in
 * runc) and probes the path (O_NONBLOCK: ENXIO means "a FIFO with no reader
 * yet", i.e. the path works).  Internal: not seen by
 * cffi; async-signal-safe like the rest of the spawn child.
 */
#ifndef NSBIND_GATE_H
#define NSBIND_GATE_H

#include "nsbind.h"

#pragma GCC visibility push(hidden)

/* Check that the program will be found (one of exec_paths is an executable
 * regular file: else -1, errno and *bad its index) and that the FIFO behind
 * gate_fd can be opened for writing: 0, with *wfd an open write end if a reader
 * was already there (else -1), or -1 and errno (*bad left alone). */
int nsb_gate_probe(int gate_fd, int *wfd, char *const *exec_paths, int *bad);
/* Open the FIFO for writing (blocking) unless wfd is already open, write "0",
 * close both fds: 0, or -1.  errno is neither written nor read (rawsys.h): the
 * child runs this once its parent may run again. */
int nsb_gate_wait(int gate_fd, int wfd);

#pragma GCC visibility pop

#endif /* NSBIND_GATE_H */
