/*
 * nsbind's one call that runs with the interpreter: clone3 for a child that
 * goes on running Python (nsbind._sys.proc.clone3).  See pyclone.c.
 */
#ifndef NSBIND_PYCLONE_H
#define NSBIND_PYCLONE_H

#include "nsbind.h"

/* ---- cdef-begin ---- */

/* clone3(args, size) as os.fork forks: with the GIL held (taken back from cffi,
 * which releases it around calls), fork handlers run before and after (in the
 * child: PyOS_AfterFork_Child).  0 in the child, the pid in the parent, or -1
 * and errno.  Only for a single-threaded caller, without CLONE_VM and friends:
 * the Python wrapper checks. */
long nsb_clone3_python(struct clone_args *args, size_t size);

/* ---- cdef-end ---- */

#endif /* NSBIND_PYCLONE_H */
