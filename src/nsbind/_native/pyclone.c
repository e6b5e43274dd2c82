/*
 * clone3 for a child that goes on running Python: see pyclone.h.
 *
 * cffi releases the GIL around every call into the extension.  A fork-like
 * clone must not run without it: another thread could hold the GIL (or a lock
 * a fork handler takes) at the moment of the clone, and the child, which has
 * only the calling thread, would wait for it forever.  So this function takes
 * the GIL back itself and does what os.fork does around fork():
 * PyOS_BeforeFork (the before= handlers of os.register_at_fork, the import
 * lock), the clone, then PyOS_AfterFork_Child in the child (the interpreter's
 * thread state and locks reset for one thread, the after_in_child= handlers)
 * or PyOS_AfterFork_Parent in the parent.
 *
 * The only file of the extension that includes Python.h: the rest is plain C,
 * which the spawn child runs with no interpreter at all.
 */
#define Py_LIMITED_API 0x030A0000 /* the stable ABI of the abi3 module, Python >= 3.10 */
#include <Python.h>

#include "pyclone.h"

long nsb_clone3_python(struct clone_args *args, size_t size)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    long pid;
    int err;

    PyOS_BeforeFork();
    pid = syscall(__NR_clone3, args, size);
    err = errno;
    if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil); /* cffi's wrapper takes it again before returning */
    errno = err;             /* what cffi saves for ffi.errno */
    return pid;
}
