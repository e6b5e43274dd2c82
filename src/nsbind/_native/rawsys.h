/*
 * System calls that leave errno alone: the kernel's result, a value >= 0 or
 * -errno.  A spawn child parked at its start gate shares its parent's memory
 * while the parent runs on (CLONE_VM without CLONE_VFORK: spawn.h), and with
 * it the errno of the parent's thread: from the moment the parent may run
 * again (the "parked" report) the child neither writes errno nor reads it,
 * and the parent reads the child's reports without trusting errno either.
 * Internal: not seen by cffi; async-signal-safe.
 */
#ifndef NSBIND_RAWSYS_H
#define NSBIND_RAWSYS_H

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#pragma GCC visibility push(hidden)

static inline long nsb_raw3(long nr, long a, long b, long c)
{
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
#else
    /* no child shares memory here (nsb_spawn_has_vm_clone): errno is its own */
    long ret = syscall(nr, a, b, c);
    return ret < 0 ? -(long)errno : ret;
#endif
}

#pragma GCC visibility pop

#endif /* NSBIND_RAWSYS_H */
